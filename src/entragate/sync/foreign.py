"""Another writer on the same location: notice it, report it, stop fighting it
(docs/design.md#foreign-writer).

A read that shows a change we did not make (ranges other than the ones we last
wrote or read, or a ``modifiedDateTime`` newer than the last one we saw with no
write of ours in between) is one *foreign change*. ``changes`` of them within
``window`` make the location's other writer *active*: the episode is logged once
(``location.foreign_writer``), shown in ``status`` and the metrics, and the repair
writes to that location (a write that only repeats our last one) go at most once
per ``repair_interval``. Our own changes (grants, revokes, expiries) are never held.
The episode ends, and is logged once more, after ``quiet`` seconds and at least
``quiet_reads`` reads without a foreign change.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entragate.grants.store import rfc3339

#: Foreign changes within the window that make another writer active.
FOREIGN_CHANGES = 3
#: Seconds the changes are counted over (at least: see :meth:`ForeignPace.for_verify`).
FOREIGN_WINDOW = 300.0
#: At most one repair per this many seconds while another writer is active.
SLOW_REPAIR = 60.0
#: Reads without a foreign change (and twice the repair interval) that end an episode.
QUIET_READS = 3

#: Addresses named in a ``location.foreign_writer`` event and in ``status``.
LISTED = 20


@dataclass(frozen=True)
class ForeignPace:
    """How many foreign changes in how long make another writer, and how slowly we answer."""

    changes: int = FOREIGN_CHANGES
    window: float = FOREIGN_WINDOW
    repair_interval: float = SLOW_REPAIR
    quiet: float = 2 * SLOW_REPAIR
    quiet_reads: int = QUIET_READS

    @classmethod
    def for_verify(cls, verify_interval: float) -> ForeignPace:
        """Changes are only seen on reads: the window holds ``changes`` verify passes at
        least, the repair waits for one pass at least, and the end for ``quiet_reads``."""
        repair = max(SLOW_REPAIR, verify_interval)
        return cls(
            window=max(FOREIGN_WINDOW, (FOREIGN_CHANGES + 1) * verify_interval),
            repair_interval=repair,
            quiet=max(2 * repair, QUIET_READS * verify_interval),
        )


@dataclass(frozen=True)
class ForeignChange:
    at: datetime
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "at": rfc3339(self.at),
            "added": list(self.added[:LISTED]),
            "added_count": len(self.added),
            "removed": list(self.removed[:LISTED]),
            "removed_count": len(self.removed),
        }


class ForeignWriter:
    """The foreign changes seen on one location (reads only; no clock of Graph's is trusted)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: deque[float] = deque()  # monotonic times of recent foreign changes
        self.since: datetime | None = None  # when the current episode started
        self.changes = 0  # foreign changes in the current episode
        self.last: ForeignChange | None = None
        self._quiet_reads = 0
        self._last_seen = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def changed(self, added: Iterable[str], removed: Iterable[str], pace: ForeignPace) -> bool:
        """A read showed a change we did not make; True when it starts an episode."""
        now = self.clock()
        self._seen.append(now)
        while self._seen and self._seen[0] < now - pace.window:
            self._seen.popleft()
        self.last = ForeignChange(datetime.now(UTC), tuple(sorted(added)), tuple(sorted(removed)))
        self._quiet_reads, self._last_seen = 0, now
        if self.active:
            self.changes += 1
            return False
        if len(self._seen) < pace.changes:
            return False
        self.since, self.changes = self.last.at, len(self._seen)
        return True

    def unchanged(self, pace: ForeignPace) -> bool:
        """A read showed nothing new from anyone else; True when it ends an episode."""
        if not self.active:
            return False
        self._quiet_reads += 1
        if self._quiet_reads < pace.quiet_reads or self.clock() - self._last_seen < pace.quiet:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        self._seen.clear()
        self.since, self.changes, self._quiet_reads = None, 0, 0

    def repair_hold(self, repeats_last_write: bool, last_write: float, pace: ForeignPace) -> float:
        """Until when (monotonic) a write waits: 0.0 to write now. Only a repair (a write
        that repeats our last one) waits, and only while the other writer is active."""
        if not self.active or not repeats_last_write:
            return 0.0
        until = last_write + pace.repair_interval
        return until if until > self.clock() else 0.0

    def describe(self) -> dict[str, Any] | None:
        """``status``'s ``foreign_writer``: null, or since when, how many changes, the last."""
        if self.since is None:
            return None
        return {
            "since": rfc3339(self.since),
            "changes": self.changes,
            "last_change": self.last.describe() if self.last is not None else None,
        }
