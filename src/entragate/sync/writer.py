"""Applying one location's planned ranges through Graph, and what a failure means.

Failures never touch the grant store (docs/design.md#errors): throttling and
transient errors back the whole tenant off and retry; anything else parks the
location (still retried, slowly) and shows its code in ``status``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from entragate.config import AclConfig
from entragate.errors import Code, EntraError, LocationProblem, Throttled
from entragate.graph.client import GraphClient, NamedLocation
from entragate.graph.matching import is_location_id
from entragate.logs import get_logger
from entragate.sync.pacer import Pacer, full_jitter
from entragate.sync.role import WriterLeaseLost
from entragate.sync.state import LocationState

#: Addresses named in one ``location.updated`` event (with the full counts beside them).
#: Each grant has its own ``grant.created`` event; a burst's write listed 2,000 addresses
#: in one line, and writing it held the interpreter while grants waited for their
#: acknowledgement (docs/design.md#grant-path).
LOGGED_RANGES = 20


class Failures:
    """Error → backoff or park decisions for one tenant (docs/design.md#pacing)."""

    def __init__(
        self,
        graph: GraphClient,
        pacer: Pacer,
        *,
        metrics: Any = None,
        parked_retry: float = 60.0,
        backoff_cap: float = 32.0,
    ) -> None:
        self.graph = graph
        self.pacer = pacer
        self.metrics = metrics
        self.parked_retry = parked_retry
        self.backoff_cap = backoff_cap
        self.attempts = 0  # failed attempts in a row, tenant-wide: the backoff exponent
        self.log = get_logger(component="sync")
        self._report_pace()

    def reset(self) -> None:
        self.attempts = 0

    def succeeded(self) -> None:
        """A Graph request went through: the backoff restarts and the pace recovers."""
        self.attempts = 0
        self.pacer.succeeded()
        self._report_pace()

    def _report_pace(self) -> None:
        if self.metrics is not None:
            self.metrics.set_pace(self.pacer.pace)

    def record(self, state: LocationState, error: EntraError) -> None:
        """A write to ``state``'s location failed."""
        self.note(state, error, self.back_off(error))
        self.log.error(
            "sync.failed",
            acl=state.acl,
            location=state.name,
            code=error.code,
            error=error.message,
            request_id=error.request_id,
        )

    def back_off(self, error: EntraError) -> datetime | None:
        """Push the tenant's next request out; returns when a throttle ends."""
        if not error.retryable:
            return None
        self.attempts += 1
        if isinstance(error, Throttled):
            delay = error.retry_after
            if delay is None:
                delay = full_jitter(self.attempts, cap=self.backoff_cap, floor=self.pacer.interval)
            if self.pacer.throttled():
                self.log.warning("pace.lowered", pace=round(self.pacer.pace, 3), rate=self.pacer.rate)
            self._report_pace()
            deadline = self.pacer.penalize(delay)
            if self.metrics is not None:
                self.metrics.throttled()
            return datetime.now(UTC) + timedelta(seconds=max(0.0, deadline - time.monotonic()))
        self.pacer.penalize(full_jitter(self.attempts, cap=self.backoff_cap, floor=0.5))
        return None

    def note(self, state: LocationState, error: EntraError, throttled_until: datetime | None) -> None:
        """Show ``error`` on ``state``; park it unless retrying can help."""
        state.last_error = error
        state.failures += 1
        state.throttled_until = throttled_until
        if self.metrics is not None:
            self.metrics.set_error(state.acl, state.name, error.code)
        if error.code in (Code.ENTRA001, Code.ENTRA002):
            # Graph reads roles from the token: a permission granted later only shows in a
            # new one, so the next attempt must not reuse the cached token.
            self.graph.tokens.invalidate()
        if not error.retryable:
            self.park(state, error)

    def park(self, state: LocationState, error: EntraError) -> None:
        state.last_error = error
        retry = min(self.parked_retry * (2 ** min(state.failures, 4)), 900.0)
        retry = self.parked_retry if state.failures <= 1 else retry
        if owes_removal(state):
            # Access must not outlive its grant by a parking: while the location may still
            # hold an ended grant's address, it is tried again at most backoff_cap apart
            # (an intercepting proxy switched off, a permission restored; docs/design.md#outages).
            retry = min(retry, self.backoff_cap)
        state.parked_until = time.monotonic() + retry


def owes_removal(state: LocationState) -> bool:
    """Whether the location may hold a range it should not (unknown counts as may)."""
    return state.applied is None or bool(state.applied - set(state.desired))


class LocationWriter:
    """Sends the one Graph write that makes a location hold its planned ranges."""

    def __init__(
        self,
        graph: GraphClient,
        failures: Failures,
        *,
        placeholder: str,
        metrics: Any = None,
    ) -> None:
        self.graph = graph
        self.failures = failures
        self.placeholder = placeholder
        self.metrics = metrics
        self.log = get_logger(component="sync")

    def write(
        self,
        acl: AclConfig,
        state: LocationState,
        ranges: list[str],
        *,
        fresh: dict[str, datetime] | None = None,
    ) -> bool:
        """One Graph write (or a failed attempt: True); False when the lease was lost first.
        ``fresh``: ranges granted since the last write, and when (the lag metric)."""
        before = set(state.applied or ())
        try:
            self._send(acl, state, ranges)
        except WriterLeaseLost:
            return False  # nothing was sent; the engine is a standby now
        except EntraError as error:
            self.failures.record(state, error)
            return True
        state.written(ranges)
        self.failures.succeeded()
        self._report(acl, state, ranges, before, fresh or {})
        return True

    def _send(self, acl: AclConfig, state: LocationState, ranges: list[str]) -> None:
        if state.location is None:
            # The first location is created only when asked for by name (an id never is);
            # further shards are the agent's own and follow max_locations.
            if state.index == 0 and (not acl.create or is_location_id(acl.location)):
                raise LocationProblem(
                    f"acl {acl.name}: no IP named location is {acl.location!r}, and entragate "
                    + ("never creates a location from an id" if acl.create else "create is off"),
                    host=self.graph.host,
                    operation="find named location",
                    hint="fix the name or id, or set `create = true` on the acl to create it by name",
                    reason="missing",
                )
            state.location = self.graph.create_location(state.name, ranges, trusted=acl.trusted)
            state.name = state.location.display_name
        elif state.location.is_trusted != acl.trusted and state.applied == set(ranges):
            self.graph.set_trusted(state.location, acl.trusted)
            state.location = NamedLocation(
                state.location.id,
                state.location.display_name,
                state.location.odata_type,
                acl.trusted,
                state.location.cidrs,
                state.location.modified,
            )
        else:
            self.graph.replace_ranges(state.location, ranges)

    def _report(
        self,
        acl: AclConfig,
        state: LocationState,
        ranges: list[str],
        before: set[str],
        fresh: dict[str, datetime],
    ) -> None:
        added = sorted(set(ranges) - before)
        removed = sorted(before - set(ranges))
        added = [r for r in added if r != self.placeholder]
        removed = [r for r in removed if r != self.placeholder]
        self.log.info(
            "location.updated",
            acl=acl.name,
            location=state.name,
            added=added[:LOGGED_RANGES],
            added_count=len(added),
            removed=removed[:LOGGED_RANGES],
            removed_count=len(removed),
            ranges=len(ranges),
            request_id=self.graph.last_request_id,
        )
        if self.metrics is None:
            return
        self.metrics.set_ranges(acl.name, state.name, len(ranges))
        self.metrics.set_error(acl.name, state.name, None)
        now = datetime.now(UTC)
        for created_at in fresh.values():
            self.metrics.observe_lag((now - created_at).total_seconds())
