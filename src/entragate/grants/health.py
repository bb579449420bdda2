"""Whether a grant store answers: up, or down since when (docs/design.md#outages).

Every store object keeps one: its writes (adds, revokes, expiries) and reads record
here whether they worked, and so does the writer's loop for the calls it makes. The
loop does not stop when the store fails: it goes on from the desired state it last
read and retries with capped backoff. This class keeps the outage's facts for status,
readiness and the metric, and logs once when an outage starts and once when it ends
(with its length), never once per retry or per refused grant.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from entragate.logs import get_logger, redact_text

#: seconds between store retries while it is down: doubling from the first, up to the cap
RETRY_FIRST = 0.25
RETRY_CAP = 2.0


class StoreHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: list[Callable[[bool], None]] = []
        self.down_since: float | None = None  # time.time() of the first failure
        self._down_monotonic = 0.0
        self.last_error: str | None = None
        self.failures = 0  # consecutive, in this outage
        self._write_failed = False
        self._retry_at = 0.0
        self.log = get_logger(component="store")

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """Call ``watcher(up)`` now and whenever the store goes down or comes back (a metric)."""
        self._watchers.append(watcher)
        watcher(self.available)

    @property
    def available(self) -> bool:
        return self.down_since is None

    def failed(self, operation: str, exc: BaseException, *, write: bool = False) -> None:
        """A store call failed: the first failure of an outage is logged, the rest counted.
        ``write``: it failed to change the store (a full disk still answers reads)."""
        error = redact_text(f"{type(exc).__name__}: {str(exc)[:300]}")
        with self._lock:
            self._write_failed = self._write_failed or write
            self.failures += 1
            self.last_error = error
            delay = min(RETRY_CAP, RETRY_FIRST * 2 ** min(self.failures - 1, 8))
            self._retry_at = time.monotonic() + delay
            if self.down_since is not None:
                return
            self.down_since = time.time()
            self._down_monotonic = time.monotonic()
        self._set_metric(False)
        self.log.error(
            "store.unavailable",
            operation=operation,
            error=error,
            note="grants are not accepted (503) until it is back; expiries still leave Entra on time",
        )

    def succeeded(self, *, write: bool = False) -> None:
        """A store call worked; a read does not end an outage that a write began."""
        if self.down_since is None or (self._write_failed and not write):
            return
        with self._lock:
            if self.down_since is None:
                return
            self._write_failed = False
            seconds = time.monotonic() - self._down_monotonic
            failures = self.failures
            self.down_since, self.failures, self.last_error, self._retry_at = None, 0, None, 0.0
        self._set_metric(True)
        self.log.info("store.recovered", outage_seconds=round(seconds, 1), failed_calls=failures)

    @contextlib.contextmanager
    def recording(self, operation: str, *, write: bool) -> Iterator[None]:
        """Record whether the store call inside worked (only unavailability counts: a
        refused grant or a closed store says nothing about the database)."""
        from .store import StoreUnavailable  # store.py creates a StoreHealth per store

        try:
            yield
        except StoreUnavailable as exc:
            self.failed(operation, exc, write=write)
            raise
        self.succeeded(write=write)

    def seconds_until_retry(self) -> float:
        """While down: how long the loop waits before asking the store again."""
        if self.down_since is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def describe(self) -> dict[str, object] | None:
        """The ``store_unavailable`` entry of status (None while the store answers)."""
        with self._lock:
            if self.down_since is None:
                return None
            return {
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since)),
                "seconds": round(time.monotonic() - self._down_monotonic, 1),
                "failed_calls": self.failures,
                "error": self.last_error,
            }

    def _set_metric(self, up: bool) -> None:
        for watcher in self._watchers:
            watcher(up)
