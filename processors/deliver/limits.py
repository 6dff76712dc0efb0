"""Concurrency shares: a global cap on requests in flight and a smaller cap per webhook.

A task first waits for its webhook's share, then for a global slot, so tasks of a slow or
hanging receiver queue behind each other and never hold global slots while they wait. Each share
also knows how long its queue would take to drain (:meth:`ConcurrencyLimits.expected_wait`), so
the worker can move a slow webhook's excess elsewhere instead of holding it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["ConcurrencyLimits"]

_ALPHA = 0.2  # weight of the newest attempt in a share's average duration


class _Share:
    __slots__ = ("active", "average", "sem", "users")

    def __init__(self, size: int) -> None:
        self.sem = asyncio.Semaphore(size)
        self.users = 0  # holding or waiting for a slot
        self.active: dict[int, float] = {}  # slot token -> start time
        self.average: float | None = None  # seconds per slot use


class ConcurrencyLimits:
    """``total`` slots overall, at most ``per_key`` of them for one key (a webhook id)."""

    def __init__(self, total: int, per_key: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if total < 1 or per_key < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.total = total
        self.per_key = per_key
        self._clock = clock
        self._global = asyncio.Semaphore(total)
        self._shares: dict[str, _Share] = {}
        self._token = 0
        self.in_flight = 0

    def waiting(self, key: str) -> int:
        """Tasks of ``key`` holding or waiting for a slot."""
        share = self._shares.get(key)
        return share.users if share else 0

    def expected_wait(self, key: str) -> float:
        """Seconds a new task of ``key`` would wait for its share, judging by recent slot use.

        A slot still in use counts for at least its age, so a receiver that hangs shows as slow
        before its first attempt ends.
        """
        share = self._shares.get(key)
        if share is None:
            return 0.0
        queued = share.users - len(share.active)
        if queued < 0 or len(share.active) < self.per_key:
            return 0.0
        now = self._clock()
        oldest = now - min(share.active.values()) if share.active else 0.0
        per_slot = max(share.average or 0.0, oldest)
        return (queued // self.per_key + 1) * per_slot

    def slot(self, key: str) -> _Slot:
        """``async with limits.slot(key):`` holds one of ``key``'s slots and one global slot."""
        return _Slot(self, key)


class _Slot:
    """One use of a slot: waits for the key's share, then for a global slot (released in reverse).

    A plain class rather than an ``asynccontextmanager``: every task waiting or in flight holds one,
    and a generator-based manager costs several times the memory and CPU of these few fields.
    """

    __slots__ = ("_key", "_limits", "_share", "_started", "_token")

    def __init__(self, limits: ConcurrencyLimits, key: str) -> None:
        self._limits = limits
        self._key = key
        self._share: _Share | None = None
        self._token = 0
        self._started = 0.0

    async def __aenter__(self) -> None:
        limits = self._limits
        share = limits._shares.get(self._key)
        if share is None:
            share = limits._shares[self._key] = _Share(limits.per_key)
        self._share = share
        share.users += 1
        try:
            await share.sem.acquire()
            try:
                await limits._global.acquire()
            except BaseException:
                share.sem.release()
                raise
        except BaseException:
            self._leave(share)
            raise
        limits._token += 1
        self._token = limits._token
        self._started = share.active[self._token] = limits._clock()
        limits.in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        share = self._share
        assert share is not None, "slot exited without being entered"
        limits = self._limits
        try:
            limits.in_flight -= 1
            del share.active[self._token]
            took = limits._clock() - self._started
            old = share.average
            share.average = took if old is None else (1 - _ALPHA) * old + _ALPHA * took
        finally:
            limits._global.release()
            share.sem.release()
            self._leave(share)

    def _leave(self, share: _Share) -> None:
        share.users -= 1
        if share.users == 0:
            del self._limits._shares[self._key]  # keys come and go; keep only the busy ones
