"""Ended grants leave Entra while the writer lease is in doubt (docs/design.md#outages).

A PostgreSQL writer lease lives in the database it guards: when PostgreSQL goes
down, the writer can no longer prove it still holds the lease, and it stops
being the writer. Nobody may then *write* the desired state, since another
agent that can still reach the database may have taken over; but an address
whose grant has ended must still leave Entra on time.

So a writer whose lease is in doubt makes narrowing writes only: it reads the
locations, takes out exactly the addresses of grants that ended in its own
tracker (and that no grant it still knows covers), and leaves everything else
as Entra holds it. Removals it still owed when the doubt began (an expiry whose
write was waiting for its slot) are remembered too (``remember``), and what to take
out is decided after waiting for the slot, as the writer does. Such a write can only remove access, never grant any, whoever
else is writing: the worst it can do to another writer is take out an address
that writer re-granted in the one request between our read and our PATCH, which
that writer's verify pass puts back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from entragate.config import Config
from entragate.errors import EntraError
from entragate.graph.client import GraphClient, NamedLocation
from entragate.graph.matching import resolve_location
from entragate.logs import get_logger
from entragate.sync.cidrs import net_bounds, subtract_cidrs
from entragate.sync.expiry import Expiry
from entragate.sync.pacer import Pacer
from entragate.sync.ranges import location_name
from entragate.sync.role import WriterLeaseLost, WriterRole
from entragate.sync.tracker import DesiredTracker


class Narrowing:
    """Removals of ended grants, and nothing else, while ``role.in_doubt``."""

    def __init__(
        self,
        config: Config,
        tracker: DesiredTracker,
        expiry: Expiry,
        graph: GraphClient,
        role: WriterRole,
        *,
        lock: threading.RLock,
        pacer: Pacer | None = None,
        absorb: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.expiry = expiry
        self.graph = graph
        self.role = role
        self.pacer = pacer
        self._absorb = absorb
        self._known: dict[str, list[str]] = {}  # acl → what its grants covered when last looked
        self._lock = lock
        self.placeholder = config.agent.placeholder
        self.pending: dict[str, set[str]] = {}  # acl → ranges of ended grants, not yet out of Entra
        self.log = get_logger(component="sync")

    def stand_by(self, standby_retry: float) -> float:
        """A standby's turn; how long until its next. In doubt it takes ended grants out of
        Entra (failures are retried next turn) and wakes for the next expiry."""
        if not self.role.in_doubt:
            self.clear()
            return standby_retry
        try:
            self.run()
        except (EntraError, WriterLeaseLost) as exc:  # the removals stay pending
            self.log.warning("location.narrowing_failed", error=str(exc)[:300],
                             pending=self.describe()["pending_removals"])
        with self._lock:
            next_expiry = self.tracker.next_expiry()
        wait = standby_retry
        if next_expiry is not None:
            wait = min(wait, (next_expiry - datetime.now(UTC)).total_seconds())
        return max(0.05, wait)

    def clear(self) -> None:
        """A writer again, or another agent is: the full reconcile takes over."""
        self.pending.clear()
        self._known.clear()

    def remember(self, acl: str, ranges: set[str]) -> None:
        """Ranges Entra held that no grant wants any more, as the writer knew when it lost
        the lease: they are owed removals like the ends that come later."""
        with self._lock:
            if acl not in self.tracker.acls:
                return
            desired = self.tracker.acls[acl].desired()
            self._known.setdefault(acl, desired)
            gone = subtract_cidrs([r for r in ranges if r != self.placeholder], desired)
            if gone:
                self.pending.setdefault(acl, set()).update(gone)

    def _collect(self) -> None:
        """Owed removals: grants that ended here, and any the store says ended elsewhere
        (a revoke through another agent's API) since the last look."""
        for acl, _user, cidr in self.expiry.run():
            with self._lock:
                self.pending.setdefault(acl, set()).add(cidr)
        if self._absorb is not None:
            self._absorb()
        with self._lock:
            for acl, desired in self.tracker.acls.items():
                now = desired.desired()
                before = self._known.get(acl)
                if before is not None:
                    gone = subtract_cidrs(before, now)
                    if gone:
                        self.pending.setdefault(acl, set()).update(gone)
                self._known[acl] = now

    def _gone(self, acl: str, owed: set[str]) -> list[str]:
        with self._lock:
            return subtract_cidrs(sorted(owed), self.tracker.acls[acl].desired())

    def run(self) -> int:
        """End what is due; take what ended out of Entra (``EntraError`` when Graph fails,
        and the removals stay pending). The number of writes sent."""
        self._collect()
        for acl in [name for name, owed in self.pending.items() if not self._gone(name, owed)]:
            del self.pending[acl]  # still covered by a grant this agent knows
        if not self.pending:
            return 0
        locations = self.graph.list_locations()
        writes = 0
        for acl_name in sorted(self.pending):
            targets = self._locations_of(acl_name, locations)
            # Decide after waiting for the slot: whatever ended meanwhile goes too.
            if self.pacer is not None:
                self.pacer.wait_ready(timeout=5.0)
            self._collect()
            with self._lock:
                owed = set(self.pending.get(acl_name, ()))
            ranges = self._gone(acl_name, owed)
            for location in targets:
                writes += self._narrow(acl_name, location, ranges)
            with self._lock:
                left = self.pending.get(acl_name, set()) - owed
                if left:
                    self.pending[acl_name] = left
                else:
                    self.pending.pop(acl_name, None)
        return writes

    def _locations_of(self, acl_name: str, locations: list[NamedLocation]) -> list[NamedLocation]:
        acl = self.config.acls[acl_name]
        first = resolve_location(locations, acl.location, create=True, host=self.graph.host, acl=acl_name)
        if first is None:
            return []
        names = {location_name(first.display_name, i) for i in range(1, acl.max_locations)}
        return [first] + [loc for loc in locations if loc.is_ip and loc.display_name in names]

    def _narrow(self, acl: str, location: NamedLocation, gone: list[str]) -> int:
        parsed, verbatim = _split_canonical(location.cidrs)
        keep = subtract_cidrs(parsed, gone) + verbatim
        if set(keep) == set(location.cidrs):
            return 0
        with self.role.narrowing():
            self.graph.replace_ranges(location, keep or [self.placeholder])
        removed = sorted(set(location.cidrs) - set(keep))
        self.log.warning(
            "location.narrowed",
            acl=acl,
            location=location.display_name,
            removed=removed[:20],
            removed_count=len(removed),
            reason="the writer lease is in doubt (its store is unreachable): only ended grants were removed",
            request_id=self.graph.last_request_id,
        )
        return 1

    def describe(self) -> dict[str, Any]:
        return {"pending_removals": sum(len(r) for r in self.pending.values())}


def _split_canonical(cidrs: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Ranges this module can do arithmetic on, and the rest (kept as Entra holds them)."""
    parsed, verbatim = [], []
    for cidr in cidrs:
        try:
            net_bounds(cidr)
        except ValueError:
            verbatim.append(cidr)
        else:
            parsed.append(cidr)
    return parsed, verbatim
