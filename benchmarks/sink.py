"""The loopback sink: a small HTTP/1.1 server that records every delivery's arrival and checks its signature.

Run as ``python -m benchmarks.sink --seed SEED``; it prints ``PORT <n>`` on stdout once it listens on
127.0.0.1. Hand-written on asyncio protocols so that it costs little CPU per request (the pipeline and
the baselines share the machine with it).

- ``POST /hook/<webhook id>``: the hex HMAC (``X-Webhook-Signature``) of every request is checked with
  the webhook's secret (:func:`benchmarks.traffic.webhook_secret`); the Standard Webhooks ``v1``
  signature is checked on one request in ``--standard-every``. The arrival time t3 and the body's
  mark (run, seq, t0) are recorded. The answer is ``200`` at once, or never while holding.
- ``/_ctl/stats`` (counters as JSON), ``/_ctl/hold``, ``/_ctl/release`` (answer every held request),
  ``/_ctl/dump?run=R&path=P`` (write the arrivals of run R to P, one ``webhook run seq t0 t3`` line
  each, and forget them).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import signal
import sys
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import orjson

from benchmarks.traffic import find_mark, webhook_secret
from hookline.signing import hmac_key

__all__ = ["Sink", "main"]

_OK_BODY = b'{"received":true}'
_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_OK_BODY),
    _OK_BODY,
)
_MAX_HEAD = 64 * 1024


def _response(status: int, body: bytes, close: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 411: "Length Required"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


class Sink:
    """Counters, arrivals and held requests of the sink (shared by every connection)."""

    def __init__(self, seed: str, standard_every: int) -> None:
        self.seed = seed
        self.standard_every = max(1, standard_every)
        self.keys: dict[bytes, bytes] = {}
        self.requests = 0
        self.bad_signature = 0
        self.unmarked = 0
        self.standard_checked = 0
        self.standard_bad = 0
        self.bad_requests = 0
        self.connections = 0
        self.max_connections = 0
        self.holding = False
        self.held: list[asyncio.Transport] = []
        self.max_held = 0
        # run -> [(t3, mark, webhook id)]
        self.arrivals: dict[bytes, list[tuple[float, bytes, bytes]]] = defaultdict(list)

    def key(self, webhook_id: bytes) -> bytes:
        key = self.keys.get(webhook_id)
        if key is None:
            key = self.keys[webhook_id] = hmac_key(webhook_secret(self.seed, webhook_id.decode()))
        return key

    def hook(
        self, transport: asyncio.Transport, webhook_id: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        t3 = time.time()
        self.requests += 1
        key = self.key(webhook_id)
        given = headers.get(b"x-webhook-signature", b"")
        if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), given):
            self.bad_signature += 1
            transport.write(_response(401, b'{"error":"bad signature"}'))
            return
        if self.requests % self.standard_every == 0 and b"webhook-signature" in headers:
            self.standard_checked += 1
            if not _standard_ok(key, headers, body):
                self.standard_bad += 1
        mark = find_mark(body)
        if mark is None:
            self.unmarked += 1
        else:
            run = mark.split(b"|", 1)[0]
            self.arrivals[run].append((t3, mark, webhook_id))
        if self.holding:
            self.held.append(transport)
            self.max_held = max(self.max_held, len(self.held))
        else:
            transport.write(_OK)

    def control(self, path: bytes) -> bytes:
        parts = urlsplit(path.decode())
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/_ctl/stats":
            return orjson.dumps(self.stats())
        if parts.path == "/_ctl/hold":
            self.holding = True
            return b"{}"
        if parts.path == "/_ctl/release":
            self.holding = False
            released = 0
            for transport in self.held:
                if not transport.is_closing():
                    transport.write(_OK)
                    released += 1
            self.held.clear()
            return orjson.dumps({"released": released})
        if parts.path == "/_ctl/dump":
            rows = self.arrivals.pop(query["run"].encode(), [])
            with open(query["path"], "w") as f:
                for t3, mark, webhook_id in rows:
                    run, seq, t0 = mark.decode().split("|")
                    f.write(f"{webhook_id.decode()} {run} {seq} {t0} {t3:.6f}\n")
            return orjson.dumps({"rows": len(rows)})
        raise KeyError(parts.path)

    def stats(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "bad_signature": self.bad_signature,
            "unmarked": self.unmarked,
            "standard_checked": self.standard_checked,
            "standard_bad": self.standard_bad,
            "bad_requests": self.bad_requests,
            "connections": self.connections,
            "max_connections": self.max_connections,
            "held": len(self.held),
            "max_held": self.max_held,
            "runs": {run.decode(): len(rows) for run, rows in self.arrivals.items()},
        }


def _standard_ok(key: bytes, headers: dict[bytes, bytes], body: bytes) -> bool:
    msg_id = headers.get(b"webhook-id", b"")
    ts = headers.get(b"webhook-timestamp", b"")
    mac = hmac.new(key, msg_id + b"." + ts + b".", hashlib.sha256)
    mac.update(body)
    expected = base64.b64encode(mac.digest())
    given = [s[3:] for s in headers.get(b"webhook-signature", b"").split() if s.startswith(b"v1,")]
    try:
        fresh = abs(time.time() - int(ts)) <= 300
    except ValueError:
        fresh = False
    return fresh and any(hmac.compare_digest(expected, g) for g in given)


class _Connection(asyncio.Protocol):
    __slots__ = ("buf", "head", "need", "sink", "transport")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.need: int | None = None
        self.head: tuple[bytes, bytes, dict[bytes, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sink.connections += 1
        self.sink.max_connections = max(self.sink.max_connections, self.sink.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink.connections -= 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        transport = self.transport
        assert transport is not None
        while True:
            if self.head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        self._fail(400)
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[: end + 4]
                try:
                    method, path, _version = lines[0].split(b" ", 2)
                except ValueError:
                    self._fail(400)
                    return
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                if b"chunked" in headers.get(b"transfer-encoding", b""):
                    self._fail(411)
                    return
                self.need = int(headers.get(b"content-length", b"0") or 0)
                self.head = (method, path, headers)
            assert self.need is not None
            if len(buf) < self.need:
                return
            body = bytes(buf[: self.need])
            del buf[: self.need]
            method, path, headers = self.head
            self.head = None
            self._dispatch(transport, method, path, headers, body)

    def _dispatch(
        self,
        transport: asyncio.Transport,
        method: bytes,
        path: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
    ) -> None:
        close = headers.get(b"connection", b"").lower() == b"close"
        if path.startswith(b"/hook/") and method == b"POST":
            self.sink.hook(transport, path[6:], headers, body)
        elif path.startswith(b"/_ctl/"):
            try:
                transport.write(_response(200, self.sink.control(path), close))
            except (KeyError, OSError, ValueError) as exc:
                transport.write(_response(404, orjson.dumps({"error": repr(exc)}), close))
        else:
            self.sink.bad_requests += 1
            transport.write(_response(404, b'{"error":"no such path"}', close))
        if close:
            transport.close()

    def _fail(self, status: int) -> None:
        self.sink.bad_requests += 1
        assert self.transport is not None
        self.transport.write(_response(status, b"{}", close=True))
        self.transport.close()


async def _serve(args: argparse.Namespace) -> None:
    sink = Sink(args.seed, args.standard_every)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(sink), "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bounded: a sink left behind by a crashed bench ends on its own.
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except TimeoutError:
        print("sink: --max-seconds reached, exiting", file=sys.stderr)
    server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__)
    p.add_argument("--seed", required=True, help="seed of the webhook secrets")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--standard-every", type=int, default=16, help="check the v1 signature of 1 request in N")
    p.add_argument("--max-seconds", type=float, default=6 * 3600)
    args = p.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
