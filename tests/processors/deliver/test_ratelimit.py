"""The rate limit per webhook, pure (processors/deliver/ratelimit.py), driven by a fake clock; and its
asyncio waiting line on a real event loop."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from processors.deliver.ratelimit import Go, Later, Queue, RateLimits, TokenBucket
from tests.processors.deliver.deliver_harness import max_in_window


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def greedy(bucket: TokenBucket, start: float, seconds: float, step: float = 0.0005) -> list[float]:
    """Take a token whenever one is there, polling every ``step`` seconds."""
    sent, t = [], start
    while t < start + seconds:
        if bucket.take(t) == 0:
            sent.append(t)
        t += step
    return sent


def test_a_bucket_of_one_paces_evenly_and_never_lets_more_than_rate_plus_one_through_a_second() -> None:
    bucket = TokenBucket(50, 0.0)
    sent = greedy(bucket, 0.0, 10.0)
    assert 499 <= len(sent) <= 501
    assert max_in_window(sent) <= 51
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.02 - 1e-9


def test_a_burst_of_a_seconds_worth_would_let_twice_the_rate_through_a_sliding_second() -> None:
    """Why the worker uses a burst of one (README): a full bucket of 50 plus 50 new tokens."""
    assert max_in_window(greedy(TokenBucket(50, 0.0, burst=50), 0.0, 3.0)) >= 99


def test_a_late_taker_does_not_catch_up() -> None:
    bucket = TokenBucket(10, 0.0)
    assert bucket.take(0.0) == 0
    assert bucket.take(0.05) == pytest.approx(0.05)  # not yet: nothing taken
    assert bucket.take(0.7) == 0  # late: one token, not six
    assert bucket.take(0.7) == pytest.approx(0.1)
    assert bucket.take(0.75) == pytest.approx(0.05)
    assert bucket.take(0.8) == 0


def test_a_pause_holds_every_token_until_it_ends_then_paces_again() -> None:
    bucket = TokenBucket(10, 0.0)
    assert bucket.take(0.0) == 0
    bucket.pause(5.0)
    assert bucket.wait(1.0) == pytest.approx(4.0)
    assert bucket.take(4.99) == pytest.approx(0.01)
    bucket.pause(3.0)  # an earlier end does not shorten it
    assert bucket.take(5.0) == 0  # one at the end of the pause, then one per interval: no burst
    assert bucket.take(5.0) == pytest.approx(0.1)
    assert bucket.take(5.1) == 0
    unlimited = TokenBucket(None, 0.0)
    assert [unlimited.take(0.0) for _ in range(3)] == [0, 0, 0]
    unlimited.pause(2.0)
    assert unlimited.take(1.5) == pytest.approx(0.5)
    assert unlimited.take(2.0) == 0 and unlimited.take(2.0) == 0


def test_a_rate_change_applies_from_now() -> None:
    bucket = TokenBucket(1, 0.0)
    assert bucket.take(0.0) == 0
    assert bucket.take(0.5) == pytest.approx(0.5)
    bucket.set_rate(10, 0.5)  # half a token accrued at the old rate; the rest at the new one
    assert bucket.take(0.5) == pytest.approx(0.05)
    assert bucket.take(0.55) == 0
    bucket.set_rate(None, 0.55)
    assert bucket.take(0.55) == 0 and bucket.take(0.55) == 0
    with pytest.raises(ValueError):
        TokenBucket(0, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0.0, burst=0.5)


def test_admit_sends_queues_in_memory_up_to_the_share_then_puts_back_spread_out() -> None:
    clock = Clock()
    rates = RateLimits(share=4, max_wait=30.0, clock=clock)
    assert rates.admit("free", None, busy=10_000) == Go()  # no limit, no pause: nothing kept
    assert rates.throttled() == 0
    assert rates.admit("w", 10, busy=0) == Go()
    assert rates.admit("w", 10, busy=0) == Queue(pytest.approx(0.1))
    later = rates.admit("w", 10, busy=4)  # the webhook holds its share: back to a retry tier
    assert isinstance(later, Later)
    assert later.reason == "rate limit of 10 requests per second: not its turn yet; no request made"
    dues = [later.due_in] + [rates.admit("w", 10, busy=4).due_in for _ in range(3)]  # type: ignore[union-attr]
    # Each one an interval after the one before, back early by half what memory may hold (0.2 s).
    assert dues == pytest.approx([0.0, 0.0, 0.1, 0.2])
    clock.now += 0.1
    assert rates.admit("w", 10, busy=0) == Go()


def test_a_turn_further_than_max_wait_waits_in_a_retry_tier() -> None:
    clock = Clock()
    rates = RateLimits(share=1000, max_wait=3.0, clock=clock)
    assert rates.admit("w", 1, busy=0) == Go()
    assert rates.admit("w", 1, busy=0) == Queue(pytest.approx(1.0))
    later = rates.admit("w", 1, busy=1)  # waiters are counted by the line itself too
    assert isinstance(later, Queue)  # no waiter registered yet: its turn is one interval away
    rates.pause("w", 1, 10.0)
    held = rates.admit("w", 1, busy=0)
    assert isinstance(held, Later) and held.due_in == pytest.approx(10.0 - 1.5)
    assert held.reason.startswith("rate limit: the receiver asked to wait (Retry-After) 10s more")
    assert rates.throttled() == 1


def test_a_retry_after_pauses_a_webhook_without_a_limit_too_and_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    rates = RateLimits(share=10, max_wait=30.0, clock=clock)
    rates.pause("free", None, 2.0)
    assert rates.admit("free", None, busy=0) == Queue(pytest.approx(2.0))
    assert rates.throttled() == 1
    clock.now += 2.0
    assert rates.admit("free", None, busy=0) == Go()
    assert rates.throttled() == 0
    rates.pause("other", 5, 0.0)  # no wait asked: nothing kept
    clock.now += 11.0
    rates.pause("new", 5, 1.0)  # a new bucket sweeps the idle ones
    assert rates.admit("free", None, busy=0) == Go() and rates.waiting("free") == 0
    assert set(rates._lanes) == {"new"}


def test_waiters_go_first_come_first_served_one_interval_apart() -> None:
    async def main() -> list[tuple[int, float]]:
        rates = RateLimits(share=100, max_wait=30.0)
        gone: list[tuple[int, float]] = []

        async def task(i: int) -> None:
            verdict = rates.admit("w", 100, busy=rates.waiting("w"))
            if isinstance(verdict, Queue):
                await rates.acquire("w")
            gone.append((i, time.monotonic()))

        tasks = [asyncio.create_task(task(i)) for i in range(12)]
        await asyncio.sleep(0.01)
        tasks[5].cancel()  # a task that gives up leaves the line without holding it up
        await asyncio.gather(*tasks, return_exceptions=True)
        return gone

    gone = asyncio.run(main())
    assert [i for i, _ in gone] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(gone)]
    assert min(gaps) >= 0.01 - 0.001  # 100 per second: 10 ms apart (timer granularity aside)


def test_release_all_lets_every_waiter_go_at_once() -> None:
    async def main() -> int:
        rates = RateLimits(share=100, max_wait=30.0)
        assert rates.admit("w", 1, busy=0) == Go()
        waiting = []
        for _ in range(5):
            assert isinstance(rates.admit("w", 1, busy=rates.waiting("w")), Queue)
            waiting.append(asyncio.create_task(rates.acquire("w")))
        await asyncio.sleep(0)
        assert rates.waiting("w") == 5 and rates.throttled() == 1
        rates.release_all()
        await asyncio.wait_for(asyncio.gather(*waiting), 1.0)  # not 5 s
        return rates.waiting("w")

    assert asyncio.run(main()) == 0


def test_starts_that_bunch_after_their_tokens_are_held_to_rate_plus_one_in_any_second() -> None:
    """Tokens taken evenly, starts bunched (tasks that waited for a slot, a worker off the CPU):
    RateLimits.start spaces the starts themselves."""
    clock = Clock(0.0)
    limits = RateLimits(share=1000, max_wait=60.0, clock=clock)
    starts: list[float] = []
    holding = 0  # tasks with a token, still waiting for a slot
    ready = 0  # tasks that got their slot and ask start() every millisecond
    t = 0.0
    while t < 6.0:
        clock.now = t
        if limits.admit("wh", 50, holding + ready) == Go():
            holding += 1
        if round(t * 1000) % 500 == 0:  # slots free up every 0.5 s, for everyone holding a token
            ready, holding = ready + holding, 0
        while ready and limits.start("wh") == 0:
            starts.append(t)
            ready -= 1
        t += 0.001
    assert len(starts) >= 250
    assert max_in_window(starts) <= 51
    assert limits.start("other") == 0.0  # no limit, nothing kept


def test_start_waits_for_the_request_rate_plus_one_before_to_leave_the_window() -> None:
    clock = Clock(0.0)
    limits = RateLimits(share=1000, max_wait=60.0, clock=clock)
    limits.admit("wh", 2, 0)  # a lane with a limit of 2/s
    for _ in range(3):
        assert limits.start("wh") == 0.0
    assert limits.start("wh") == pytest.approx(1.002)
    clock.now = 0.5
    assert limits.start("wh") == pytest.approx(0.502)
    clock.now = 1.0021
    assert limits.start("wh") == 0.0
    limits._sweep(1.5)  # a start within the last second keeps the lane (and its window)
    assert "wh" in limits._lanes
    limits._sweep(2.1)
    assert "wh" not in limits._lanes
