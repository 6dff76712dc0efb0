"""Receivers that misbehave, against one real delivery worker process (issue 16, point 2).

Each bad receiver is a real server on 127.0.0.1: raw TCP servers for what aiohttp would never do
(reset after the request, trickle one byte a second, answer 200 after the worker's deadline, stream
1 GiB, answer something that is not HTTP) and TLS receivers whose certificates are made here with
``trustme`` (one for another name, one expired, one good as the control). The worker trusts the
test CA through ``SSL_CERT_FILE`` (httpx's SSL context reads it), so the two bad certificates fail
for their name and their dates, not for an unknown issuer.

Each must end as its error class, and a healthy webhook in the same worker must stay on time while
all of them misbehave at once (its latency is compared with a baseline run of the same worker).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
import trustme

from hookline.clients import create_topics
from hookline.settings import load_settings
from processors.deliver.sender import classify_error
from schemas.codec import encode
from tests.conftest import TEST_RETRY_SCHEDULE
from tests.processors.deliver.deliver_harness import Harness
from tests.processors.deliver.receivers import Receiver, Reply
from tests.support import TopicReader, scaled, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ATTEMPT_TIMEOUT = 3.0
GIB = 1024**3
EXCERPT = 16 * 1024

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class BadServers:
    """Raw TCP servers on 127.0.0.1 in one event loop thread; each counts connections and bytes sent."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bad-servers", daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: dict[str, int] = {}
        self.sent: dict[str, list[int]] = {}  # bytes written per connection (gigabyte)
        self.lock = threading.Lock()
        self.open: set[asyncio.StreamWriter] = set()

    def add(self, name: str, handler: Handler) -> int:
        self.connections[name] = 0

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with self.lock:
                self.connections[name] += 1
            self.open.add(writer)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                pass  # the worker went away, as it should
            finally:
                self.open.discard(writer)
                writer.transport.abort()

        async def start() -> int:
            server = await asyncio.start_server(counted, "127.0.0.1", 0)
            self.servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    # -- behaviours -------------------------------------------------------------------------------
    @staticmethod
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        _reset(writer)

    @staticmethod
    async def reset_at_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _reset(writer)

    @staticmethod
    async def trickle_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(1.0)

    @staticmethod
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)

    @staticmethod
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(ATTEMPT_TIMEOUT + 1.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    @staticmethod
    async def invalid(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HELLO, THIS IS NOT HTTP\r\n\x00\xff\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.0)

    def gigabyte(self, name: str) -> Handler:
        """200 with a 1 GiB body, streamed from one 64 KiB chunk (never allocated whole)."""
        chunk = b"x" * 65536

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n".encode())
            sent = 0
            try:
                while sent < GIB and not writer.is_closing():
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
            finally:
                with self.lock:
                    self.sent.setdefault(name, []).append(sent)

        return handler

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for writer in list(self.open):
                writer.transport.abort()
            for server in self.servers:
                await server.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.1)  # the aborted transports close on the next loop turns

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Bad:
    """A misbehaving webhook: its id, its URL and the error class its attempts must end as."""

    webhook_id: str
    url: str
    error_class: str | None  # None: delivered (a 2xx, whatever its body does)
    #: Another class that is right too (a reset at accept may reach the client before its connect ends).
    also: str | None = None


class World:
    def __init__(
        self,
        harness: Harness,
        receiver: Receiver,
        servers: BadServers,
        tls: dict[str, Receiver],
        redirect_target: Receiver,
        port: int,
    ) -> None:
        self.h = harness
        self.receiver = receiver
        self.servers = servers
        self.tls = tls
        self.redirect_target = redirect_target
        self.port = port
        self.results = TopicReader(harness.settings, "webhook-results")
        self.bad: dict[str, Bad] = {}

    def first_results(self, ids: list[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """The first attempt's result of each webhook in ``ids``."""

        def found() -> dict[str, dict[str, Any]] | None:
            self.results.poll(0.2)
            got: dict[str, dict[str, Any]] = {}
            for r in self.results.decoded("DeliveryResult"):
                if r["webhookId"] in ids and r["attempt"] == 1:
                    got.setdefault(r["webhookId"], r)
            return got if len(got) == len(ids) else None

        return wait_until(found, timeout, f"first results of {ids}")


def _tls_receiver(cert: trustme.LeafCert) -> Receiver:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return Receiver(ssl_context=ctx).start()


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bad-receivers")
    settings = load_settings(
        {},
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        retry_schedule=TEST_RETRY_SCHEDULE,
        home=tmp / "home",
    )
    create_topics(settings, timeout=scaled(60))
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = dt.datetime.now(dt.UTC)
    tls = {
        "good": _tls_receiver(ca.issue_cert("localhost")),
        "other-name": _tls_receiver(ca.issue_cert("other.example")),
        "expired": _tls_receiver(
            ca.issue_cert(
                "localhost", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
            )
        ),
    }
    harness = Harness(settings, tmp)
    receiver = Receiver().start()
    redirect_target = Receiver().start()
    servers = BadServers()
    w: World | None = None
    try:
        _role, port = harness.worker(
            HOOKLINE_ATTEMPT_TIMEOUT=str(ATTEMPT_TIMEOUT),
            HOOKLINE_CONNECT_TIMEOUT="1",
            # No breaker: every bad task costs a slot and a request, the worst case for the others.
            HOOKLINE_BREAKER_FAILURES="0",
            SSL_CERT_FILE=str(ca_file),
        )
        w = World(harness, receiver, servers, tls, redirect_target, port)

        def bad(name: str, url: str, error_class: str | None) -> None:
            wid = f"{name}-{uuid.uuid4().hex[:6]}"
            harness.webhook(wid, url)
            # Reset at accept: ``protocol``, or ``connect`` when the RST reaches the worker before its
            # connect call has returned (seen with uvloop); no request was sent either way.
            w.bad[name] = Bad(wid, url, error_class, "connect" if name == "reset-at-accept" else None)

        raw = {
            "reset": servers.reset,
            "reset-at-accept": servers.reset_at_accept,
            "trickle-body": servers.trickle_body,
            "trickle": servers.trickle,
            "late-200": servers.late,
            "invalid-http": servers.invalid,
            "gigabyte": servers.gigabyte("gigabyte"),
        }
        expected = {
            "reset": "protocol",
            "reset-at-accept": "protocol",
            "trickle-body": None,  # a 2xx is delivered even when its body never ends
            "trickle": "timeout",
            "late-200": "timeout",
            "invalid-http": "protocol",
            "gigabyte": None,
        }
        for name, handler in raw.items():
            bad(name, f"http://127.0.0.1:{servers.add(name, handler)}/hook", expected[name])
        for name, rcv in tls.items():
            bad(f"tls-{name}", rcv.url("/hook", host="localhost"), None if name == "good" else "tls")
        redirect_target.set("/internal", lambda n, g: Reply(200))
        receiver.set(
            "/redirect", lambda n, g: Reply(302, headers={"Location": redirect_target.url("/internal")})
        )
        bad("redirect-loopback", receiver.url("/redirect"), "redirect")
        yield w
    finally:
        harness.close()  # stops the worker first: no connection is opened after this
        if w is not None:
            w.results.close()
        receiver.stop()
        redirect_target.stop()
        for r in tls.values():
            r.stop()
        servers.close()


# --- the error classes ----------------------------------------------------------------------------


def _chained(*excs: BaseException) -> BaseException:
    for outer, inner in itertools.pairwise(excs):
        outer.__cause__ = inner
    return excs[0]


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        # What httpx-aiohttp 0.2 really raises: ConnectTimeout around whatever aiohttp met.
        (
            _chained(httpx.ConnectTimeout("x"), aiohttp.ClientOSError(), ConnectionResetError(104, "reset")),
            "protocol",
        ),
        (_chained(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()), "protocol"),
        (
            _chained(
                httpx.ConnectTimeout("x"),
                aiohttp.ClientConnectorError(
                    aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
                    ConnectionRefusedError(111, "refused"),
                ),
            ),
            "connect",
        ),
        (_chained(httpx.ConnectTimeout("x"), TimeoutError()), "timeout"),
        (httpx.ConnectTimeout("no cause"), "timeout"),
    ],
)
def test_a_connection_that_broke_after_connecting_is_protocol_not_connect_or_timeout(
    exc: BaseException, cls: str
) -> None:
    assert classify_error(exc) == cls


def test_each_misbehaving_receiver_ends_as_its_error_class(world: World) -> None:
    h = world.h
    ids = [b.webhook_id for b in world.bad.values()]
    h.send([h.task(wid) for wid in ids])
    first = world.first_results(ids)
    seen = {}
    for name, bad in world.bad.items():
        r = first[bad.webhook_id]
        seen[name] = (r["errorClass"], r["responseStatus"], round(r["latencySeconds"], 2))
        assert r["errorClass"] in (bad.error_class, bad.also), (name, r["errorClass"], r["errorMessage"])
        assert r["outcome"] == ("delivered" if bad.error_class is None else "failed"), name
        # Every attempt ends by the deadline (plus the time to record it on a busy machine).
        assert r["latencySeconds"] <= ATTEMPT_TIMEOUT + scaled(1.0), (name, r["latencySeconds"])
    print("first attempts:", seen)
    tls_msgs = {n: first[world.bad[n].webhook_id]["errorMessage"] for n in ("tls-other-name", "tls-expired")}
    assert "match" in tls_msgs["tls-other-name"].lower() or "hostname" in tls_msgs["tls-other-name"].lower()
    assert "expired" in tls_msgs["tls-expired"].lower()
    # Statuses where there was a response; nothing at all for the connections that broke.
    assert first[world.bad["redirect-loopback"].webhook_id]["responseStatus"] == 302
    assert world.redirect_target.connections == 0  # a redirect to loopback is never followed
    for name in ("reset", "reset-at-accept", "trickle", "late-200", "invalid-http"):
        assert first[world.bad[name].webhook_id]["responseStatus"] is None, name
    # 200 and then one body byte a second: delivered, but only when the deadline cut the body off.
    slow = first[world.bad["trickle-body"].webhook_id]
    assert slow["responseStatus"] == 200 and slow["latencySeconds"] >= ATTEMPT_TIMEOUT - 0.1
    assert "within" in (slow["errorMessage"] or ""), slow["errorMessage"]
    # 1 GiB answered: the excerpt is 16 KiB, and the connection was dropped long before the end.
    giga = first[world.bad["gigabyte"].webhook_id]
    assert giga["responseStatus"] == 200 and giga["responseBodyTruncated"] is True
    assert len(giga["responseBodyExcerpt"]) == EXCERPT
    wait_until(lambda: world.servers.sent.get("gigabyte"), 30, "the gigabyte server to see the hang-up")
    assert max(world.servers.sent["gigabyte"]) < 64 * 1024 * 1024, world.servers.sent["gigabyte"]


# --- nothing else is slowed --------------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _healthy_run(
    world: World,
    wid: str,
    path: str,
    rate: float,
    seconds: float,
    during: Callable[[int], None] | None = None,
) -> Run:
    """Send ``rate`` tasks a second to the healthy webhook for ``seconds``; return each one's latency
    from its produce call to its arrival at the receiver (``during(i)`` runs after each send)."""
    h = world.h
    sent: dict[str, float] = {}
    start = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        pause = start + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        task = h.task(wid)
        sent[task["eventId"]] = time.time()
        h.raw(wid.encode(), encode("DeliveryTask", task))
        h.producer.flush(10)
        if during is not None:
            during(i)

    def arrived() -> dict[str, float] | None:
        got = {orjson.loads(g.body)["contact"]["eventId"]: g.at for g in world.receiver.got(path)}
        return got if all(e in got for e in sent) else None

    return Run(sent, wait_until(arrived, 60, f"{count} healthy deliveries"))


@dataclass(frozen=True)
class Run:
    sent: dict[str, float]  # event id -> produce call
    got: dict[str, float]  # event id -> arrival at the receiver

    @property
    def latencies(self) -> list[float]:
        return sorted(self.got[e] - t for e, t in self.sent.items())


def _slowest(world: World, wid: str, run: Run, n: int = 4) -> str:
    """The ``n`` slowest deliveries split at the worker's attempt start (``attemptedAt`` of their result):
    time before it is the worker's (or the broker's), time after it the HTTP exchange and the receiver's."""
    sent, got = run.sent, run.got
    worst = sorted(sent, key=lambda e: got[e] - sent[e])[-n:]

    def started() -> dict[str, int] | None:
        world.results.poll(0.2)
        at = {r["eventId"]: r["attemptedAt"] for r in world.results.decoded("DeliveryResult")
              if r["webhookId"] == wid}
        return at if all(e in at for e in worst) else None

    at = wait_until(started, 30, f"the results of the {n} slowest healthy deliveries")
    return ", ".join(f"{got[e] - sent[e]:.3f} s = {at[e] / 1000 - sent[e]:.3f} to the attempt start + "
                     f"{got[e] - at[e] / 1000:.3f} to the arrival" for e in reversed(worst))


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def test_a_healthy_webhook_stays_on_time_while_every_bad_receiver_misbehaves(world: World) -> None:
    h = world.h
    wid = f"healthy-{uuid.uuid4().hex[:6]}"
    path = f"/{wid}"
    h.webhook(wid, world.receiver.url(path))
    rate, seconds = 20.0, 10.0
    baseline = _healthy_run(world, wid, path, rate, seconds)

    role = h.roles[0]
    assert role.proc is not None
    pid = role.proc.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
    rss_before = _status_kib(pid, "VmRSS")
    bad_ids = [b.webhook_id for b in world.bad.values()]
    per_webhook = h.settings.deliver_webhook_concurrency

    def keep_them_busy(i: int) -> None:
        # Every second, a fresh webhook's share (16) of tasks for every bad receiver, on top of
        # their retries: they hold as many slots as they can throughout the run.
        if i % int(rate) == 0:
            h.send([h.task(b) for b in bad_ids for _ in range(per_webhook)])

    faulty_run = _healthy_run(world, wid, path, rate, seconds, during=keep_them_busy)
    faulty, slowest = faulty_run.latencies, _slowest(world, wid, faulty_run)
    peak = _status_kib(pid, "VmHWM")
    b50, b99 = _pct(baseline.latencies, 0.5), _pct(baseline.latencies, 0.99)
    f50, f99 = _pct(faulty, 0.5), _pct(faulty, 0.99)
    print(
        f"healthy webhook, {len(faulty)} deliveries at {rate:g}/s: baseline p50 {b50 * 1000:.0f} ms "
        f"p99 {b99 * 1000:.0f} ms; beside the bad receivers p50 {f50 * 1000:.0f} ms "
        f"p99 {f99 * 1000:.0f} ms; "
        f"worker RSS {rss_before} KiB, peak {peak} KiB; gigabyte connections "
        f"{len(world.servers.sent.get('gigabyte', []))}, most bytes sent to one "
        f"{max(world.servers.sent.get('gigabyte', [0])) // 1024} KiB"
    )
    print(f"slowest beside the bad receivers: {slowest}")
    # What the bound must catch: a healthy task that waits behind a bad receiver's slot, connection or
    # buffer space waits a whole attempt deadline (3 s), and a systematic slowdown moves the median.
    # What it must tolerate: a CPU-starved worker. Beside two CPU burners the worker's own work for
    # the bad receivers (TLS handshakes, 1 GiB bodies cut off, ~300 attempts a second) queues the
    # healthy task's turn in its event loop for up to ~0.2 s, and the receiver thread, in this test
    # process beside the bad servers, is as late again (seen: p99 0.63 s; the slowest split at the
    # attempt start is printed above). So: p99 within a third of the deadline above 3x the baseline's.
    assert f99 <= 3 * b99 + scaled(ATTEMPT_TIMEOUT / 3), (b99, f99, slowest)
    assert f50 <= 3 * b50 + scaled(0.25), (b50, f50, slowest)
    # The bad receivers were really misbehaving meanwhile: every kind has attempts recorded.
    counts = {
        name: world.servers.connections.get(name, 0)
        for name in ("reset", "trickle", "trickle-body", "late-200")
    }
    assert all(c >= per_webhook for c in counts.values()), counts
    # Sixteen 1 GiB answers at a time read 16 KiB each: the worker's memory stays flat.
    assert peak - rss_before < 64 * 1024, (rss_before, peak)
