"""Reconciliation: keep each ACL's named locations equal to its granted ranges.

One writer thread per tenant (docs/design.md#writer). It waits for a pacing slot
*before* deciding what to write, so a burst of any size becomes one PATCH per
location per slot carrying the latest desired state. This module is the loop and
its scheduling; the parts it drives live beside it:

- ``role.py``: writer or standby, by the store's writer lease (docs/design.md#lease);
- ``drift.py``: reading Entra and adopting what it holds (the verify pass);
  ``foreign.py``: another writer on the same location, and the slow repairs it gets;
- ``tracker.py``, ``desired.py`` and ``shard.py``: each ACL's desired ranges and their
  placement over shard locations, updated change by change; which shard the next
  slot goes to;
- ``writer.py``: one location's Graph write, and failure → backoff or park;
- ``status.py``: the ``status`` and dry-run snapshots;
- ``expiry.py``: ending grants on time, with or without the store; ``supervisor.py``:
  the loop's restarts and liveness.

The loop never dies of a failing store or Graph (docs/design.md#outages): every call
it makes is inside its recovery path, and a supervisor restarts it should it ever
end unexpectedly; ``alive()`` (``/healthz``) says whether it runs.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from entragate.config import AclConfig, Config
from entragate.errors import EntraError
from entragate.grants import GrantStore, StoreError
from entragate.grants.health import RETRY_CAP
from entragate.grants.lease import WriterLease
from entragate.graph.client import GraphClient
from entragate.logs import get_logger
from entragate.sync.drift import adopt
from entragate.sync.expiry import Expiry
from entragate.sync.foreign import ForeignPace
from entragate.sync.narrowing import Narrowing
from entragate.sync.pacer import Pacer, PacerStopped
from entragate.sync.ranges import location_name
from entragate.sync.role import WriterRole
from entragate.sync.shard import Shard, Ticket, most_due, passed_over
from entragate.sync.state import LocationState, Shards, all_states
from entragate.sync.status import engine_plan, engine_status
from entragate.sync.supervisor import Restarts
from entragate.sync.tracker import DesiredTracker
from entragate.sync.writer import Failures, LocationWriter

#: Seconds between re-reads while Graph still shows a location as it was before our write.
CONSISTENCY_POLL = 2.0



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
        foreign_pace: ForeignPace | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.graph = graph
        self.pacer = pacer
        self.metrics = metrics
        self.parked_retry = parked_retry
        self.backoff_cap = backoff_cap
        self.placeholder = config.agent.placeholder
        self.foreign_pace = foreign_pace or ForeignPace.for_verify(config.agent.verify_interval)
        self.log = get_logger(component="sync")
        self._lock = threading.RLock()  # guards the shards and the role's flags
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._verify_due = 0.0
        self._verified_once = False
        self.health = store.health  # up, or down since when (docs/design.md#outages)
        if metrics is not None:
            self.health.watch(metrics.set_store_up)
        self._restarts = Restarts()
        self.shards: Shards = {
            name: [
                LocationState(name, i, location_name(acl.location, i))
                for i in range(acl.max_locations)
            ]
            for name, acl in config.acls.items()
        }
        self.tracker = DesiredTracker(config, store, self.shards, lock=self._lock, metrics=metrics)
        self.desired = self.tracker.acls
        self.expiry = Expiry(store, self.tracker, lock=self._lock)
        self.failures = Failures(
            graph, pacer, metrics=metrics, parked_retry=parked_retry, backoff_cap=backoff_cap
        )
        self.location_writer = LocationWriter(
            graph, self.failures, placeholder=self.placeholder, metrics=metrics
        )
        self.role = WriterRole(
            lease,
            lock=self._lock,
            forget_remote=self._forget_remote,
            on_acquired=self._wake.set,
            metrics=metrics,
            standby_retry=standby_retry,
            lease_check_interval=lease_check_interval,
        )
        self.narrowing = Narrowing(
            config, self.tracker, self.expiry, graph, self.role, lock=self._lock, pacer=pacer,
            absorb=self._absorb,
        )
        if lease is not None:
            graph.write_guard = self.role.guard_write

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
        """Writer: has read the remote state and its store answers. Standby: its store
        answers (it serves the API)."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> tuple[str, str] | None:
        """Why ``/readyz`` answers 503 now: (reason code, message), or None when ready."""
        if self.role.writer:
            if not self.health.available:
                return "store_unavailable", (
                    f"the grant store is unavailable ({self.health.last_error}); grants are "
                    "refused until it is back, expiries still leave Entra on time"
                )
            if not self._verified_once:
                return "not_ready", "the agent has not read the named locations yet; see GET /v1/status for why"
            return None
        try:
            self.store.change_seq()
        except StoreError as exc:
            self.health.failed("readiness check", exc)
            return "store_unavailable", f"the grant store is unavailable ({self.health.last_error})"
        self.health.succeeded()
        return None

    def alive(self) -> bool:
        """Whether the loop runs (or was stopped on purpose): ``/healthz``."""
        return self._restarts.alive(self._thread, self._stop.is_set())

    # ---------------------------------------------------------------- writer lease

    @property
    def lease(self) -> WriterLease | None:
        return self.role.lease

    @property
    def is_writer(self) -> bool:
        return self.role.writer

    def acquire_writer(self) -> bool:
        """Become the writer if the lease is free; a new term starts by reading Entra."""
        return self.role.acquire()

    def check_writer(self) -> bool:
        """Verify the lease now; on loss become a standby."""
        return self.role.check()

    def release_writer(self) -> None:
        """Give the lease up (on stop): a standby takes over within about a second."""
        self.role.release()

    def _forget_remote(self) -> None:
        """What this agent knew of Entra is stale once another agent may have written.
        A writer now in doubt keeps, as owed removals, what Entra held beyond its grants."""
        for acl, states in self.shards.items():
            for state in states:
                if self.role.in_doubt:
                    self.narrowing.remember(acl, set(state.applied or ()))
                state.forget()
        self.failures.reset()
        self._verify_due = 0.0  # read Entra first

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        """The supervisor: the loop ends only when the engine stops; anything else that
        escapes it (a bug) is logged and the loop starts again after a short pause."""
        try:
            while not self._stop.is_set():
                try:
                    self._loop()
                except PacerStopped:
                    return
                except Exception as exc:  # noqa: BLE001 - the writer must not die
                    self.log.error(
                        "sync.loop_restarted",
                        error=f"{type(exc).__name__}: {str(exc)[:300]}",
                        restarts_last_minute=self._restarts.record(),
                    )
                    self._stop.wait(1.0)
        finally:
            self.release_writer()

    def _loop(self) -> None:
        seq = -1
        work = True  # False when a wait ended only to verify the lease
        while not self._stop.is_set():
            if not self.role.writer:
                if not self.acquire_writer():
                    # standby: the API serves, Graph is left alone, unless ended grants must leave
                    self._stop.wait(self.narrowing.stand_by(self.role.standby_retry))
                    continue
                self.narrowing.clear()
                work = True
            # Even when idle, notice a lost lease within about lease_check_interval.
            if not self.role.check_if_due():
                continue
            if work:
                try:
                    if seq < 0:
                        seq = self.store.change_seq()
                    self.step()
                except PacerStopped:
                    raise
                except StoreError as exc:  # retried with backoff; expiries still leave Entra
                    self.health.failed("sync pass", exc)
                except Exception as exc:  # the writer must survive anything and keep grants
                    self.log.error("sync.crashed", error=f"{type(exc).__name__}: {exc}")
                    self._stop.wait(1.0)
                if not self.role.writer:
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
                if self.role.check_due():
                    work = False  # only the lease is due (checked above); keep waiting after
                    break
                try:
                    new_seq = self.store.wait_for_change(seq, min(remaining, 0.25))
                except StoreError as exc:
                    self.health.failed("wait for changes", exc)
                    self._stop.wait(min(remaining, 0.25))
                    continue
                if new_seq != seq:
                    seq = new_seq
                    break
            if self._wake.is_set():
                work = True
            self._wake.clear()

    def _seconds_until_next_event(self) -> float:
        now = time.monotonic()
        candidates = [self._verify_due - now, 30.0]
        with self._lock:
            next_expiry = self.tracker.next_expiry()  # in memory: no store call while idle
        if next_expiry is not None:
            candidates.append((next_expiry - datetime.now(UTC)).total_seconds())
        if not self.health.available or self.expiry.unrecorded:
            candidates.append(max(self.health.seconds_until_retry(), RETRY_CAP / 4))
        for state in all_states(self.shards):
            if state.parked_until:
                candidates.append(state.parked_until - now)
            if held := state.repair_hold(state.desired, self.foreign_pace):
                candidates.append(held - now)  # docs/design.md#foreign-writer
        if self._has_pending_work():
            candidates.append(self.pacer.seconds_until_ready())
        return max(0.0, min(candidates))

    def _has_pending_work(self) -> bool:
        with self._lock:
            return self.tracker.behind() or any(
                shard.dirty
                and not self.shards[name][shard.index].parked_until
                and not self.shards[name][shard.index].repair_hold(shard.ranges_to_write(), self.foreign_pace)
                for name, desired in self.desired.items()
                for shard in desired.shards
            )

    # ---------------------------------------------------------------- one pass

    def step(self) -> None:
        if not self.role.writer:
            return  # a standby neither expires grants nor reads Entra: the writer does
        self.expire_due()
        if time.monotonic() >= self._verify_due:
            self.refresh_remote()
        self.write_pending()

    def expire_due(self) -> None:
        """End expired grants: out of the desired state now, into the store when it can."""
        self.expiry.run()

    def _absorb(self) -> None:
        """The tracker catches up with the store; while the store is down it goes on with
        the changes this process committed and what it read last."""
        try:
            self.tracker.absorb()
        except StoreError as exc:
            self.health.failed("read changes", exc)
            with self._lock:
                if not self.tracker.stale:
                    self.tracker.apply_queued()
            return
        self.health.succeeded()

    def refresh_remote(self) -> bool:
        """Read every named location once (one paged list) and adopt what Entra holds."""
        if not self.role.writer:
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
        self.failures.succeeded()
        with self._lock:
            if not self.role.writer:
                return False  # lost the lease during the read: this view is not ours to keep
            stale = False
            for acl_name, states in self.shards.items():
                stale = adopt(
                    self.config.acls[acl_name],
                    states,
                    locations,
                    host=self.graph.host,
                    park=self.failures.park,
                    pace=self.foreign_pace,
                    metrics=self.metrics,
                ) or stale
            if stale:
                # Graph is eventually consistent: poll (paced) until it shows our write.
                self._verify_due = min(self._verify_due, time.monotonic() + CONSISTENCY_POLL)
            self.role.fresh = True
            self.tracker.stale = True  # a full reconcile: the desired state is rebuilt against this read
        self._verified_once = True
        return True

    def _record_failure_all(self, error: EntraError) -> None:
        """A failure before any location was touched (the shared read): back off once."""
        throttled_until = self.failures.back_off(error)
        with self._lock:
            for state in all_states(self.shards):
                self.failures.note(state, error, throttled_until)
        self.log.error(
            "sync.failed", code=error.code, error=error.message, request_id=error.request_id
        )

    # ---------------------------------------------------------------- planning and writing

    def _next_write(self) -> tuple[AclConfig, LocationState, Shard] | None:
        """The most due shard (docs/design.md#writer) that differs from what Entra holds."""
        now = time.monotonic()
        with self._lock:
            if not self.role.writer or not self.role.fresh:
                return None  # only a writer that has read Entra in this term writes
            self.tracker.apply_queued()
            held: set[int] = set()  # repairs that wait for another writer (docs/design.md#foreign-writer)
            while True:
                shard = most_due(
                    shard
                    for name, desired in self.desired.items()
                    for shard in desired.shards
                    if not (self.shards[name][shard.index].parked_until > now) and id(shard) not in held
                )
                if shard is None:
                    return None
                acl = self.config.acls[shard.acl]
                state = self.shards[shard.acl][shard.index]
                state.desired = shard.ranges_to_write()
                if (
                    state.location is None
                    or state.applied != set(state.desired)
                    or state.location.is_trusted != acl.trusted
                ):
                    if state.repair_hold(state.desired, self.foreign_pace):
                        held.add(id(shard))
                        continue
                    return acl, state, shard
                shard.settle(shard.take(), written=True)  # Entra holds it already

    def write_pending(self, *, limit: int | None = None) -> int:
        """Write until Entra matches the store (or nothing can be written now)."""
        writes = 0
        while not self._stop.is_set() and (limit is None or writes < limit):
            self._absorb()
            if self._next_write() is None:
                return writes
            # Wait for the slot first, then decide: the write carries the newest state.
            if not self.pacer.wait_ready(timeout=self.backoff_cap + 1.0):
                return writes
            self.expire_due()
            self._absorb()
            target = self._next_write()
            if target is None:
                return writes
            acl, state, shard = target
            with self._lock:
                passed_over((s for d in self.desired.values() for s in d.shards), shard)
                ticket = shard.take()
            sent = self.location_writer.write(acl, state, ticket.ranges, fresh=ticket.fresh)
            self._settle(shard, state, ticket)
            if sent:
                writes += 1
        return writes

    def _settle(self, shard: Shard, state: LocationState, ticket: Ticket) -> None:
        with self._lock:
            written = state.last_error is None and state.applied == set(ticket.ranges)
            shard.settle(ticket, written=written)
            shard.blocked = state.parked_until > time.monotonic()

    def retry_parked(self) -> None:
        """Operator action (or a config reload): try parked locations again now."""
        with self._lock:
            for state in all_states(self.shards):
                state.parked_until = 0.0
            for desired in self.desired.values():
                for shard in desired.shards:
                    shard.blocked = False
        self._verify_due = 0.0
        self.notify()

    # ---------------------------------------------------------------- reporting

    def status(self) -> dict[str, Any]:
        """Per ACL and location (sync/status.py ``engine_status``)."""
        return engine_status(self)

    def plan(self) -> dict[str, Any]:
        """What a sync would write now: ranges to add and remove per location."""
        return engine_plan(self)
