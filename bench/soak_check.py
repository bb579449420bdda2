"""What the soak may find in Entra: every API operation the driver made, and the checks.

An address may be in a write the emulator applied at ``w`` only when one of its grants
could be in force then: acknowledged (201) or in flight (no answer, 5xx: perhaps stored),
sent before ``w``, and not yet ended at ``w`` minus a small grace for the write in flight
(planned a moment before it was applied). A grant ends at its expiry, at the answer of
the revoke (200) that followed it, or at the answer of an acknowledged renewal (which
sets a new expiry). Operations on one address never overlap (the driver sees to it),
so their order is the order they were sent. (docs/design.md#tests)
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

#: Seconds a write may trail the end of a grant: planned at its slot, applied one Graph
#: round trip later (with a token fetch and a TLS handshake on a new connection).
WRITE_GRACE = 1.0
#: Seconds around "now" in the final comparison: an expiry this close may be either side.
NOW_MARGIN = 1.5
REFUSED = range(400, 500)  # the agent refused the request: nothing stored or ended


@dataclass
class Op:
    kind: str  # "grant", "renew" or "revoke"
    cidr: str
    user: str
    ttl: int
    sent: float
    answered: float = 0.0
    status: int = 0  # 0: no answer (connection refused, reset, timed out)
    code: str | None = None  # the error body's code, or the exception's name
    expires_at: float | None = None  # from a 201

    @property
    def adds(self) -> bool:
        return self.kind in ("grant", "renew")

    @property
    def certain(self) -> bool:
        """The agent answered what it did (201/200), or that it did nothing (4xx)."""
        return self.status in (200, 201) or self.status in REFUSED

    def expiry_bound(self) -> float:
        """The latest its grant can expire (an unanswered one: stored before its answer)."""
        if self.expires_at is not None:
            return self.expires_at
        return (self.answered or self.sent) + self.ttl + 1.0


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Ledger:
    """Every operation, per address, thread-safe; the driver appends, the checks read."""

    ops: dict[str, list[Op]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.setdefault(op.cidr, []).append(op)

    def all_ops(self) -> list[Op]:
        with self.lock:
            return [op for ops in self.ops.values() for op in ops]

    def intervals(self, cidr: str) -> list[tuple[float, float]]:
        """When ``cidr`` may be in force: (from, until) per grant that may have been stored."""
        with self.lock:
            ops = list(self.ops.get(cidr, ()))
        found = []
        for i, op in enumerate(ops):
            if not op.adds or op.status in REFUSED:
                continue
            end = op.expiry_bound()
            for later in ops[i + 1:]:
                if later.kind == "revoke" and later.status == 200:
                    end = min(end, later.answered)
                    break
                if later.adds and later.status == 201:
                    end = min(end, later.answered)  # replaced by the renewal's own interval
                    break
            found.append((op.sent, end))
        return found

    def allowed_at(self, cidr: str, at: float, grace: float) -> bool:
        return any(start <= at and at <= end + grace for start, end in self.intervals(cidr))

    def required(self, at: float) -> set[str]:
        """Addresses certainly granted and in force at ``at``: Entra must hold them."""
        with self.lock:
            items = [(cidr, list(ops)) for cidr, ops in self.ops.items()]
        need = set()
        for cidr, ops in items:
            expiry: float | None = None
            certain = True
            for op in ops:
                if op.status in REFUSED:
                    continue
                if op.adds and op.status == 201:
                    expiry, certain = op.expires_at, True
                elif op.kind == "revoke" and op.status == 200:
                    expiry, certain = None, True
                else:
                    certain = False  # it may or may not have changed anything
            if certain and expiry is not None and expiry > at + NOW_MARGIN:
                need.add(cidr)
        return need

    def last_expiry(self) -> float:
        return max((op.expiry_bound() for op in self.all_ops() if op.adds), default=0.0)


@dataclass
class Verdict:
    missing: list[str]
    extra: list[str]

    @property
    def converged(self) -> bool:
        return not self.missing and not self.extra


def compare(ledger: Ledger, held: Iterable[str], at: float) -> Verdict:
    """Entra's ranges ``held`` at ``at`` against the ledger: missing and extra addresses."""
    held = set(held)
    missing = sorted(ledger.required(at) - held)
    extra = sorted(c for c in held if not ledger.allowed_at(c, at, NOW_MARGIN))
    return Verdict(missing, extra)


@dataclass
class WriteViolation:
    time: float
    location: str
    cidr: str
    why: str  # "never granted" or "ended N s before"
    kept: bool  # the location's previous write held it too (left in, rather than put back)


def check_writes(ledger: Ledger, writes: Iterable[tuple[float, str, list[str]]], ignore: set[str]) -> tuple[int, list[WriteViolation]]:
    """Every applied write (time, location, ranges), in time order: (writes checked, what
    was not allowed)."""
    checked = 0
    bad: list[WriteViolation] = []
    held: dict[str, set[str]] = {}  # location -> its previous write's ranges
    for at, location, ranges in writes:
        checked += 1
        before, held[location] = held.get(location, set()), set(ranges)
        for cidr in ranges:
            if cidr in ignore or ledger.allowed_at(cidr, at, WRITE_GRACE):
                continue
            spans = ledger.intervals(cidr)
            ended = [at - end for start, end in spans if start <= at]
            why = "never granted" if not spans else (
                f"ended {min(ended):.2f} s before" if ended else "granted only after")
            bad.append(WriteViolation(at, location, cidr, why, cidr in before))
    return checked, bad


def count_by(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))
