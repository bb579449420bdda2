"""Ending grants at their ``expires_at``, with or without the store (docs/design.md#outages).

The tracker drops an expired grant from the desired state at once (its own heap);
the store then records the expiry when it can. While the store is down, each grant
that left the desired state is logged ``recorded=false`` and remembered, so that
when the store records it later the event says ``grant.expiry_recorded`` instead of
announcing the same expiry twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from entragate.grants import GrantStore, StoreError
from entragate.logs import get_logger
from entragate.sync.tracker import DesiredTracker, GrantKey


class Expiry:
    def __init__(self, store: GrantStore, tracker: DesiredTracker, *, lock: threading.RLock) -> None:
        self.store = store
        self.tracker = tracker
        self._lock = lock  # the engine's: the desired state changes with what Entra holds
        self.unrecorded: set[GrantKey] = set()  # expired here, not yet in the store
        self.log = get_logger(component="sync")

    def run(self) -> list[GrantKey]:
        """Drop expired grants from the desired state (always), then record the expiries
        in the store (when it answers, and not while it is backing off). The grants that
        left the desired state now."""
        now = datetime.now(UTC)
        with self._lock:
            ended = self.tracker.expire(now)
        health = self.store.health
        try:
            if not health.available and health.seconds_until_retry() > 0:
                raise StoreError("backing off")  # ask the store again when its retry is due
            recorded = self.store.pop_expired(now)
        except StoreError:  # the store has recorded the failure in its health
            for key in ended:
                self._unrecorded_expiry(key)
            return ended
        for grant in recorded:
            key = (grant.acl, grant.user, grant.cidr)
            event = "grant.expiry_recorded" if key in self.unrecorded else "grant.expired"
            self.log.info(event, acl=grant.acl, user=grant.user, cidr=grant.cidr)
        self.unrecorded.clear()  # the rest ended otherwise meanwhile (revoked, flushed, renewed)
        return ended

    def _unrecorded_expiry(self, key: GrantKey) -> None:
        self.unrecorded.add(key)
        acl, user, cidr = key
        self.log.info("grant.expired", acl=acl, user=user, cidr=cidr, recorded=False,
                      note="removed from Entra; the store records it when it is back")
