"""The desired state of every ACL, kept in step with the grant store (docs/design.md#placement).

The store hands every commit of this process to the tracker's queue (under
its own lock, so in commit order); the writer's thread applies the queued changes one
by one. A change committed by another process (the CLI in direct mode, another agent
on PostgreSQL) shows only as a higher ``change_seq``: then, and after every full
reconcile, the state is rebuilt from the whole store.

The tracker also keeps every grant's ``expires_at`` (a heap), so the writer drops a
grant from the desired state at its expiry on its own, whether or not the store can
record the expiry at that moment (docs/design.md#outages).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from entragate.config import Config
from entragate.grants import GrantStore
from entragate.grants.batch import StoreChange
from entragate.grants.model import Grant
from entragate.sync.desired import AclDesired
from entragate.sync.state import Shards

GrantKey = tuple[str, str, str]  # (acl, user, cidr)


class DesiredTracker:
    def __init__(
        self, config: Config, store: GrantStore, shards: Shards, *, lock: threading.RLock, metrics: Any = None
    ) -> None:
        self.config = config
        self.store = store
        self.shards = shards
        self.metrics = metrics
        self._lock = lock  # the engine's: the desired state changes with what Entra holds
        self.acls = {
            name: AclDesired(
                name,
                acl.static,
                max_ranges=acl.max_ranges,
                max_locations=acl.max_locations,
                placeholder=config.agent.placeholder,
            )
            for name, acl in config.acls.items()
        }
        self._changes: deque[StoreChange] = deque()  # committed here, not yet applied
        self._known_seq = -1  # the store's change_seq the desired state reflects
        self.stale = True  # rebuild from the whole store before the next plan
        # (acl, user, cidr) -> expires_at of every grant in the desired state, and a heap of
        # (expires_at, acl, user, cidr) that may hold superseded entries (renewals): see expire()
        self._expires: dict[GrantKey, datetime] = {}
        self._heap: list[tuple[datetime, str, str, str]] = []
        store.add_listener(self.queue)

    #: a standby never applies what its API stores: past this many, forget and rebuild later
    MAX_QUEUED = 10_000

    def queue(self, change: StoreChange) -> None:
        """Called by the store after each commit (under its lock): quick, and no store calls."""
        if len(self._changes) >= self.MAX_QUEUED:
            self._changes.clear()
            self.stale = True
        self._changes.append(change)

    def behind(self) -> bool:
        """Whether changes wait to be applied (or a rebuild is due)."""
        return self.stale or bool(self._changes)

    def absorb(self) -> None:
        """Bring the desired state up to date: committed changes one by one (O(log n)
        each), or a rebuild from the whole store after a full reconcile or when another
        process wrote (its changes reach us only as a higher change_seq)."""
        seq = self.store.change_seq()  # first: every local change up to it is queued already
        with self._lock:
            if not self.stale:
                self.apply_queued()
            if self.stale or seq > self._known_seq:
                self.rebuild()

    def apply_queued(self) -> None:
        now = time.monotonic()
        while self._changes:
            change = self._changes.popleft()
            if change.seq <= self._known_seq:
                continue  # already in the snapshot the last rebuild read
            if change.first_seq != self._known_seq + 1:
                self.stale = True  # someone else committed in between
            self._known_seq = change.seq
            for grant in change.added:
                desired = self.acls.get(grant.acl)
                if desired is not None:
                    desired.add(grant.user, grant.cidr, now, grant.created_at)
                    self._will_expire(grant)
            for grant in change.removed:
                desired = self.acls.get(grant.acl)
                if desired is not None:
                    desired.remove(grant.user, grant.cidr, now)
                    self._expires.pop((grant.acl, grant.user, grant.cidr), None)

    def rebuild(self) -> None:
        seq = self.store.change_seq()
        grants = self.store.active()  # everything committed up to seq, perhaps a little more
        now = time.monotonic()
        by_acl: dict[str, list[tuple[str, str, datetime]]] = {name: [] for name in self.acls}
        self._expires = {}
        for grant in grants:
            if grant.acl in by_acl:
                by_acl[grant.acl].append((grant.user, grant.cidr, grant.created_at))
                self._expires[(grant.acl, grant.user, grant.cidr)] = grant.expires_at
        self._heap = [(at, *key) for key, at in self._expires.items()]
        heapq.heapify(self._heap)
        for name, desired in self.acls.items():
            states = self.shards[name]
            desired.rebuild(by_acl[name], [state.applied for state in states], now)
            trusted = self.config.acls[name].trusted
            for state, shard in zip(states, desired.shards, strict=True):
                if state.location is not None and state.location.is_trusted != trusted:
                    shard.mark(now, removal=False)
        self._known_seq, self.stale = seq, False
        self.apply_queued()  # changes committed since seq (re-applying one is harmless)
        self.report()

    # ------------------------------------------------------------------ expiry

    def _will_expire(self, grant: Grant) -> None:
        key = (grant.acl, grant.user, grant.cidr)
        if self._expires.get(key) != grant.expires_at:  # new, or renewed
            self._expires[key] = grant.expires_at
            heapq.heappush(self._heap, (grant.expires_at, *key))

    def expire(self, now: datetime) -> list[GrantKey]:
        """Drop from the desired state every grant whose ``expires_at`` has passed (under
        the engine's lock). The store's own expiry of the same grants, when it comes,
        changes nothing more here."""
        ended: list[GrantKey] = []
        heap, expires = self._heap, self._expires
        moment = time.monotonic()
        while heap and heap[0][0] <= now:
            at, acl, user, cidr = heapq.heappop(heap)
            if expires.get((acl, user, cidr)) != at:
                continue  # renewed since, or ended already
            del expires[(acl, user, cidr)]
            self.acls[acl].remove(user, cidr, moment)
            ended.append((acl, user, cidr))
        return ended

    def next_expiry(self) -> datetime | None:
        """The earliest ``expires_at`` in the desired state (no store call)."""
        heap, expires = self._heap, self._expires
        while heap and expires.get((heap[0][1], heap[0][2], heap[0][3])) != heap[0][0]:
            heapq.heappop(heap)  # superseded by a renewal, or ended
        return heap[0][0] if heap else None

    def report(self) -> None:
        for name, desired in self.acls.items():
            for state, shard in zip(self.shards[name], desired.shards, strict=True):
                state.desired = shard.ranges_to_write() if shard.opened else []
            if self.metrics is not None:
                self.metrics.set_grants(name, desired.grants)

