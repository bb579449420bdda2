"""Group commit and the capacity census of the grant store (docs/design.md#store).

Many HTTP threads grant at once; one fsync per grant would cap the store at the
disk's fsync rate. :class:`GroupCommit` lets the first caller lead: it takes every
request queued so far, runs them in one transaction (one fsync), and wakes each
caller only after that transaction is durable. Callers that arrive while a batch is
committing form the next batch, so batches grow with the load and a lone grant
never waits for company.

:class:`Census` counts the stored rows of each (acl, cidr), so the capacity check
learns how many distinct ranges an ACL holds in O(1) instead of reading them all;
:class:`HeldCidrs` reads the exact list only when a check needs it (near capacity).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from .model import Grant


@dataclass
class AddRequest:
    """One caller's grant, waiting for its batch."""

    acl: str
    user: str
    cidr: str
    expires_at: datetime
    source: str
    note: str
    now: datetime
    capacity_check: Callable[[Sequence[str]], None] | None
    result: Any = None  # (Grant, renewed) once stored
    error: BaseException | None = None
    done: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class StoreChange:
    """One committed transaction of a store object: mutations ``first_seq`` … ``seq``."""

    first_seq: int
    seq: int
    added: list[Grant] = field(default_factory=list)  # new or renewed
    removed: list[Grant] = field(default_factory=list)  # ended


class NothingStored(Exception):
    """Every add of a batch was refused: roll the transaction (and its bump) back."""


class GroupCommit:
    """Runs queued :class:`AddRequest` s in batches; ``run`` stores one batch in one transaction."""

    def __init__(self, run: Callable[[list[AddRequest]], None], *, max_batch: int = 1024) -> None:
        self._run = run
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[AddRequest] = []
        self._leading = False
        self.batches = 0  # committed batches (tests and benchmarks read it)

    def submit(self, request: AddRequest) -> Any:
        """Queue ``request``; return its result once its batch is durable (or raise its error)."""
        with self._cond:
            self._queue.append(request)
        while True:
            with self._cond:
                while self._leading and not request.done:
                    self._cond.wait()
                if request.done:
                    break
                self._leading = True
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._run(batch)
                self.batches += 1
            except BaseException as exc:  # the whole batch failed: every caller hears why
                for queued in batch:
                    if queued.error is None:
                        queued.error = exc
            finally:
                with self._cond:
                    for queued in batch:
                        queued.done = True
                    self._leading = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result


class Census:
    """Stored rows per (acl, cidr) as of change ``seq``; stale once another process wrote."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, int]] = {}
        self.seq: int | None = None  # None: must be loaded before use

    def valid_after(self, seq: int) -> bool:
        """Whether the census is exact right before the mutation numbered ``seq``."""
        return self.seq is not None and self.seq == seq - 1

    def load(self, rows: Iterable[tuple[str, str, int]], seq: int) -> None:
        self._rows = {}
        for acl, cidr, count in rows:
            self._rows.setdefault(acl, {})[cidr] = int(count)
        self.seq = seq

    def invalidate(self) -> None:
        self.seq = None

    def distinct(self, acl: str) -> int:
        return len(self._rows.get(acl, ()))

    def holds(self, acl: str, cidr: str) -> bool:
        return cidr in self._rows.get(acl, ())

    def added(self, acl: str, cidr: str) -> None:
        held = self._rows.setdefault(acl, {})
        held[cidr] = held.get(cidr, 0) + 1

    def after_delete(self, removed: list[tuple[str, str]], seq: int) -> None:
        """Rows of ``removed`` (acl, cidr) went in the mutation numbered ``seq``."""
        if not self.valid_after(seq):
            self.invalidate()
            return
        for acl, cidr in removed:
            self.removed(acl, cidr)
        self.seq = seq

    def removed(self, acl: str, cidr: str) -> None:
        held = self._rows.get(acl)
        if held is None or cidr not in held:
            return
        held[cidr] -= 1
        if held[cidr] <= 0:
            del held[cidr]


class HeldCidrs(Sequence[str]):
    """The ACL's would-be active cidrs (sorted, distinct), read from the database only when
    iterated. ``at_most`` is an O(1) upper bound on their number (rows that expired but
    are not yet removed still count), enough for a check far from the limit."""

    def __init__(self, at_most: int, load: Callable[[], list[str]]) -> None:
        self.at_most = at_most
        self._load = load
        self._items: list[str] | None = None
        self.failed: BaseException | None = None  # a database error while loading

    def _list(self) -> list[str]:
        if self._items is None:
            try:
                self._items = self._load()
            except BaseException as exc:
                self.failed = exc
                raise
        return self._items

    def __len__(self) -> int:
        return len(self._list())

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._list()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeldCidrs):
            return self._list() == other._list()
        return isinstance(other, list) and self._list() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HeldCidrs({self._list()!r})"
