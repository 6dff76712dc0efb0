"""A circuit breaker per webhook, so a dead endpoint costs neither slots nor retry traffic (pure).

After ``failures`` consecutive attempts of a webhook that failed the way a dead or overloaded
endpoint fails (a connection error, a timeout, a 5xx), its breaker *opens*: :meth:`Breakers.admit`
answers :class:`Defer` for its automatic tasks, which the handler moves on to their next attempt
without a request (docs/architecture.md §6). One probe per ``probe_interval`` is let through; the
first 2xx — of a probe, of an attempt already in flight when it opened, or of an owner's send —
closes it. Other outcomes (a 4xx, a redirect) prove nothing either way and change nothing.

Only the webhooks with a failure streak or an open breaker are kept, at most ``size`` of them (the
oldest streak is forgotten first), so the memory stays bounded whatever the number of webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BREAKER_ERRORS", "Admit", "Breakers", "Defer", "Transition", "Verdict"]

#: Error classes that count towards opening a breaker: the endpoint is down or failing.
BREAKER_ERRORS = frozenset({"connect", "timeout", "http_5xx"})

Transition = Literal["opened", "closed"]


@dataclass(frozen=True, slots=True)
class Admit:
    """Send the attempt; ``probe`` when it is the one attempt an open breaker lets through."""

    probe: bool = False


@dataclass(frozen=True, slots=True)
class Defer:
    """Do not send: the breaker is open. ``reason`` is what the result record says."""

    reason: str
    next_probe_in: float


Verdict = Admit | Defer

_GO = Admit()
_PROBE = Admit(probe=True)


class _State:
    __slots__ = ("failures", "next_probe", "open", "probing_since")

    def __init__(self) -> None:
        self.failures = 0
        self.open = False
        self.next_probe = 0.0  # monotonic time from which a probe may go (when open)
        self.probing_since: float | None = None  # a probe is in flight since then


class Breakers:
    """Every webhook's breaker in one worker (the state is per worker: a breaker is a local guard)."""

    def __init__(
        self,
        failures: int,
        probe_interval: float,
        *,
        probe_timeout: float = 120.0,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("a breaker needs at least one failure to open")
        if probe_interval <= 0:
            raise ValueError("the probe interval must be positive")
        self.failures = failures
        self.probe_interval = probe_interval
        # A probe that never reported (its task was lost) stops blocking the next one after this.
        self._probe_timeout = max(probe_timeout, probe_interval)
        self._size = size
        self._clock = clock
        self._states: dict[str, _State] = {}  # insertion order = oldest streak first

    def is_open(self, key: str) -> bool:
        state = self._states.get(key)
        return state is not None and state.open

    @property
    def open_count(self) -> int:
        """Breakers open now."""
        return sum(1 for s in self._states.values() if s.open)

    def admit(self, key: str) -> Verdict:
        """May an automatic task of ``key`` be sent now?"""
        state = self._states.get(key)
        if state is None or not state.open:
            return _GO
        now = self._clock()
        if state.probing_since is not None and now - state.probing_since < self._probe_timeout:
            return self._defer(state, now)
        if now < state.next_probe:
            return self._defer(state, now)
        state.probing_since = now
        state.next_probe = now + self.probe_interval
        return _PROBE

    def record(
        self, key: str, *, delivered: bool, error_class: str | None, probe: bool = False
    ) -> Transition | None:
        """Count an attempt's outcome; return the transition it caused, if any."""
        state = self._states.get(key)
        if probe and state is not None:
            state.probing_since = None
        if delivered:
            if state is None:
                return None
            del self._states[key]
            return "closed" if state.open else None
        if error_class not in BREAKER_ERRORS:
            return None
        if state is None:
            if len(self._states) >= self._size:
                self._evict()
            state = self._states[key] = _State()
        state.failures += 1
        now = self._clock()
        if state.open:
            state.next_probe = max(state.next_probe, now + self.probe_interval)
            return None
        if state.failures >= self.failures:
            state.open = True
            state.next_probe = now + self.probe_interval
            return "opened"
        return None

    def release(self, key: str) -> None:
        """A probe that was admitted did not happen (the worker is stopping): let the next one go."""
        state = self._states.get(key)
        if state is not None and state.probing_since is not None:
            state.probing_since = None
            state.next_probe = self._clock()

    def _defer(self, state: _State, now: float) -> Defer:
        wait = max(0.0, state.next_probe - now)
        return Defer(
            f"circuit breaker open after {state.failures} consecutive connection errors, timeouts"
            f" or 5xx; no request made (next probe in {wait:.0f}s)",
            wait,
        )

    def _evict(self) -> None:
        # Closed streaks first (cheap to forget), else the oldest open breaker.
        for key, state in self._states.items():
            if not state.open:
                del self._states[key]
                return
        del self._states[next(iter(self._states))]
