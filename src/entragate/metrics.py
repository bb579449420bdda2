"""Prometheus metrics of one agent, on a registry of its own.

Each :class:`Metrics` owns a ``CollectorRegistry`` (never the process-global one),
so tests and embedded agents can create as many as they like.
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

# From a sub-second PATCH after a quiet period to minutes behind a throttled tenant.
_LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class Metrics:
    CONTENT_TYPE = CONTENT_TYPE

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._error_codes: dict[tuple[str, str], str] = {}
        self.grants_active = Gauge(
            "entragate_grants_active",
            "Active grants per ACL",
            ["acl"],
            registry=self.registry,
        )
        self.location_ranges = Gauge(
            "entragate_location_ranges",
            "IP ranges last written to each named location (placeholder excluded)",
            ["acl", "location"],
            registry=self.registry,
        )
        self.graph_requests = Counter(
            "entragate_graph_requests",
            "Microsoft Graph requests by method and HTTP status",
            ["method", "status"],
            registry=self.registry,
        )
        self.throttled_count = Counter(
            "entragate_throttled",
            "Graph answers 429 (throttled)",
            registry=self.registry,
        )
        self.location_last_error = Gauge(
            "entragate_location_last_error",
            "1 for the error code a named location currently fails with",
            ["acl", "location", "code"],
            registry=self.registry,
        )
        self.writer = Gauge(
            "entragate_writer",
            "1 while this agent is its tenant's writer, 0 while it is a standby",
            registry=self.registry,
        )
        self.pace = Gauge(
            "entragate_pace_requests_per_second",
            "Graph requests per second the writer allows itself now (at most agent.rate; "
            "lower while other tools spend the tenant's budget)",
            registry=self.registry,
        )
        self.store_up = Gauge(
            "entragate_store_up",
            "1 while the grant store answers the writer, 0 during an outage",
            registry=self.registry,
        )
        self.grant_applied_lag = Histogram(
            "entragate_grant_applied_lag_seconds",
            "Seconds from a grant being stored to its range being written to Entra",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )

    # ------------------------------------------------------------------ updates

    def graph_response(self, method: str, status: int | str) -> None:
        self.graph_requests.labels(method=method.upper(), status=str(status)).inc()

    def set_writer(self, writer: bool) -> None:
        self.writer.set(1 if writer else 0)

    def set_store_up(self, up: bool) -> None:
        self.store_up.set(1 if up else 0)

    def throttled(self) -> None:
        self.throttled_count.inc()

    def set_pace(self, pace: float) -> None:
        self.pace.set(pace)

    def set_grants(self, acl: str, n: int) -> None:
        self.grants_active.labels(acl=acl).set(n)

    def set_ranges(self, acl: str, location: str, n: int) -> None:
        self.location_ranges.labels(acl=acl, location=location).set(n)

    def set_error(self, acl: str, location: str, code: str | None) -> None:
        """Make ``code`` the location's current error (None: no error); the old series goes."""
        key = (acl, location)
        with self._lock:
            previous = self._error_codes.pop(key, None)
            if previous is not None and previous != code:
                with contextlib.suppress(KeyError):
                    self.location_last_error.remove(acl, location, previous)
            if code is not None:
                self._error_codes[key] = code
                self.location_last_error.labels(acl=acl, location=location, code=code).set(1)

    def observe_lag(self, seconds: float) -> None:
        self.grant_applied_lag.observe(max(0.0, float(seconds)))

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        return generate_latest(self.registry)
