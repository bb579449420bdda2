"""What the writer knows of one shard location of an ACL (docs/design.md#writer)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from entragate.errors import EntraError
from entragate.graph.client import NamedLocation


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

    def written(self, ranges: Iterable[str]) -> None:
        """Entra now holds ``ranges``: the location is healthy again."""
        self.applied = set(ranges)
        self.last_sync = datetime.now(UTC)
        self.clear_failures()

    def forget(self) -> None:
        """Another agent may have written since: what we knew of Entra is stale."""
        self.location = None
        self.applied = None
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
