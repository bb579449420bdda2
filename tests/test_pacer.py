"""Pacing and backoff: spacing, penalties, shutdown, jitter bounds."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entragate.sync.pacer import Pacer, PacerStopped, full_jitter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock=clock)
    pacer.acquire()
    assert pacer.seconds_until_ready() == pytest.approx(0.5)
    clock.now += 0.5
    assert pacer.seconds_until_ready() == 0
    pacer.acquire()
    assert pacer.seconds_until_ready() == pytest.approx(0.5)


def test_idle_time_earns_no_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock)
    clock.now += 3600
    pacer.acquire()
    assert pacer.seconds_until_ready() == pytest.approx(1.0)


def test_penalty_pushes_the_next_slot_out() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock)
    deadline = pacer.penalize(8.0)
    assert deadline == pytest.approx(1008.0)
    assert pacer.seconds_until_ready() == pytest.approx(8.0)
    assert pacer.wait_ready(timeout=0.0) is False
    # a shorter penalty never shortens a longer one
    pacer.penalize(1.0)
    assert pacer.seconds_until_ready() == pytest.approx(8.0)


def test_stop_releases_a_waiting_request() -> None:
    pacer = Pacer(1.0)
    pacer.penalize(3600)
    outcome: list[str] = []

    def waiter() -> None:
        try:
            pacer.acquire()
            outcome.append("acquired")
        except PacerStopped:
            outcome.append("stopped")

    thread = threading.Thread(target=waiter)
    thread.start()
    pacer.stop()
    thread.join(timeout=10)
    assert outcome == ["stopped"]
    assert pacer.wait_ready() is False


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pacer(0)


@given(st.integers(min_value=0, max_value=40), st.floats(min_value=0.01, max_value=120))
def test_full_jitter_stays_within_bounds(attempt: int, cap: float) -> None:
    delay = full_jitter(attempt, cap=cap)
    assert 0.0 <= delay <= min(cap, 2.0**attempt)


def test_a_429_we_did_not_cause_halves_the_pace_and_successes_restore_it() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock)
    pacer.acquire()
    clock.now += 5.0  # we left the budget unused for seconds: someone else spent it
    pacer.acquire()
    assert pacer.throttled() is True
    assert pacer.pace == pytest.approx(0.5)
    assert pacer.interval == pytest.approx(2.0)
    for _ in range(100):
        pacer.succeeded()
    assert pacer.pace == pytest.approx(1.0)  # never above rate


def test_a_429_after_our_own_full_pace_only_backs_off() -> None:
    clock = FakeClock()
    pacer = Pacer(1.0, clock=clock)
    pacer.acquire()
    clock.now += 1.0
    pacer.acquire()
    assert pacer.throttled() is False
    assert pacer.pace == pytest.approx(1.0)


def test_the_pace_has_a_floor() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock=clock)
    for _ in range(20):
        clock.now += 60.0
        pacer.acquire()
        pacer.throttled()
    assert pacer.pace == pytest.approx(2.0 * Pacer.FLOOR)
