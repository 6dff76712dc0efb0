"""Rate limits per webhook in the delivery worker: a token bucket each, and the tasks waiting for it.

A webhook's ``rateLimit`` (requests per second) is enforced by the worker that owns its partition
(all of a webhook's tasks share one, docs/architecture.md §3), with a :class:`TokenBucket` of
``rate`` tokens per second holding at most ``burst`` (1 by default: requests go out evenly spaced,
one every 1/rate s, so no window of one second ever sees more than rate + 1 of them; a burst of a
second's worth would let 2 x rate through a sliding second). A bucket that was late hands out the
next token a full interval after the late one, never two at once to catch up.

A ``Retry-After`` answer (429, 503) *pauses* the webhook's bucket until then (:meth:`RateLimits.pause`),
whether or not it has a rate: the receiver asked for that much quiet, so no task of the webhook
starts before it ends (the answered task itself follows its retry schedule, as before).

:meth:`RateLimits.admit` decides for one task: :class:`Go` (a token was taken), :class:`Queue` (wait in
memory for a token, :meth:`RateLimits.acquire`, first come first served), or :class:`Later` when the
webhook already holds its share of the worker's buffer (``busy``, counted by the caller) or its turn
is more than ``max_wait`` seconds away: the caller then puts the task back, unattempted, into a retry
tier due about when its turn comes (each such task one interval after the previous one, so that they
come back spread out as the bucket can take them, not all at once).

:meth:`RateLimits.start` is the last check, right before the request starts: the token was taken
before the task waited for a concurrency slot, and tasks that waited there (or a worker off the CPU for
a moment) would start in a bunch; it holds a request back until the one ``rate + 1`` before it started
over a second ago, so the start times themselves never exceed rate + 1 in any second.

Everything but :meth:`RateLimits.acquire` (asyncio timers) is pure and reads time from ``clock``.
State is per worker and in memory: after a restart or a rebalance the new owner starts with a fresh
bucket (and no pause). Webhooks without a limit and without a pause cost nothing here; idle buckets
are forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Go", "Later", "Queue", "RateLimits", "TokenBucket", "Verdict"]

#: A token short by less than this counts as there (float rounding of rate x elapsed time).
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second (None: no limit), at most ``burst`` held; :meth:`pause` holds them all."""

    __slots__ = ("_stamp", "_tokens", "burst", "paused_until", "rate")

    def __init__(self, rate: float | None, now: float, *, burst: float = 1.0) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a rate must be positive")
        if burst < 1:
            raise ValueError("a bucket holds at least one token")
        self.rate = rate
        self.burst = burst
        self.paused_until = 0.0
        self._tokens = burst  # a new bucket is full
        self._stamp = now

    def _refill(self, now: float) -> None:
        if self.rate is not None and now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)

    def wait(self, now: float) -> float:
        """Seconds until a token can be taken (0.0: now); takes nothing."""
        self._refill(now)
        paused = max(0.0, self.paused_until - now)
        if self.rate is None or self._tokens >= 1 - _EPSILON:
            return paused
        return max(paused, (1 - self._tokens) / self.rate)

    def take(self, now: float) -> float:
        """Take a token and return 0.0, or take nothing and return the seconds until one is there."""
        wait = self.wait(now)
        if wait > 0:
            return wait
        if self.rate is not None:
            self._tokens -= 1
        return 0.0

    def pause(self, until: float) -> None:
        """Hand out no token before ``until``; then one, and one per interval after it (no burst)."""
        if until > self.paused_until:
            self.paused_until = until
            self._refill(until)  # what the bucket holds when the pause ends (at most its burst)

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate (a config change): what accrued so far counts at the old rate."""
        if rate == self.rate:
            return
        if rate is not None and rate <= 0:
            raise ValueError("a rate must be positive")
        self._refill(now)
        self.rate = rate
        if rate is None:
            self._tokens = self.burst

    def interval(self) -> float:
        """Seconds between two tokens (0.0 without a limit)."""
        return 0.0 if self.rate is None else 1.0 / self.rate

    def idle(self, now: float) -> bool:
        """Full and not paused: forgetting this bucket changes nothing."""
        return self.wait(now) == 0 and (self.rate is None or self._tokens >= self.burst - _EPSILON)


@dataclass(frozen=True, slots=True)
class Go:
    """Send now: a token was taken."""


@dataclass(frozen=True, slots=True)
class Queue:
    """Wait in memory (:meth:`RateLimits.acquire`); the turn comes in about ``wait`` seconds."""

    wait: float


@dataclass(frozen=True, slots=True)
class Later:
    """Do not hold the task: put it back, due in ``due_in`` seconds. ``reason`` is what the log says."""

    reason: str
    due_in: float


Verdict = Go | Queue | Later

_GO = Go()


#: A request may start once the one ``rate + 1`` requests before it started more than this long ago
#: (one second, plus room for attempt times kept in whole milliseconds).
_WINDOW = 1.002


class _Lane:
    __slots__ = ("bucket", "horizon", "sends", "timer", "waiters")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.horizon = 0.0  # the clock time the last task put back was due
        self.sends: deque[float] = deque()  # start times of the last rate + 1 requests (limited lanes)


class RateLimits:
    """Every webhook's bucket in one worker, and the tasks waiting for a token (see the module doc)."""

    def __init__(
        self,
        *,
        share: int,
        max_wait: float,
        burst: float = 1.0,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if share < 1 or max_wait <= 0:
            raise ValueError("a share of at least one task and a positive wait are needed")
        self.share = share
        self.max_wait = max_wait
        self._burst = burst
        self._size = size
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        self._swept = 0.0

    # -- state for metrics and tests ----------------------------------------------------------------
    def waiting(self, key: str) -> int:
        """Tasks of ``key`` waiting in memory for a token."""
        lane = self._lanes.get(key)
        return len(lane.waiters) if lane is not None else 0

    def paused(self, key: str) -> bool:
        """True while a ``Retry-After`` of the receiver holds ``key``'s tasks back."""
        lane = self._lanes.get(key)
        return lane is not None and lane.bucket.paused_until > self._clock()

    def throttled(self) -> int:
        """Webhooks with tasks waiting for a token, or paused by a ``Retry-After``, now."""
        now = self._clock()
        return sum(1 for lane in self._lanes.values() if lane.waiters or lane.bucket.paused_until > now)

    # -- decisions (pure) -------------------------------------------------------------------------
    def admit(self, key: str, rate: int | None, busy: int) -> Verdict:
        """May a task of webhook ``key`` (limited to ``rate``/s, None: none) go now? ``busy``: the
        webhook's other tasks this worker holds (waiting for a token or for a concurrency slot)."""
        lane = self._lanes.get(key)
        if lane is None and rate is None:
            return _GO  # no limit, no pause: nothing to keep
        now = self._clock()
        if lane is None:
            lane = self._lane(key, rate, now)
        bucket = lane.bucket
        bucket.set_rate(rate, now)
        if not lane.waiters and bucket.take(now) == 0:
            return _GO
        interval = bucket.interval()
        wait = bucket.wait(now) + len(lane.waiters) * interval
        if busy < self.share and wait <= self.max_wait:
            return Queue(wait)
        # Put back, due about when its turn comes; each one an interval after the one before.
        due = max(now + wait, lane.horizon + interval)
        lane.horizon = due
        # Back a little early (half the wait memory may hold), so the bucket never idles waiting.
        lead = min(self.max_wait, self.share * interval) / 2
        return Later(self._reason(bucket, now), max(0.0, due - now - lead))

    def start(self, key: str) -> float:
        """The last check before a request of ``key`` starts: 0.0 and the start is recorded, or the
        seconds to wait first (nothing recorded; ask again then).

        A token is taken before the task waits for a concurrency slot; tasks that waited there (a slow
        receiver), or a worker that was off the CPU, would otherwise start in a bunch. Called with
        nothing awaited between it and the request's start, it makes the start times themselves keep
        the limit: at most ``rate + 1`` in any second.
        """
        lane = self._lanes.get(key)
        if lane is None or lane.bucket.rate is None:
            return 0.0
        now = self._clock()
        limit = int(lane.bucket.rate) + 1
        sends = lane.sends
        while len(sends) > limit:  # the rate went down
            sends.popleft()
        if len(sends) == limit:
            wait = sends[0] + _WINDOW - now
            if wait > 0:
                return wait
            sends.popleft()
        sends.append(now)
        return 0.0

    def pause(self, key: str, rate: int | None, seconds: float) -> None:
        """The receiver answered ``Retry-After: seconds``: no task of ``key`` starts before then."""
        if seconds <= 0:
            return
        now = self._clock()
        lane = self._lanes.get(key) or self._lane(key, rate, now)
        lane.bucket.pause(now + seconds)

    def _lane(self, key: str, rate: int | None, now: float) -> _Lane:
        if now - self._swept > 10.0 or len(self._lanes) >= self._size:
            self._sweep(now)
        lane = self._lanes[key] = _Lane(TokenBucket(rate, now, burst=self._burst))
        return lane

    def _sweep(self, now: float) -> None:
        """Forget the buckets that hold nothing back (full, not paused, nobody waiting)."""
        self._swept = now
        for key in [k for k, lane in self._lanes.items() if not lane.waiters and self._idle(lane, now)]:
            del self._lanes[key]
        while len(self._lanes) >= self._size:  # all busy: drop the oldest one without waiters
            idle = next((k for k, lane in self._lanes.items() if not lane.waiters), None)
            if idle is None:
                break
            del self._lanes[idle]

    @staticmethod
    def _idle(lane: _Lane, now: float) -> bool:
        """Forgetting the lane changes nothing: its bucket is full, and no start is in the window."""
        return lane.bucket.idle(now) and (not lane.sends or now - lane.sends[-1] > _WINDOW)

    @staticmethod
    def _reason(bucket: TokenBucket, now: float) -> str:
        if bucket.paused_until > now:
            return (
                f"rate limit: the receiver asked to wait (Retry-After) {bucket.paused_until - now:.0f}s more;"
                " no request made"
            )
        return f"rate limit of {bucket.rate:g} requests per second: not its turn yet; no request made"

    # -- waiting (asyncio) --------------------------------------------------------------------------
    async def acquire(self, key: str) -> None:
        """Wait for a token of ``key``, after the tasks that waited before (after a :class:`Queue`)."""
        lane = self._lanes.get(key)
        if lane is None:
            return  # forgotten meanwhile (it cannot be: a lane with waiters is kept)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiters.append(fut)
        self._schedule(lane)
        try:
            await fut
        except asyncio.CancelledError:
            if fut in lane.waiters:
                lane.waiters.remove(fut)
            raise

    def release_all(self) -> None:
        """Let every waiting task go at once (the worker is stopping: they give up, not send)."""
        for lane in self._lanes.values():
            if lane.timer is not None:
                lane.timer.cancel()
                lane.timer = None
            while lane.waiters:
                fut = lane.waiters.popleft()
                if not fut.done():
                    fut.set_result(None)

    def _schedule(self, lane: _Lane) -> None:
        if lane.timer is None:
            wait = lane.bucket.wait(self._clock())
            lane.timer = asyncio.get_running_loop().call_later(wait, self._release, lane)

    def _release(self, lane: _Lane) -> None:
        lane.timer = None
        while lane.waiters and lane.waiters[0].done():  # cancelled while waiting
            lane.waiters.popleft()
        if not lane.waiters:
            return
        if lane.bucket.take(self._clock()) == 0:
            lane.waiters.popleft().set_result(None)
        if lane.waiters:
            self._schedule(lane)
