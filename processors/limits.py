"""Concurrency shares: a global cap on requests in flight and a smaller cap per webhook.

A task first waits for its webhook's share, then for a global slot, so tasks of a slow or
hanging receiver queue behind each other and never hold global slots while they wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["ConcurrencyLimits"]


class _Share:
    __slots__ = ("sem", "users")

    def __init__(self, size: int) -> None:
        self.sem = asyncio.Semaphore(size)
        self.users = 0


class ConcurrencyLimits:
    """``total`` slots overall, at most ``per_key`` of them for one key (a webhook id)."""

    def __init__(self, total: int, per_key: int) -> None:
        if total < 1 or per_key < 1:
            raise ValueError("concurrency limits must be at least 1")
        self.total = total
        self.per_key = per_key
        self._global = asyncio.Semaphore(total)
        self._shares: dict[str, _Share] = {}
        self.in_flight = 0

    def waiting(self, key: str) -> int:
        """Tasks of ``key`` holding or waiting for a slot."""
        share = self._shares.get(key)
        return share.users if share else 0

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        share = self._shares.get(key)
        if share is None:
            share = self._shares[key] = _Share(self.per_key)
        share.users += 1
        try:
            async with share.sem, self._global:
                self.in_flight += 1
                try:
                    yield
                finally:
                    self.in_flight -= 1
        finally:
            share.users -= 1
            if share.users == 0:
                del self._shares[key]  # keys come and go; keep only the busy ones
