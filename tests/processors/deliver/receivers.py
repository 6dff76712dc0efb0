"""Real HTTP receivers for the delivery tests: aiohttp on 127.0.0.1, in a thread of the test process.

Each receiver counts the TCP connections it accepts, records every request it answers (path,
headers, body, arrival time) and answers per path with a programmable behaviour.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Big", "Got", "Hang", "Receiver", "Reply"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Never answer (until the receiver stops)."""


@dataclass(frozen=True)
class Big:
    """Answer 200 with ``size`` bytes, streamed."""

    size: int


Behaviour = Callable[[int, "Got"], Reply | Hang | Big]


@dataclass(frozen=True)
class Got:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() on arrival
    n: int  # 1-based count of requests to this path so far


def _ok(n: int, got: Got) -> Reply:
    return Reply()


class Receiver:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[Got] = []
        self.connections = 0
        self.port = 0
        self._behaviours: dict[str, Behaviour] = {}
        self._counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)
        self._started = False
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None

    def set(self, path: str, behaviour: Behaviour) -> None:
        self._behaviours[path] = behaviour

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def got(self, path: str | None = None) -> list[Got]:
        with self._lock:
            return [g for g in self.requests if path is None or g.path == path]

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self._started = True
        return self

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        factory: Any = self._runner.server

        def counted() -> Any:
            with self._lock:
                self.connections += 1
            return factory()

        self._server = await self._loop.create_server(counted, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        with self._lock:
            self._counts[path] += 1
            headers = {k.lower(): v for k, v in request.headers.items()}
            got = Got(path, headers, body, time.time(), self._counts[path])
            self.requests.append(got)
        behaviour = self._behaviours.get(path, _ok)
        action = behaviour(got.n, got)
        if isinstance(action, Hang):
            assert self._release is not None
            await self._release.wait()
            return web.Response(status=503)
        if isinstance(action, Big):
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
            resp.content_length = action.size
            await resp.prepare(request)
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < action.size:
                    await resp.write(chunk[: action.size - sent])
                    sent += len(chunk)
            except (ConnectionError, RuntimeError):
                pass  # the client went away, as it should after its cap
            return resp
        if action.delay:
            await asyncio.sleep(action.delay)
        return web.Response(status=action.status, headers=action.headers, body=action.body)

    def stop(self) -> None:
        if not self._started:
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._started = False

    async def _stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
