"""Pacing and backoff for one tenant's Conditional Access budget.

Microsoft allows about one Conditional Access request per second per tenant,
shared by every app and by reads as well as writes, and its 429s carry no
Retry-After. One pacer per tenant spaces every Graph request we make; a 429 or a
transient failure pushes the next slot out by an exponential, fully jittered delay.

Other tools spend the same budget. A 429 that our own spacing did not cause (the
request before it was well over one interval earlier: we left budget unused) means
someone else is spending it, so the pace drops by half; every success adds a
twentieth of ``rate`` back, never above ``rate`` (AIMD, as TCP does with its window).
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
    """At most ``pace`` (≤ ``rate``) requests per second, and nothing before ``penalize``'s deadline."""

    DECREASE = 0.5  # multiplicative decrease on a 429 we did not cause
    INCREASE = 0.05  # additive increase per success, as a fraction of rate
    FLOOR = 1 / 16  # the pace never drops below rate * FLOOR
    SPARE = 1.5  # a gap this many intervals long before a 429: we left budget unused

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.pace = rate
        self._clock = clock
        self._next_slot = clock()
        self._cond = threading.Condition()
        self._stopped = False
        self._sent: tuple[float | None, float | None] = (None, None)  # (previous, last) request
        self.lowered = 0  # times others' use of the budget made us slow down

    @property
    def interval(self) -> float:
        """Seconds between requests at the current pace."""
        return 1.0 / self.pace

    def throttled(self) -> bool:
        """The last request got a 429: slow down when we had left budget unused; True if so."""
        with self._cond:
            previous, last = self._sent
            if last is None or (previous is not None and last - previous < self.SPARE / self.rate):
                return False  # we were using the whole budget ourselves: only back off
            self.pace = max(self.rate * self.FLOOR, self.pace * self.DECREASE)
            self.lowered += 1
            return True

    def succeeded(self) -> None:
        """A request went through: recover pace additively, never above ``rate``."""
        with self._cond:
            self.pace = min(self.rate, self.pace + self.rate * self.INCREASE)

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
                    self._sent = (self._sent[1], now)
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
