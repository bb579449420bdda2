"""Writer or standby: the engine's role among the agents sharing one store (docs/design.md#lease).

Without a lease the engine is the only writer (one agent, or ``sync --once``).
With one, it is the writer only while it holds the lease; otherwise it is a
standby that retries the lease about once a second and never calls Graph. Each
term as writer starts unread (``fresh`` is False until the engine has read
Entra); the lease is verified right before every Graph write, and on losing it
the engine stops writing at once and forgets what it knew of the remote state.

A writer that lost its lease because the lease's source stopped answering is *in
doubt* until it either wins the lease again or sees another agent hold it; while
in doubt it may send narrowing writes only (``narrowing()``, sync/narrowing.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from entragate.grants.lease import WriterLease
from entragate.logs import get_logger


class WriterLeaseLost(Exception):
    """The writer lease was lost: the write about to be sent must not happen."""


class WriterRole:
    """Whether this engine may write now, and the lease that decides it.

    ``writer`` and ``fresh`` change under the engine's ``lock`` (together with
    ``forget_remote``), so a pass that holds the lock never sees half a change.
    """

    def __init__(
        self,
        lease: WriterLease | None,
        *,
        lock: threading.RLock,
        forget_remote: Callable[[], None],
        on_acquired: Callable[[], None],
        metrics: Any = None,
        standby_retry: float = 1.0,
        lease_check_interval: float = 1.0,
    ) -> None:
        self.lease = lease
        self.standby_retry = standby_retry
        self.lease_check_interval = lease_check_interval
        self.writer = lease is None
        self.fresh = False  # Entra read since this term as writer began
        self.standby_reason: str | None = None
        self.in_doubt = False  # lost the lease, and nobody is known to hold it
        self._narrowing_thread: int | None = None
        self._lock = lock
        self._forget_remote = forget_remote
        self._on_acquired = on_acquired
        self._metrics = metrics
        self._lease_check_due = 0.0
        self._retry_lease_after = 0.0  # a writer that lost its session lets standbys go first
        self.log = get_logger(component="sync")
        self._set_writer_metric()

    def acquire(self) -> bool:
        """Become the writer if the lease is free; the new term starts unread."""
        if self.writer:
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
            if self.lease.reachable:
                self.in_doubt = False  # another agent holds the lease: it writes
            if reason != self.standby_reason:  # once per reason, not once a second
                self.standby_reason = reason
                self.log.info("writer.standby", reason=reason, lease=self.lease.describe())
            return False
        with self._lock:
            self._forget_remote()
            self.writer = True
            self.fresh = False
            self.in_doubt = False
            self._lease_check_due = time.monotonic() + self.lease_check_interval
        self.standby_reason = None
        self._set_writer_metric()
        if self.lease.fenced:
            self.log.warning("writer.fenced", reason=self.lease.fenced, lease=self.lease.describe())
        self.log.info("writer.acquired", lease=self.lease.describe())
        self._on_acquired()
        return True

    def check(self) -> bool:
        """Verify the lease now (a round trip to its source); on loss become a standby."""
        if self.lease is None:
            return True
        if not self.writer:
            return False
        try:
            held = self.lease.held()
        except Exception:
            held = False
        if not held:
            self._lose("the writer lease is no longer held (its session or term ended)")
        return held

    def check_due(self) -> bool:
        """Whether the lease should be verified now (even while idle)."""
        return self.lease is not None and time.monotonic() >= self._lease_check_due

    def check_if_due(self) -> bool:
        """Verify the lease when it is due, then schedule the next check; False when lost."""
        if not self.check_due():
            return True
        self._lease_check_due = time.monotonic() + self.lease_check_interval
        return self.check()

    def guard_write(self) -> None:
        """Graph calls this right before sending each write."""
        if self._narrowing_thread == threading.get_ident():
            return  # a removal of ended grants while in doubt: safe whoever writes
        if not self.check():
            raise WriterLeaseLost("this agent is no longer the writer")

    @contextlib.contextmanager
    def narrowing(self) -> Iterator[None]:
        """Let this thread's writes through the guard while in doubt: only for writes that
        remove ended grants and add nothing (docs/design.md#outages)."""
        if not self.in_doubt:
            raise WriterLeaseLost("another agent holds the writer lease: it removes what ended")
        self._narrowing_thread = threading.get_ident()
        try:
            yield
        finally:
            self._narrowing_thread = None

    def release(self) -> None:
        """Give the lease up (on stop): a standby takes over within about a second."""
        if self.lease is None:
            return
        with self._lock:
            was_writer, self.writer, self.fresh = self.writer, False, False
            self.in_doubt = False
        with contextlib.suppress(Exception):
            self.lease.release()
        if was_writer:
            self._set_writer_metric()
            self.log.info("writer.released", lease=self.lease.describe())

    def _lose(self, reason: str) -> None:
        assert self.lease is not None
        with self._lock:
            if not self.writer:
                return
            self.writer = False
            self.fresh = False
            # Lost while its source answers: another agent holds it (or will within a
            # second). Lost while it does not: nobody is known to write (docs/design.md#outages).
            self.in_doubt = not self.lease.reachable
            self._forget_remote()
        # A flapping connection should not win the lease straight back: standbys retry
        # every ``standby_retry``, so a healthy one takes over first.
        self._retry_lease_after = time.monotonic() + 3 * self.standby_retry
        with contextlib.suppress(Exception):
            self.lease.release()  # close the session: never keep a lock we no longer trust
        self._set_writer_metric()
        self.log.warning("writer.lost", reason=reason, lease=self.lease.describe())

    def _set_writer_metric(self) -> None:
        setter = getattr(self._metrics, "set_writer", None)
        if setter is not None:
            setter(self.writer)
