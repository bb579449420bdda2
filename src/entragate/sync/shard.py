"""One shard location of an ACL as the planner sees it, and the fair choice of the next
one to write (docs/design.md#writer).

A shard remembers *when* its oldest pending change happened, removals (revoke, expiry,
flush) apart from additions. Each pacing slot goes to :func:`most_due`: any shard with
a pending removal before any with only additions, and among those the oldest first.
With ``L`` shards dirty, a removal therefore waits for at most the ``L - 1`` shards
whose removals are older, plus the slot in progress: it is gone within ``L + 1`` slots
however long new grants keep arriving.

Additions must not starve either: a shard passed over (:func:`passed_over`) as many
times as there are dirty shards ranks with the removals, by the age of its oldest
addition. Each shard ahead of a removal still goes at most once, so the removal bound
holds, and an addition is written within ``2 L + 1`` slots.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from entragate.sync.cidrs import collapse_cidrs


@dataclass(frozen=True)
class Ticket:
    """A shard's complete list as taken for one write."""

    index: int
    version: int
    ranges: list[str]
    fresh: dict[str, datetime]  # ranges granted since the last write, and when


class Shard:
    def __init__(self, acl: str, index: int, placeholder: str) -> None:
        self.acl = acl
        self.index = index
        self.placeholder = placeholder
        self.ranges: set[str] = set()  # granted cidrs placed here, uncollapsed
        self.opened = False  # exists in Entra or will be created at its next write
        self.blocked = False  # its writes fail for good (parked): new ranges go elsewhere
        self.pending_add: float | None = None  # when the oldest unwritten addition happened
        self.pending_remove: float | None = None  # … and the oldest unwritten removal
        self.version = 0
        self.passed = 0  # slots given to other shards while this one had additions pending
        self.fresh: dict[str, datetime] = {}
        self._in_flight = False
        self._after_add: float | None = None  # changes made while a ticket was out
        self._after_remove: float | None = None
        self._cache: tuple[int, list[str]] | None = None

    def __repr__(self) -> str:
        return f"Shard({self.acl!r}, {self.index}, {len(self.ranges)} ranges, rank={self.rank})"

    @property
    def dirty(self) -> bool:
        return self.pending_add is not None or self.pending_remove is not None

    @property
    def rank(self) -> tuple[int, float]:
        """Lower is more due: removals first, then the oldest pending change (before aging)."""
        return self.rank_among(sys.maxsize)

    def rank_among(self, dirty: int) -> tuple[int, float]:
        """The rank while ``dirty`` shards have changes pending."""
        if self.pending_remove is not None:
            return (0, self.pending_remove)
        if self.pending_add is not None:
            return (0 if self.passed >= dirty else 1, self.pending_add)
        return (2, 0.0)

    # ------------------------------------------------------------------ changes

    def put(self, cidr: str, now: float, created_at: datetime | None = None) -> None:
        self.ranges.add(cidr)
        if created_at is not None:
            self.fresh[cidr] = created_at
        self.mark(now, removal=False)

    def drop(self, cidr: str, now: float) -> None:
        self.ranges.discard(cidr)
        self.fresh.pop(cidr, None)
        self.mark(now, removal=True)

    def mark(self, now: float, *, removal: bool) -> None:
        """Something changed that Entra does not hold yet."""
        self.version += 1
        if removal:
            self.pending_remove = now if self.pending_remove is None else self.pending_remove
            if self._in_flight and self._after_remove is None:
                self._after_remove = now
        else:
            self.pending_add = now if self.pending_add is None else self.pending_add
            if self._in_flight and self._after_add is None:
                self._after_add = now

    def compare(self, applied: set[str] | None, now: float) -> None:
        """After a full reconcile: pending wherever Entra differs from the plan."""
        if applied is None:
            if self.opened:
                self.mark(now, removal=False)  # to be created
            return
        if applied == (self.ranges or {self.placeholder}):
            return  # verbatim what is planned (nothing collapses): no need to collapse
        want = set(self.ranges_to_write())
        if applied - want:
            self.mark(now, removal=True)
        if want - applied:
            self.mark(now, removal=False)

    # ------------------------------------------------------------------ writing

    def ranges_to_write(self) -> list[str]:
        """The complete list for the PATCH: collapsed, sorted, or the placeholder alone."""
        if self._cache is None or self._cache[0] != self.version:
            self._cache = (self.version, collapse_cidrs(self.ranges) or [self.placeholder])
        return self._cache[1]

    def take(self) -> Ticket:
        self._in_flight = True
        self._after_add = self._after_remove = None
        return Ticket(self.index, self.version, self.ranges_to_write(), dict(self.fresh))

    def settle(self, ticket: Ticket, *, written: bool) -> None:
        """The write of ``ticket`` ended: when it reached Entra, only later changes stay pending."""
        self._in_flight = False
        if not written:
            return
        self.pending_add, self.pending_remove = self._after_add, self._after_remove
        self.passed = 0
        for cidr, created_at in ticket.fresh.items():
            if self.fresh.get(cidr) == created_at:
                del self.fresh[cidr]


S = TypeVar("S", bound=Shard)


def most_due(shards: Iterable[S]) -> S | None:
    """The shard the next slot goes to, or None when nothing is pending."""
    dirty = [shard for shard in shards if shard.dirty]
    return min(dirty, key=lambda shard: shard.rank_among(len(dirty)), default=None)


def passed_over(shards: Iterable[Shard], chosen: Shard) -> None:
    """A slot went to ``chosen``: every other shard with additions pending waited once more."""
    for shard in shards:
        if shard is not chosen and shard.pending_add is not None:
            shard.passed += 1
