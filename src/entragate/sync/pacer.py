"""Pacing and backoff for one tenant's Conditional Access budget.

Microsoft allows about one Conditional Access request per second per tenant,
shared by every app and by reads as well as writes, and its 429s carry no
Retry-After. One pacer per tenant spaces every Graph request we make; a 429 or a
transient failure pushes the next slot out by an exponential, fully jittered delay.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def full_jitter(attempt: int, *, base: float = 1.0, cap: float = 60.0, floor: float = 0.0) -> float:
    """AWS's "full jitter": uniform in [floor, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2 ** max(0, attempt)))
    return random.uniform(min(floor, ceiling), ceiling)


class Pacer:
    """At most ``rate`` requests per second, and nothing before ``penalize``'s deadline."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = 1.0 / rate
        self._clock = clock
        self._next_slot = clock()
        self._cond = threading.Condition()
        self._stopped = False

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def seconds_until_ready(self) -> float:
        with self._cond:
            return max(0.0, self._next_slot - self._clock())

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a request may be sent, without taking the slot.

        The writer waits here and only then computes what to write, so the write
        carries everything granted while it waited.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._stopped:
                now = self._clock()
                wait = self._next_slot - now
                if wait <= 0:
                    return True
                if deadline is not None:
                    if now >= deadline:
                        return False
                    wait = min(wait, deadline - now)
                self._cond.wait(wait)
            return False

    def acquire(self) -> None:
        """Take the next slot, waiting for it. Raises ``PacerStopped`` on shutdown."""
        with self._cond:
            while True:
                if self._stopped:
                    raise PacerStopped()
                now = self._clock()
                wait = self._next_slot - now
                if wait <= 0:
                    # No credit for idle time: Graph's budget is a rate, not a bucket.
                    self._next_slot = now + self.interval
                    return
                self._cond.wait(wait)

    def penalize(self, seconds: float) -> float:
        """No request before now + seconds; returns the monotonic deadline."""
        with self._cond:
            self._next_slot = max(self._next_slot, self._clock() + seconds)
            self._cond.notify_all()
            return self._next_slot


class PacerStopped(Exception):
    """The agent is shutting down while a request waited for its slot."""
