"""hookline.policy: classification, Retry-After, the retry schedule and the one ack/retry/DLQ decision."""

from __future__ import annotations

import itertools
import random
from email.utils import formatdate
from typing import Any, get_args

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hookline.policy import (
    ERROR_CLASSES,
    MAX_RETRY_AFTER,
    Classification,
    DeadLetter,
    Delivered,
    Disable,
    GiveUp,
    Retry,
    WorkerErrorClass,
    classify,
    decide,
    next_delay,
    parse_retry_after,
    tier_for,
)
from hookline.settings import DEFAULT_RETRY_SCHEDULE, load_settings
from hookline.topics import all_topics, retry_topic

NOW = 1_700_000_000.0

schedules = st.lists(st.floats(min_value=0, max_value=200_000, allow_nan=False), min_size=0, max_size=12)
jitters = st.floats(min_value=0, max_value=0.99)
seeds = st.integers(min_value=0, max_value=2**32)


# --- classify -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "delivered", "disable", "retry_after"),
    [
        (200, None, True, False, False),
        (201, None, True, False, False),
        (204, None, True, False, False),
        (299, None, True, False, False),
        (301, "redirect", False, False, False),
        (302, "redirect", False, False, False),
        (304, "redirect", False, False, False),
        (308, "redirect", False, False, False),
        (400, "http_4xx", False, False, False),
        (401, "http_4xx", False, False, False),
        (404, "http_4xx", False, False, False),
        (410, "http_4xx", False, True, False),
        (413, "http_4xx", False, False, False),
        (429, "http_4xx", False, False, True),
        (500, "http_5xx", False, False, False),
        (502, "http_5xx", False, False, False),
        (503, "http_5xx", False, False, True),
        (504, "http_5xx", False, False, False),
        (599, "http_5xx", False, False, False),
        (101, "http_other", False, False, False),
        (600, "http_other", False, False, False),
        (999, "http_other", False, False, False),
    ],
)
def test_classify_status(
    status: int, error_class: str | None, delivered: bool, disable: bool, retry_after: bool
) -> None:
    c = classify(status)
    assert c == Classification(
        delivered=delivered,
        error_class=error_class,  # type: ignore[arg-type]
        status=status,
        disable=disable,
        honour_retry_after=retry_after,
    )
    assert c.outcome == ("delivered" if delivered else "failed")


@pytest.mark.parametrize("error_class", ["timeout", "connect", "tls", "dns", "blocked_address", "protocol"])
def test_classify_transport_errors(error_class: str) -> None:
    c = classify(None, error_class)
    assert c == Classification(delivered=False, error_class=error_class)  # type: ignore[arg-type]
    assert c.outcome == "failed"
    assert not c.disable and not c.honour_retry_after


def test_status_wins_over_error_class() -> None:
    # The receiver answered 2xx and then the body read timed out: it was delivered.
    assert classify(200, "timeout").delivered
    assert classify(503, "timeout").error_class == "http_5xx"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (None, None),
        (None, "nope"),
        (None, "http_5xx"),
        (None, "redirect"),
        (99, None),
        (1000, None),
        (-1, None),
    ],
)
def test_classify_refuses_impossible_input(status: int | None, error_class: str | None) -> None:
    with pytest.raises(ValueError):
        classify(status, error_class)


def test_error_classes_are_the_documented_labels() -> None:
    assert set(ERROR_CLASSES) >= {
        "timeout",
        "connect",
        "tls",
        "dns",
        "blocked_address",
        "http_4xx",
        "http_5xx",
        "redirect",
    }
    produced = {classify(s).error_class for s in range(100, 1000)} | {
        classify(None, e).error_class
        for e in ("timeout", "connect", "tls", "dns", "blocked_address", "protocol")
    }
    # classify reaches every class but the worker's own refusals, and nothing else.
    assert produced - {None} == set(ERROR_CLASSES) - set(get_args(WorkerErrorClass))
    assert set(get_args(WorkerErrorClass)) == {
        "secret",
        "invalid_task",
        "other",
        "rate_limited",
        "ordering_held",
    }
    assert len(set(ERROR_CLASSES)) == len(ERROR_CLASSES)


# --- Retry-After --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("86400", 86400.0),
        ("86401", MAX_RETRY_AFTER),
        ("999999999999999999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("0x10", None),
        ("12 apples", None),
        # HTTP-dates, NOW = 2023-11-14T22:13:20Z
        ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),  # IMF-fixdate
        ("Tuesday, 14-Nov-23 22:15:20 GMT", 120.0),  # RFC 850
        ("Tue Nov 14 22:15:20 2023", 120.0),  # asctime, no zone: GMT
        ("Tue, 14 Nov 2023 22:13:20 GMT", 0.0),  # now
        ("Tue, 14 Nov 2023 21:00:00 GMT", 0.0),  # in the past: no wait
        ("Wed, 15 Nov 2023 22:13:20 GMT", 86400.0),
        ("Fri, 01 Dec 2023 00:00:00 GMT", MAX_RETRY_AFTER),  # capped
        ("Tue, 32 Nov 2023 22:15:20 GMT", None),  # no such day
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.integers(min_value=0, max_value=200_000))
def test_retry_after_date_and_seconds_agree(seconds: int) -> None:
    date = formatdate(NOW + seconds, usegmt=True)
    expected = min(float(seconds), MAX_RETRY_AFTER)
    assert parse_retry_after(date, NOW) == expected
    assert parse_retry_after(str(seconds), NOW) == expected


def test_retry_after_cap_is_configurable() -> None:
    assert parse_retry_after("600", NOW, cap=60) == 60


# --- next_delay ---------------------------------------------------------------------------------------


def test_default_schedule_without_jitter() -> None:
    rng = random.Random(0)
    delays = [next_delay(n, DEFAULT_RETRY_SCHEDULE, 0.0, rng) for n in range(1, 12)]
    # Attempt 1 is immediate; after it: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then the end.
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400, None, None]


def test_next_delay_arguments() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError):
        next_delay(0, (1.0,), 0.0, rng)
    with pytest.raises(ValueError):
        next_delay(1, (1.0,), 1.0, rng)
    with pytest.raises(ValueError):
        next_delay(1, (1.0,), -0.1, rng)
    assert next_delay(1, (), 0.0, rng) is None


@given(schedule=schedules, jitter=jitters, seed=seeds, data=st.data())
def test_jitter_stays_within_bounds(schedule: list[float], jitter: float, seed: int, data: Any) -> None:
    assume(schedule)
    attempt = data.draw(st.integers(min_value=1, max_value=len(schedule)))
    delay = next_delay(attempt, schedule, jitter, random.Random(seed))
    base = schedule[attempt - 1]
    assert delay is not None
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_spreads_delays() -> None:
    rng = random.Random(42)
    delays = [next_delay(2, DEFAULT_RETRY_SCHEDULE, 0.2, rng) for _ in range(2000)]
    assert all(d is not None and 240 <= d <= 360 for d in delays)
    values = [d for d in delays if d is not None]
    assert min(values) < 250 and max(values) > 350  # it does spread, over the whole band
    assert len(set(values)) > 1900


def test_same_seed_same_delays() -> None:
    a = [next_delay(n, DEFAULT_RETRY_SCHEDULE, 0.2, random.Random(7)) for n in range(1, 10)]
    b = [next_delay(n, DEFAULT_RETRY_SCHEDULE, 0.2, random.Random(7)) for n in range(1, 10)]
    assert a == b


@given(schedule=schedules, seed=seeds)
def test_sorted_schedule_gives_non_decreasing_delays_without_jitter(schedule: list[float], seed: int) -> None:
    schedule.sort()
    rng = random.Random(seed)
    delays = [next_delay(n, schedule, 0.0, rng) for n in range(1, len(schedule) + 1)]
    assert delays == schedule
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(delays))


@given(
    schedule=schedules,
    jitter=jitters,
    seed=seeds,
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=MAX_RETRY_AFTER)),
)
def test_retry_after_is_a_floor(
    schedule: list[float], jitter: float, seed: int, retry_after: float | None
) -> None:
    for attempt in range(1, len(schedule) + 2):
        delay = next_delay(attempt, schedule, jitter, random.Random(seed), retry_after)
        if attempt > len(schedule):
            assert delay is None  # Retry-After never extends the schedule
        else:
            assert delay is not None
            if retry_after is not None:
                assert delay >= retry_after


# --- tier_for -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (0, 5),
        (4.9, 5),
        (5, 5),
        (6, 5),
        (299.9, 5),
        (300, 300),
        (359, 300),
        (1439, 300),
        (1800, 1800),
        (86400, 86400),
        (100_000, 86400),
    ],
)
def test_tier_for_default_tiers(delay: float, expected: float) -> None:
    assert tier_for(delay, DEFAULT_RETRY_SCHEDULE) == expected


@given(
    delay=st.floats(min_value=0, max_value=10**6),
    tiers=st.lists(st.floats(0, 10**6), min_size=1, max_size=10),
)
def test_tier_for_properties(delay: float, tiers: list[float]) -> None:
    tier = tier_for(delay, tiers)
    assert tier in tiers
    if tier <= delay:
        assert not any(tier < t <= delay for t in tiers)  # the largest that fits
    else:
        assert tier == min(tiers)  # nothing fits: the shortest wait there is


def test_tier_for_needs_tiers() -> None:
    with pytest.raises(ValueError):
        tier_for(5, [])


# --- decide -------------------------------------------------------------------------------------------


def test_delivered_is_done_whatever_the_attempt() -> None:
    for attempt in (1, 5, 10, 50):
        d = decide(classify(200), attempt=attempt, rng=random.Random(0))
        assert d == Delivered()
        assert d.final


def test_first_failure_retries_in_five_seconds_tier() -> None:
    d = decide(classify(500), attempt=1, rng=random.Random(0))
    assert isinstance(d, Retry)
    assert 4 <= d.delay <= 6
    assert d.tier == 5
    assert d.attempt == 2
    assert d.topic == "webhook-retry-5s" == retry_topic(5)
    assert not d.final


def test_gone_disables_even_on_the_last_attempt_or_a_test_send() -> None:
    for attempt in (1, 10, 11):
        assert decide(classify(410), attempt=attempt, rng=random.Random(0)) == Disable(reason="http_410")
    assert decide(classify(410), attempt=1, rng=random.Random(0), retries=False) == Disable(reason="http_410")


def test_one_shot_sends_give_up() -> None:
    for c in (classify(500), classify(None, "timeout"), classify(429)):
        d = decide(c, attempt=1, rng=random.Random(0), retries=False)
        assert d == GiveUp(reason="single_attempt")
        assert d.final
    assert decide(classify(204), attempt=1, rng=random.Random(0), retries=False) == Delivered()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_honoured_for_429_and_503(status: int) -> None:
    d = decide(classify(status), attempt=1, rng=random.Random(0), retry_after=1000.0)
    assert isinstance(d, Retry)
    assert d.delay == 1000.0
    assert d.tier == 300  # the largest tier that fits; the task's due time does the rest


@pytest.mark.parametrize("status", [500, 502, 404])
def test_retry_after_ignored_for_other_statuses(status: int) -> None:
    d = decide(classify(status), attempt=1, rng=random.Random(0), retry_after=1000.0)
    assert isinstance(d, Retry)
    assert d.delay <= 6


def test_retry_after_does_not_shorten_the_schedule() -> None:
    d = decide(classify(503), attempt=3, rng=random.Random(0), retry_after=1.0, jitter=0.0)
    assert isinstance(d, Retry) and d.delay == 1800


def test_dead_letter_after_the_last_attempt() -> None:
    last = len(DEFAULT_RETRY_SCHEDULE) + 1
    d = decide(classify(None, "connect"), attempt=last, rng=random.Random(0))
    assert d == DeadLetter(reason="retries_exhausted", attempts=last)
    assert d.final


def test_decide_arguments() -> None:
    with pytest.raises(ValueError):
        decide(classify(500), attempt=0, rng=random.Random(0))


@given(
    schedule=schedules,
    jitter=jitters,
    seed=seeds,
    failure=st.sampled_from([500, 503, 429, 404, 302, None]),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=MAX_RETRY_AFTER)),
)
def test_failing_receiver_gets_exactly_schedule_plus_one_attempts(
    schedule: list[float], jitter: float, seed: int, failure: int | None, retry_after: float | None
) -> None:
    rng = random.Random(seed)
    c = classify(failure, "timeout" if failure is None else None)
    tiers = sorted(set(schedule)) or [1.0]
    attempt, due, retries = 1, 0.0, 0
    while True:
        d = decide(
            c,
            attempt=attempt,
            rng=rng,
            schedule=schedule,
            jitter=jitter,
            retry_after=retry_after,
            tiers=tiers,
        )
        if isinstance(d, DeadLetter):
            break
        assert isinstance(d, Retry)
        assert d.attempt == attempt + 1
        assert d.tier in tiers
        assert d.delay >= 0
        due += d.delay  # due times never go backwards
        retries += 1
        attempt = d.attempt
        assert attempt <= len(schedule) + 1
    assert attempt == len(schedule) + 1
    assert retries == len(schedule)
    assert d.attempts == attempt
    assert due >= 0


def test_default_tiers_are_topics_that_exist() -> None:
    settings = load_settings({})
    created = {spec.name for spec in all_topics(settings)}
    rng = random.Random(3)
    for attempt in range(1, len(settings.retry_schedule) + 1):
        for status in (500, 429, 503):
            d = decide(
                classify(status),
                attempt=attempt,
                rng=rng,
                schedule=settings.retry_schedule,
                jitter=settings.retry_jitter,
                retry_after=MAX_RETRY_AFTER if status != 500 else None,
            )
            assert isinstance(d, Retry)
            assert d.topic in created


def test_compressed_test_schedule() -> None:
    schedule = (0.5, 1.0, 1.5)
    rng = random.Random(1)
    kinds = [
        type(decide(classify(500), attempt=n, rng=rng, schedule=schedule, jitter=0.2)) for n in range(1, 5)
    ]
    assert kinds == [Retry, Retry, Retry, DeadLetter]
    d = decide(classify(500), attempt=2, rng=rng, schedule=schedule, jitter=0.0)
    assert isinstance(d, Retry) and d.delay == 1.0 and d.tier == 1.0 and d.topic == "webhook-retry-1s"
