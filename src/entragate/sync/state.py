"""What the writer knows of one shard location of an ACL (docs/design.md#writer)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from entragate.errors import EntraError
from entragate.graph.client import NamedLocation
from entragate.sync.foreign import ForeignPace, ForeignWriter

#: How long after a write a read that still shows the previous version is taken for
#: Graph's read-after-write lag (seconds; docs/design.md#writer) rather than a hand edit.
CONSISTENCY_WINDOW = 30.0


@dataclass
class LocationState:
    acl: str
    index: int
    name: str
    location: NamedLocation | None = None
    applied: set[str] | None = None  # what Entra holds, as last read or written
    desired: list[str] = field(default_factory=list)
    last_sync: datetime | None = None
    last_error: EntraError | None = None
    failures: int = 0
    parked_until: float = 0.0  # monotonic; non-retryable failures wait here
    throttled_until: datetime | None = None
    #: (the versions Graph held before our unconfirmed writes, each with its
    #: ``modifiedDateTime`` when known, until when a read may still show one of them);
    #: None once a read agreed with what we wrote
    unconfirmed: tuple[list[tuple[set[str] | None, str | None]], float] | None = None
    #: ``modifiedDateTime`` as last read, and whether we wrote since that read
    #: (docs/design.md#foreign-writer)
    seen_modified: str | None = None
    wrote_since_read: bool = False
    last_written: set[str] | None = None  # what our last write sent
    last_write_at: float = 0.0  # monotonic
    foreign: ForeignWriter = field(default_factory=ForeignWriter)
    #: the last read's foreign change (added, removed), until drift.py counts it
    foreign_seen: tuple[list[str], list[str]] | None = None

    def written(self, ranges: Iterable[str]) -> None:
        """Entra now holds ``ranges``: the location is healthy again."""
        before = set(self.applied) if self.applied is not None else None  # None: just created
        # a second write before any read: the version it replaced is our own, stamp unknown
        stamp = None if self.wrote_since_read else self.seen_modified
        earlier = self.unconfirmed[0] if self.unconfirmed is not None else []
        self.unconfirmed = ([*earlier, (before, stamp)], time.monotonic() + CONSISTENCY_WINDOW)
        self.applied = set(ranges)
        self.last_written = set(ranges)
        self.last_write_at = time.monotonic()
        self.wrote_since_read = True
        self.last_sync = datetime.now(UTC)
        self.clear_failures()

    def stale_read(self, seen: set[str] | None, modified: str | None = None) -> bool:
        """A read shows what the location held before our recent writes (``seen`` None: the
        location we just created is missing) while Graph may still be catching up: keep
        what we wrote and look again, never rewrite.  A read that agrees ends the wait.
        The same ranges with a newer ``modifiedDateTime`` are someone else's write."""
        if self.unconfirmed is None:
            return False
        befores, deadline = self.unconfirmed
        if seen == self.applied or time.monotonic() > deadline:
            self.unconfirmed = None
            return False
        return any(
            seen == content and (stamp is None or modified is None or stamp == modified)
            for content, stamp in befores
        )

    def repair_hold(self, ranges: Iterable[str], pace: ForeignPace) -> float:
        """Until when (monotonic) writing ``ranges`` waits for another writer; 0.0: now."""
        repeats = self.last_written is not None and set(ranges) == self.last_written
        return self.foreign.repair_hold(repeats, self.last_write_at, pace)

    def forget(self) -> None:
        """Another agent may have written since: what we knew of Entra is stale."""
        self.location = None
        self.applied = None
        self.unconfirmed = None
        self.seen_modified, self.wrote_since_read = None, False
        self.foreign.reset()
        self.clear_failures()

    def clear_failures(self) -> None:
        self.last_error = None
        self.failures = 0
        self.parked_until = 0.0
        self.throttled_until = None


Shards = dict[str, list[LocationState]]  # per ACL name, its locations by index


def all_states(shards: Shards) -> Iterator[LocationState]:
    for states in shards.values():
        yield from states
