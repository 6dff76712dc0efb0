"""Failed sign-ins per client address: guessing API keys gets slow, then stops.

Every request that presents an unknown API key counts as a failure of the address it came from
(the API and the web page's sign-in form alike). An address with ``limit`` failures inside the last
``window`` seconds is refused with 429 until the oldest of them ages out, even with a valid key:
otherwise the refusal itself would tell a guesser which key was right. Memory stays bounded: at
most ``max_clients`` addresses are tracked, the least recently failing one is forgotten first.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

from api.errors import TooManyAuthFailures
from hookline.metrics import ApiMetrics

__all__ = ["AuthThrottle", "admit", "client_address", "refused"]

log = logging.getLogger("hookline.api.auth")


class AuthThrottle:
    """Sliding-window count of authentication failures per client address."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0 (0 turns the throttle off)")
        if window <= 0:
            raise ValueError("window must be positive")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None when it may try now."""
        if self.limit == 0:
            return None
        now = self._clock()
        times = self._recent(client, now)
        if times is None or len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str) -> None:
        """Count one failed authentication of ``client``; say so once when it reaches the limit."""
        if self.limit == 0:
            return
        now = self._clock()
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        times.append(now)
        if len(times) == self.limit:
            log.warning(
                "client %s presented %d unknown API keys within %gs: refused for %gs",
                client,
                self.limit,
                self.window,
                self.window,
            )

    def __len__(self) -> int:
        return len(self._failures)


def client_address(request: Request) -> str:
    """The address failures are counted against: the peer, or what a trusted proxy says it is."""
    return request.client.host if request.client is not None else "unknown"


def admit(request: Request) -> str:
    """The client's address if it may try a key now; raises :class:`TooManyAuthFailures` if not."""
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = client_address(request)
    wait = throttle.retry_after(client)
    if wait is not None:
        metrics: ApiMetrics = request.app.state.metrics
        metrics.auth_throttled.inc()
        raise TooManyAuthFailures(wait)
    return client


def refused(request: Request, client: str, presented: str | None) -> None:
    """Count a refused key; only a presented one is a guess (a request without any key is not)."""
    metrics: ApiMetrics = request.app.state.metrics
    metrics.auth_failures.inc()
    if presented:
        throttle: AuthThrottle = request.app.state.auth_throttle
        throttle.failed(client)
