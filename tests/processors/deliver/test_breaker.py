"""The circuit breaker alone, on an injected clock (processors/deliver/breaker.py)."""

from __future__ import annotations

import pytest

from processors.deliver.breaker import Admit, Breakers, Defer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(b: Breakers, key: str = "w", error: str = "connect", probe: bool = False) -> str | None:
    return b.record(key, delivered=False, error_class=error, probe=probe)


def ok(b: Breakers, key: str = "w", probe: bool = False) -> str | None:
    return b.record(key, delivered=True, error_class=None, probe=probe)


def test_opens_after_n_consecutive_failures_and_defers_until_the_probe_interval() -> None:
    clock = Clock()
    b = Breakers(3, 10.0, clock=clock)
    assert [fail(b), fail(b)] == [None, None]
    assert b.admit("w") == Admit()
    assert fail(b, error="timeout") == "opened"
    assert b.is_open("w") and b.open_count == 1
    verdict = b.admit("w")
    assert isinstance(verdict, Defer) and verdict.next_probe_in == pytest.approx(10.0)
    assert "3 consecutive" in verdict.reason
    clock.now += 9.9
    assert isinstance(b.admit("w"), Defer)
    clock.now += 0.1
    assert b.admit("w") == Admit(probe=True)
    assert isinstance(b.admit("w"), Defer), "one probe per interval"
    assert b.admit("other") == Admit(), "other webhooks are untouched"


def test_a_failed_probe_waits_a_full_interval_and_a_success_closes() -> None:
    clock = Clock()
    b = Breakers(1, 5.0, clock=clock)
    assert fail(b) == "opened"
    clock.now += 5
    assert b.admit("w") == Admit(probe=True)
    clock.now += 3  # the probe took 3 s and failed: the next one only 5 s after that
    assert fail(b, probe=True) is None
    clock.now += 4
    assert isinstance(b.admit("w"), Defer)
    clock.now += 1
    assert b.admit("w") == Admit(probe=True)
    assert ok(b, probe=True) == "closed"
    assert not b.is_open("w") and b.admit("w") == Admit()


def test_a_probe_in_flight_blocks_the_next_until_it_reports_or_times_out() -> None:
    clock = Clock()
    b = Breakers(1, 1.0, probe_timeout=30.0, clock=clock)
    fail(b)
    clock.now += 1
    assert b.admit("w") == Admit(probe=True)
    clock.now += 5  # hanging: no second probe while the first is out
    assert isinstance(b.admit("w"), Defer)
    clock.now += 25  # lost probe: forgotten after probe_timeout
    assert b.admit("w") == Admit(probe=True)
    b.release("w")  # it did not happen: the next may go at once
    assert b.admit("w") == Admit(probe=True)


def test_only_connection_errors_timeouts_and_5xx_count_and_a_success_resets() -> None:
    b = Breakers(2, 1.0, clock=Clock())
    assert fail(b, error="http_4xx") is None
    assert fail(b, error="redirect") is None
    assert fail(b) is None
    assert ok(b) is None  # the streak ends: a closed breaker reports no transition
    assert fail(b, error="http_5xx") is None
    assert fail(b, error="http_5xx") == "opened"
    assert fail(b, error="http_4xx") is None and b.is_open("w"), "a 4xx proves nothing"


def test_memory_is_bounded_closed_streaks_go_first() -> None:
    b = Breakers(2, 1.0, size=3, clock=Clock())
    fail(b, "a")
    fail(b, "a")  # open
    fail(b, "b")
    fail(b, "c")
    fail(b, "d")  # full: "b" (a streak, not open) is forgotten, the open "a" stays
    assert b.is_open("a")
    assert fail(b, "b") is None and fail(b, "b") == "opened"


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Breakers(0, 1.0)
    with pytest.raises(ValueError):
        Breakers(1, 0.0)
