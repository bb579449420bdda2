"""The sync loop's restarts, and whether it counts as alive (docs/design.md#outages).

The engine's thread runs its loop under a supervisor: anything that escapes the
loop (a bug; store and Graph failures never do) is logged and the loop starts again.
A loop that keeps crashing is not alive: ``/healthz`` then fails, so that systemd or
the orchestrator restarts the whole agent.
"""

from __future__ import annotations

import threading
import time
from collections import deque

#: a loop restarted this often within CRASH_WINDOW seconds is not alive
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0


class Restarts:
    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=CRASH_LIMIT)

    def record(self) -> int:
        """One more restart; returns how many happened within the window."""
        self._times.append(time.monotonic())
        return self.recent()

    def recent(self) -> int:
        window_start = time.monotonic() - CRASH_WINDOW
        return sum(1 for t in self._times if t > window_start)

    def alive(self, thread: threading.Thread | None, stopping: bool) -> bool:
        """Whether the loop runs (or was stopped on purpose) and is not crash-looping."""
        if thread is None or stopping:
            return True
        return thread.is_alive() and self.recent() < CRASH_LIMIT
