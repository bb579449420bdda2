"""What Graph shows a reader, as opposed to what it holds (docs/design.md#emulator).

Graph is eventually consistent: for a few seconds after a write, a read may still
return the previous version of a named location (or miss a new one, or still show
a deleted one).  ``read_lag_seconds`` on the emulator switches this on (off by
default: Graph does not always lag).  A DELETE keeps the location among the
deleted items (on by default, as Graph does): Graph documents them as
``policyDeletableItem`` objects carrying ``deletedDateTime``, listed, read, restored
or deleted for good under ``identity/conditionalAccess/deletedItems/namedLocations``,
and purged 30 days after their deletion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Location = dict[str, Any]

#: Graph purges a soft-deleted policy object 30 days after its deletion.
DELETED_RETENTION_SECONDS = 30 * 86400


@dataclass
class LocationHistory:
    """One tenant's recent writes (for the lag) and its deleted locations."""

    #: per location id, (when it was written, what it looked like before) newest last
    versions: dict[str, list[tuple[float, Location | None]]] = field(default_factory=dict)
    deleted: dict[str, Location] = field(default_factory=dict)
    #: per deleted location id, when it was deleted (the emulator's clock)
    deleted_at: dict[str, float] = field(default_factory=dict)

    def keep_deleted(self, location_id: str, obj: Location, at: float, stamp: Callable[[float], str]) -> None:
        """A DELETE: the location becomes a deleted item, stamped with ``deletedDateTime``."""
        obj["deletedDateTime"] = stamp(at)
        self.deleted[location_id] = obj
        self.deleted_at[location_id] = at

    def deleted_items(self, now: float) -> dict[str, Location]:
        """The deleted items still restorable at ``now`` (older ones are purged)."""
        for location_id, at in list(self.deleted_at.items()):
            if at <= now - DELETED_RETENTION_SECONDS:
                self.forget_deleted(location_id)
        return self.deleted

    def forget_deleted(self, location_id: str) -> Location | None:
        """Take a deleted item out (restore or permanent delete); None when there is none."""
        self.deleted_at.pop(location_id, None)
        return self.deleted.pop(location_id, None)

    def restore(self, location_id: str, now: float) -> Location | None:
        """The deleted location, back as it was (no ``deletedDateTime``); None when not deleted."""
        if location_id not in self.deleted_items(now):
            return None
        obj = self.forget_deleted(location_id)
        if obj is not None:
            obj.pop("deletedDateTime", None)
        return obj

    def record(self, location_id: str, before: Location | None, at: float, lag: float) -> None:
        """A write at ``at`` replaced ``before`` (None: the location did not exist)."""
        if lag <= 0:
            self.versions.clear()
            return
        entries = self.versions.setdefault(location_id, [])
        entries.append((at, copy.deepcopy(before)))
        for key in list(self.versions):
            self.versions[key] = [e for e in self.versions[key] if e[0] > at - lag]
            if not self.versions[key]:
                del self.versions[key]

    def visible(self, current: dict[str, Location], now: float, lag: float) -> list[Location]:
        """The locations a read at ``now`` returns: writes younger than ``lag`` are not seen."""
        ids = list(current) + [i for i in self.versions if i not in current]
        found = (self.visible_one(current, i, now, lag) for i in ids)
        return [loc for loc in found if loc is not None]

    def visible_one(self, current: dict[str, Location], location_id: str, now: float, lag: float) -> Location | None:
        shown = current.get(location_id)
        if lag > 0:
            for written_at, before in reversed(self.versions.get(location_id, [])):
                if written_at <= now - lag:
                    break
                shown = before  # that write is not visible yet
        return shown
