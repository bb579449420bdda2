"""Draining the API before the agent stops (docs/design.md#shutdown).

Once :meth:`Drain.begin` is called, every new request (``/healthz`` aside) is answered
503 ``shutting_down`` with ``Connection: close`` while the listener stays open, so a
client on a keep-alive connection reads an answer instead of a reset; requests already
in flight go on and are answered as usual (a grant 201 once durably stored).
:meth:`Drain.wait` returns when none is in flight and none arrived for a moment.
"""

from __future__ import annotations

import threading
import time

from .errors import ApiError

#: how long no request may have arrived before the listener closes
QUIET = 0.1
#: the longest the requests in flight are waited for
LIMIT = 5.0


def shutting_down(
    message: str = "the agent is shutting down; nothing was changed by this request, retry shortly",
) -> ApiError:
    return ApiError(503, "shutting_down", message, {"Retry-After": "1", "Connection": "close"})


class Drain:
    """Requests in flight, and whether new ones are still taken. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._draining = False
        self._in_flight = 0
        self._last_arrival = 0.0

    @property
    def draining(self) -> bool:
        return self._draining

    def begin(self) -> None:
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def enter(self) -> bool:
        """A request arrives: True when it is taken (then :meth:`leave` when answered)."""
        with self._cond:
            self._last_arrival = time.monotonic()
            if self._draining:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def wait(self, quiet: float = QUIET, limit: float = LIMIT) -> bool:
        """Until nothing is in flight and nothing arrived for ``quiet`` seconds, at most
        ``limit`` seconds; False when requests were still in flight at the limit."""
        deadline = time.monotonic() + limit
        with self._cond:
            while True:
                now = time.monotonic()
                calm_at = self._last_arrival + quiet
                if self._in_flight == 0 and now >= calm_at:
                    return True
                if now >= deadline:
                    return self._in_flight == 0
                pause = deadline - now if self._in_flight else min(calm_at, deadline) - now
                self._cond.wait(max(pause, 0.001))
