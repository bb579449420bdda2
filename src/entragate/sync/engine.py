"""Reconciliation: keep each ACL's named locations equal to its granted ranges.

One writer thread per tenant. It waits for a pacing slot *before* deciding what to
write, so a burst of any size becomes one PATCH per location per slot carrying the
latest desired state. Failures never touch the grant store: throttling and
transient errors back off and retry; anything else parks the location (still
retried, slowly) and shows its code in ``status``.

With a :class:`~entragate.sync.leader.WriterLease` (several agents on one store,
SPEC 8) the engine is the writer only while it holds the lease; otherwise it is a
standby that retries the lease about once a second and never calls Graph. Each
term as writer starts by reading Entra; the lease is verified right before every
Graph write, and on losing it the engine stops writing at once and forgets what
it knew of the remote state.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from entragate.config import AclConfig, Config
from entragate.errors import Code, EntraError, LocationProblem, Throttled
from entragate.grants.store import GrantStore, StoreError, rfc3339
from entragate.graph.client import GraphClient, NamedLocation
from entragate.logs import get_logger
from entragate.sync.leader import WriterLease
from entragate.sync.pacer import Pacer, PacerStopped, full_jitter
from entragate.sync.ranges import RangeSet, desired_ranges, location_name, plan_locations


class WriterLeaseLost(Exception):
    """The writer lease was lost: the write about to be sent must not happen."""


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

    def to_json(self, placeholder: str) -> dict[str, Any]:
        error = self.last_error
        applied = sorted(self.applied) if self.applied is not None else None
        return {
            "name": self.name,
            "id": self.location.id if self.location else None,
            "desired": 0 if self.desired == [placeholder] else len(self.desired),
            "applied": None if applied is None else (0 if applied == [placeholder] else len(applied)),
            "ranges_desired": [r for r in self.desired if r != placeholder],
            "ranges_applied": None if applied is None else [r for r in applied if r != placeholder],
            "in_sync": self.applied is not None and set(self.desired) == self.applied,
            "last_sync": rfc3339(self.last_sync) if self.last_sync else None,
            "last_error": None
            if error is None
            else {"code": error.code, "message": error.message, "request_id": error.request_id},
            "throttled_until": rfc3339(self.throttled_until) if self.throttled_until else None,
        }


class SyncEngine:
    def __init__(
        self,
        config: Config,
        store: GrantStore,
        graph: GraphClient,
        pacer: Pacer,
        *,
        metrics: Any = None,
        parked_retry: float = 60.0,
        backoff_cap: float = 32.0,
        lease: WriterLease | None = None,
        standby_retry: float = 1.0,
        lease_check_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.store = store
        self.graph = graph
        self.pacer = pacer
        self.metrics = metrics
        self.parked_retry = parked_retry
        self.backoff_cap = backoff_cap
        self.placeholder = config.agent.placeholder
        self.log = get_logger(component="sync")
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._verify_due = 0.0
        self._verified_once = False
        self._backoff_attempts = 0
        # Without a lease this engine is the only writer (one agent, or sync --once).
        self.lease = lease
        self.standby_retry = standby_retry
        self.lease_check_interval = lease_check_interval
        self._writer = lease is None
        self._fresh = False  # Entra read since this term as writer began
        self._lease_check_due = 0.0
        self._standby_reason: str | None = None
        self._retry_lease_after = 0.0  # a writer that lost its session lets standbys go first
        if lease is not None:
            graph.write_guard = self._guard_write
        self.shards: dict[str, list[LocationState]] = {
            name: [
                LocationState(name, i, location_name(acl.location, i))
                for i in range(acl.max_locations)
            ]
            for name, acl in config.acls.items()
        }
        self._set_writer_metric()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SyncEngine:
        if self.lease is not None:
            # Settle the role before the API answers /readyz: a cheap, non-blocking try.
            self.acquire_writer()
        self._thread = threading.Thread(target=self._run, name="entragate-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self.pacer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            # A thread still stuck in a request releases the lease itself when it ends.
            self.release_writer()

    def notify(self) -> None:
        """Grants changed in this process: look again now."""
        self._wake.set()

    def ready(self) -> bool:
        """Writer: has read the remote state. Standby: its store answers (it serves the API)."""
        if self._writer:
            return self._verified_once
        try:
            self.store.change_seq()
        except StoreError:
            return False
        return True

    @property
    def is_writer(self) -> bool:
        return self._writer

    # ---------------------------------------------------------------- writer lease

    def acquire_writer(self) -> bool:
        """Become the writer if the lease is free; a new term starts by reading Entra."""
        if self._writer:
            return True
        assert self.lease is not None
        if time.monotonic() < self._retry_lease_after:
            return False
        try:
            acquired = self.lease.try_acquire()
        except Exception as exc:  # a lease must never take the engine down
            acquired, reason = False, f"{type(exc).__name__}: {exc}"
        else:
            reason = self.lease.why_not()
        if not acquired:
            if reason != self._standby_reason:  # once per reason, not once a second
                self._standby_reason = reason
                self.log.info("writer.standby", reason=reason, lease=self.lease.describe())
            return False
        with self._lock:
            self._forget_remote()
            self._writer = True
            self._fresh = False
            self._verify_due = 0.0
            self._lease_check_due = time.monotonic() + self.lease_check_interval
        self._standby_reason = None
        self._set_writer_metric()
        self.log.info("writer.acquired", lease=self.lease.describe())
        self._wake.set()
        return True

    def check_writer(self) -> bool:
        """Verify the lease now (a round trip to its source); on loss become a standby."""
        if self.lease is None:
            return True
        if not self._writer:
            return False
        try:
            held = self.lease.held()
        except Exception:
            held = False
        if not held:
            self._lose_writer("the writer lease is no longer held (its session ended)")
        return held

    def release_writer(self) -> None:
        """Give the lease up (on stop): a standby takes over within about a second."""
        if self.lease is None:
            return
        with self._lock:
            was_writer, self._writer, self._fresh = self._writer, False, False
        with contextlib.suppress(Exception):
            self.lease.release()
        if was_writer:
            self._set_writer_metric()
            self.log.info("writer.released", lease=self.lease.describe())

    def _lose_writer(self, reason: str) -> None:
        with self._lock:
            if not self._writer:
                return
            self._writer = False
            self._fresh = False
            self._forget_remote()
        # A flapping connection should not win the lease straight back: standbys retry
        # every ``standby_retry``, so a healthy one takes over first.
        self._retry_lease_after = time.monotonic() + 3 * self.standby_retry
        assert self.lease is not None
        with contextlib.suppress(Exception):
            self.lease.release()  # close the session: never keep a lock we no longer trust
        self._set_writer_metric()
        self.log.warning("writer.lost", reason=reason, lease=self.lease.describe())

    def _guard_write(self) -> None:
        """Graph calls this right before sending each write."""
        if not self.check_writer():
            raise WriterLeaseLost("this agent is no longer the writer")

    def _forget_remote(self) -> None:
        """What this agent knew of Entra is stale once another agent may have written."""
        for states in self.shards.values():
            for state in states:
                state.location = None
                state.applied = None
                state.last_error = None
                state.failures = 0
                state.parked_until = 0.0
                state.throttled_until = None
        self._backoff_attempts = 0

    def _set_writer_metric(self) -> None:
        setter = getattr(self.metrics, "set_writer", None)
        if setter is not None:
            setter(self._writer)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.release_writer()

    def _loop(self) -> None:
        seq = -1
        work = True  # False when a wait ended only to verify the lease
        while not self._stop.is_set():
            if not self._writer:
                if not self.acquire_writer():
                    self._stop.wait(self.standby_retry)  # standby: the API serves, Graph is left alone
                    continue
                work = True
            if self.lease is not None and time.monotonic() >= self._lease_check_due:
                # Even when idle, notice a lost lease within about lease_check_interval.
                self._lease_check_due = time.monotonic() + self.lease_check_interval
                if not self.check_writer():
                    continue
            if work:
                try:
                    if seq < 0:
                        seq = self.store.change_seq()
                    self.step()
                except PacerStopped:
                    return
                except Exception as exc:  # the writer must survive anything and keep grants
                    self.log.error("sync.crashed", error=f"{type(exc).__name__}: {exc}")
                    self._stop.wait(1.0)
                if not self._writer:
                    continue
            work = True
            timeout = self._seconds_until_next_event()
            if self._wake.is_set():
                self._wake.clear()
                continue
            # Cross-process writers (the CLI in direct mode) are seen through change_seq.
            deadline = time.monotonic() + timeout
            while not self._stop.is_set() and not self._wake.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.lease is not None and time.monotonic() >= self._lease_check_due:
                    work = False  # only the lease is due (checked above); keep waiting after
                    break
                new_seq = self.store.wait_for_change(seq, min(remaining, 0.25))
                if new_seq != seq:
                    seq = new_seq
                    break
            if self._wake.is_set():
                work = True
            self._wake.clear()

    def _seconds_until_next_event(self) -> float:
        now = time.monotonic()
        candidates = [self._verify_due - now, 30.0]
        next_expiry = self.store.next_expiry()
        if next_expiry is not None:
            candidates.append((next_expiry - datetime.now(UTC)).total_seconds())
        for states in self.shards.values():
            for state in states:
                if state.parked_until:
                    candidates.append(state.parked_until - now)
        if self._has_pending_work():
            candidates.append(self.pacer.seconds_until_ready())
        return max(0.0, min(candidates))

    def _has_pending_work(self) -> bool:
        with self._lock:
            return any(
                state.applied is None or set(state.desired) != state.applied
                for states in self.shards.values()
                for state in states
                if not state.parked_until
            )

    # ---------------------------------------------------------------- one pass

    def step(self) -> None:
        if not self._writer:
            return  # a standby neither expires grants nor reads Entra: the writer does
        self.expire_due()
        if time.monotonic() >= self._verify_due:
            self.refresh_remote()
        self.write_pending()

    def expire_due(self) -> None:
        for grant in self.store.pop_expired(datetime.now(UTC)):
            self.log.info("grant.expired", acl=grant.acl, user=grant.user, cidr=grant.cidr)

    def refresh_remote(self) -> bool:
        """Read every named location once (one paged list) and adopt what Entra holds."""
        if not self._writer:
            return False
        self._verify_due = time.monotonic() + self.config.agent.verify_interval
        try:
            locations = self.graph.list_locations()
        except EntraError as error:
            self._record_failure_all(error)
            # Transient failures retry as soon as the pacer's backoff allows; others slowly.
            retry_in = (
                self.pacer.seconds_until_ready()
                if error.retryable
                else min(self.config.agent.verify_interval, self.parked_retry)
            )
            self._verify_due = time.monotonic() + retry_in
            return False
        with self._lock:
            if not self._writer:
                return False  # lost the lease during the read: this view is not ours to keep
            for acl_name, states in self.shards.items():
                acl = self.config.acls[acl_name]
                for state in states:
                    self._adopt(acl, state, locations)
            self._fresh = True
        self._verified_once = True
        return True

    def _adopt(self, acl: AclConfig, state: LocationState, locations: list[NamedLocation]) -> None:
        by_id = [loc for loc in locations if loc.id == acl.location] if state.index == 0 else []
        if by_id:
            matches = by_id
        else:
            name = state.name
            if state.index > 0 and self.shards[acl.name][0].location is not None:
                base = self.shards[acl.name][0].location
                assert base is not None
                name = location_name(base.display_name, state.index)
            matches = [loc for loc in locations if loc.display_name == name]
        if len(matches) > 1:
            state.location, state.applied = None, None
            self._park(
                state,
                LocationProblem(
                    f"{len(matches)} named locations are called {state.name!r}",
                    host=self.graph.host,
                    operation="find named location",
                    hint="rename the duplicates or configure the location by id",
                ),
            )
            return
        if not matches:
            state.location, state.applied = None, None
            return
        found = matches[0]
        if not found.is_ip:
            self._park(
                state,
                LocationProblem(
                    f"named location {state.name!r} is not an IP ranges location",
                    host=self.graph.host,
                    operation="find named location",
                ),
            )
            return
        drift = state.applied is not None and state.applied != set(found.cidrs)
        if drift:
            self.log.warning(
                "location.drift",
                acl=acl.name,
                location=found.display_name,
                unexpected=sorted(set(found.cidrs) - state.applied) if state.applied else [],
                missing=sorted(state.applied - set(found.cidrs)) if state.applied else [],
            )
        state.location = found
        state.name = found.display_name
        state.applied = set(found.cidrs)
        if state.last_error is not None and isinstance(state.last_error, LocationProblem):
            state.last_error, state.parked_until = None, 0.0

    def _plan(self, acl: AclConfig) -> list[tuple[LocationState, list[str]]]:
        grants = self.store.active(acl.name)
        desired = desired_ranges(acl.static, [g.cidr for g in grants])
        states = self.shards[acl.name]
        current = [set(s.applied or ()) - {self.placeholder} for s in states]
        plan = plan_locations(
            desired,
            current,
            max_ranges=acl.max_ranges,
            max_locations=acl.max_locations,
            placeholder=self.placeholder,
        )
        if plan.overflow:
            self.log.error("acl.overflow", acl=acl.name, ranges=[str(r) for r in plan.overflow][:20])
        if self.metrics is not None:
            self.metrics.set_grants(acl.name, len(grants))
        result = []
        for location_plan in plan.locations:
            state = states[location_plan.index]
            state.desired = sorted(location_plan.ranges)
            result.append((state, state.desired))
        return result

    def _next_write(self) -> tuple[AclConfig, LocationState, list[str]] | None:
        now = time.monotonic()
        with self._lock:
            if not self._writer or not self._fresh:
                return None  # only a writer that has read Entra in this term writes
            for acl in self.config.acls.values():
                for state, ranges in self._plan(acl):
                    if state.parked_until and now < state.parked_until:
                        continue
                    if state.location is None or state.applied != set(ranges):
                        return acl, state, ranges
                    if state.location.is_trusted != acl.trusted:
                        return acl, state, ranges
        return None

    def write_pending(self, *, limit: int | None = None) -> int:
        """Write until Entra matches the store (or nothing can be written now)."""
        writes = 0
        while not self._stop.is_set() and (limit is None or writes < limit):
            if self._next_write() is None:
                return writes
            # Wait for the slot first, then decide: the write carries the newest state.
            if not self.pacer.wait_ready(timeout=self.backoff_cap + 1.0):
                return writes
            self.expire_due()
            target = self._next_write()
            if target is None:
                return writes
            acl, state, ranges = target
            if self._write(acl, state, ranges):
                writes += 1
        return writes

    def _write(self, acl: AclConfig, state: LocationState, ranges: list[str]) -> bool:
        """One Graph write (or a failed attempt: True); False when the lease was lost first."""
        before = set(state.applied or ())
        try:
            if state.location is None:
                if not acl.create:
                    raise LocationProblem(
                        f"no named location is called {state.name!r} and create is off",
                        host=self.graph.host,
                        operation="find named location",
                        hint="create it in the portal, set `create = true`, or configure its id",
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
                )
            else:
                self.graph.replace_ranges(state.location, ranges)
        except WriterLeaseLost:
            return False  # nothing was sent; the engine is a standby now
        except EntraError as error:
            self._record_failure(state, error)
            return True
        state.applied = set(ranges)
        state.last_sync = datetime.now(UTC)
        state.last_error = None
        state.failures = 0
        state.parked_until = 0.0
        state.throttled_until = None
        self._backoff_attempts = 0
        added = sorted(set(ranges) - before)
        removed = sorted(before - set(ranges))
        self.log.info(
            "location.updated",
            acl=acl.name,
            location=state.name,
            added=[r for r in added if r != self.placeholder],
            removed=[r for r in removed if r != self.placeholder],
            ranges=len(ranges),
            request_id=self.graph.last_request_id,
        )
        if self.metrics is not None:
            self.metrics.set_ranges(acl.name, state.name, len(ranges))
            self.metrics.set_error(acl.name, state.name, None)
            if added:
                # Added ranges may be collapsed (two /32s become a /31): match by coverage.
                now = datetime.now(UTC)
                written = RangeSet(added)
                for grant in self.store.active(acl.name):
                    if written.covers(grant.cidr):
                        self.metrics.observe_lag((now - grant.created_at).total_seconds())
        return True

    # ---------------------------------------------------------------- failures

    def _record_failure_all(self, error: EntraError) -> None:
        """A failure before any location was touched (the shared read): back off once."""
        throttled_until = self._back_off(error)
        with self._lock:
            for states in self.shards.values():
                for state in states:
                    self._note_failure(state, error, throttled_until)
        self.log.error(
            "sync.failed", code=error.code, error=error.message, request_id=error.request_id
        )

    def _record_failure(self, state: LocationState, error: EntraError) -> None:
        self._note_failure(state, error, self._back_off(error))
        self.log.error(
            "sync.failed",
            acl=state.acl,
            location=state.name,
            code=error.code,
            error=error.message,
            request_id=error.request_id,
        )

    def _back_off(self, error: EntraError) -> datetime | None:
        """Push the tenant's next request out; returns when a throttle ends."""
        if not error.retryable:
            return None
        self._backoff_attempts += 1
        if isinstance(error, Throttled):
            delay = error.retry_after
            if delay is None:
                delay = full_jitter(self._backoff_attempts, cap=self.backoff_cap, floor=self.pacer.interval)
            deadline = self.pacer.penalize(delay)
            if self.metrics is not None:
                self.metrics.throttled()
            return datetime.now(UTC) + timedelta(seconds=max(0.0, deadline - time.monotonic()))
        self.pacer.penalize(full_jitter(self._backoff_attempts, cap=self.backoff_cap, floor=0.5))
        return None

    def _note_failure(self, state: LocationState, error: EntraError, throttled_until: datetime | None) -> None:
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
            self._park(state, error)

    def _park(self, state: LocationState, error: EntraError) -> None:
        state.last_error = error
        retry = min(self.parked_retry * (2 ** min(state.failures, 4)), 900.0)
        state.parked_until = time.monotonic() + (self.parked_retry if state.failures <= 1 else retry)

    def retry_parked(self) -> None:
        """Operator action (or a config reload): try parked locations again now."""
        with self._lock:
            for states in self.shards.values():
                for state in states:
                    state.parked_until = 0.0
        self._verify_due = 0.0
        self.notify()

    # ---------------------------------------------------------------- reporting

    def status(self) -> dict[str, Any]:
        """Per ACL and location. A standby shows the desired ranges from the shared
        store but not the applied ones (only the writer reads Entra): those are null."""
        with self._lock:
            writer = self._writer
            acls = {}
            for name, states in self.shards.items():
                if not writer:
                    self._plan(self.config.acls[name])  # desired, from the shared store
                grants = self.store.active(name)
                locations = [s.to_json(self.placeholder) for s in states]
                if not writer:
                    for entry in locations:
                        entry["in_sync"] = None  # unknown here: ask the writer
                acls[name] = {
                    "location": self.config.acls[name].location,
                    "grants": len(grants),
                    "empty": not grants and not self.config.acls[name].static,
                    "locations": locations,
                }
        result: dict[str, Any] = {"writer": writer, "role": "writer" if writer else "standby"}
        if self.lease is not None:
            result["lease"] = self.lease.describe()
            if not writer and self._standby_reason:
                result["standby_reason"] = self._standby_reason
        result["ready"] = self.ready()
        result["acls"] = acls
        return result

    def plan(self) -> dict[str, Any]:
        """What a sync would write now: ranges to add and remove per location."""
        out: dict[str, Any] = {}
        with self._lock:
            for name, acl in self.config.acls.items():
                entries = []
                for state, ranges in self._plan(acl):
                    applied = state.applied or set()
                    entries.append(
                        {
                            "location": state.name,
                            "exists": state.location is not None,
                            "add": sorted(set(ranges) - applied - {self.placeholder}),
                            "remove": sorted(applied - set(ranges) - {self.placeholder}),
                            "write": state.location is None or applied != set(ranges),
                        }
                    )
                out[name] = entries
        return out
