"""What Graph shows a reader, as opposed to what it holds (docs/design.md#emulator).

Graph is eventually consistent: for a few seconds after a write, a read may still
return the previous version of a named location (or miss a new one, or still show
a deleted one).  ``read_lag_seconds`` on the emulator switches this on (off by
default: Graph does not always lag).  A DELETE keeps the location among the
deleted items, from which it can be restored (on by default, as Graph does).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

Location = dict[str, Any]


@dataclass
class LocationHistory:
    """One tenant's recent writes (for the lag) and its deleted locations."""

    #: per location id, (when it was written, what it looked like before) newest last
    versions: dict[str, list[tuple[float, Location | None]]] = field(default_factory=dict)
    deleted: dict[str, Location] = field(default_factory=dict)

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
