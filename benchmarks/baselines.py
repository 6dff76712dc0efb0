"""Raw loops the pipeline is compared with, each run in its own process by the bench.

``python -m benchmarks.baselines <kind> ...`` prints one JSON line with its figures:

- ``http``: a closed POST loop of ~1 KiB signed bodies to the sink, with aiohttp or httpx (the
  client as it comes, default pool), ``--concurrency`` requests in flight;
- ``consume``: a confluent-kafka batched consume loop over a pre-filled topic (what the worker's
  consumer could read at most);
- ``relay``: a plain consume -> produce loop (what the router could do with no work per event);
- ``ping``: produce one record and wait for a consumer to read it, one at a time (the broker's
  own latency floor with the pipeline's producer settings).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import time
import uuid
from typing import Any

import orjson

from benchmarks.processes import cpu_seconds
from benchmarks.traffic import body_template, format_mark, webhook_secret
from hookline.signing import hmac_key

__all__ = ["main"]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class _Bodies:
    """Bodies with a fresh mark each, signed as the worker signs them (hex HMAC)."""

    def __init__(self, run: str, seed: str, webhook_id: str) -> None:
        template = body_template()
        self.mark = format_mark("template", 0, 0.0).encode()
        self.prefix, self.suffix = template.split(self.mark)
        self.key = hmac_key(webhook_secret(seed, webhook_id))
        self.run = run
        self.seq = 0

    def next(self) -> tuple[bytes, dict[str, str]]:
        self.seq += 1
        body = self.prefix + format_mark(self.run, self.seq, time.time()).encode() + self.suffix
        sig = hmac.new(self.key, body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": "application/json", "X-Webhook-Signature": sig}


async def _http_loop(args: argparse.Namespace) -> dict[str, Any]:
    bodies = _Bodies(args.run, args.seed, args.webhook)
    url = f"{args.url}/hook/{args.webhook}"
    done = errors = 0
    deadline = time.monotonic() + args.duration
    limit = args.max_requests

    async def worker_aiohttp(session: Any) -> None:
        nonlocal done, errors
        while time.monotonic() < deadline and done + errors < limit:
            body, headers = bodies.next()
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
                    else:
                        errors += 1
            except Exception:
                errors += 1

    async def worker_httpx(client: Any) -> None:
        nonlocal done, errors
        while time.monotonic() < deadline and done + errors < limit:
            body, headers = bodies.next()
            try:
                r = await client.post(url, content=body, headers=headers)
                if r.status_code == 200:
                    done += 1
                else:
                    errors += 1
            except Exception:
                errors += 1

    cpu0 = cpu_seconds(os.getpid()) or 0.0
    started = time.monotonic()
    if args.client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker_aiohttp(session) for _ in range(args.concurrency)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
            await asyncio.gather(*(worker_httpx(client) for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    cpu = (cpu_seconds(os.getpid()) or 0.0) - cpu0
    return {
        "client": args.client,
        "concurrency": args.concurrency,
        "requests": done,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "rps": done / elapsed if elapsed > 0 else 0.0,
        "client_cpu_s": round(cpu, 3),
        "client_cpu_us_per_request": round(cpu / done * 1e6, 1) if done else None,
    }


def _settings(args: argparse.Namespace) -> Any:
    from hookline.settings import load_settings

    return load_settings({}, kafka_bootstrap=args.bootstrap)


def _task_value() -> bytes:
    """A DeliveryTask record as the router writes it (~1 KiB payload inside)."""
    from hookline.records import DeliveryTask

    now_ms = int(time.time() * 1000)
    return DeliveryTask(
        message_id="msg_" + "a" * 32,
        event_id=str(uuid.uuid4()),
        webhook_id="wh-bench",
        account_id="acct-bench",
        event_type="CONTACT_CREATED",
        event_occurred_at=now_ms,
        routed_at=now_ms,
        config_version=1,
        payload=body_template(),
    ).encode()


def _fill(args: argparse.Namespace) -> None:
    from confluent_kafka import Producer

    from hookline.clients import producer_config

    producer = Producer(producer_config(_settings(args), **{"client.id": "hookline-bench-fill"}))
    value = _task_value()
    for i in range(args.count):
        while True:
            try:
                producer.produce(args.topic, key=f"wh-{i % 64}".encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("could not fill the consume topic")


def _consume(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Consumer

    from hookline.clients import consumer_config

    _fill(args)
    conf = consumer_config(_settings(args), None, **{"group.id": f"bench-consume-{uuid.uuid4().hex[:8]}"})
    consumer = Consumer(conf)
    consumer.subscribe([args.topic])
    got = 0
    first = last = None
    cpu0 = cpu_seconds(os.getpid()) or 0.0
    deadline = time.monotonic() + args.timeout
    while got < args.count and time.monotonic() < deadline:
        msgs = consumer.consume(500, 0.2)
        for m in msgs:
            if m.error() is None:
                got += 1
        if msgs and first is None:
            first = time.monotonic()
        if msgs:
            last = time.monotonic()
    cpu = (cpu_seconds(os.getpid()) or 0.0) - cpu0
    consumer.close()
    elapsed = (last - first) if first is not None and last is not None else 0.0
    return {
        "messages": got,
        "expected": args.count,
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": got / elapsed if elapsed > 0 else 0.0,
        "cpu_s": round(cpu, 3),
    }


def _relay(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer

    from hookline.clients import consumer_config, producer_config

    settings = _settings(args)
    consumer = Consumer(
        consumer_config(settings, None, **{"group.id": f"bench-relay-{uuid.uuid4().hex[:8]}"})
    )
    producer = Producer(producer_config(settings, **{"client.id": "hookline-bench-relay"}))
    consumer.subscribe(args.source.split(","))
    got = 0
    first: float | None = None
    cpu0 = cpu_seconds(os.getpid()) or 0.0
    deadline = time.monotonic() + args.timeout
    while got < args.count and time.monotonic() < deadline:
        for m in consumer.consume(500, 0.2):
            if m.error() is not None:
                continue
            if first is None:
                first = time.monotonic()
            got += 1
            while True:
                try:
                    producer.produce(args.topic, key=m.key(), value=m.value())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(30)
    last = time.monotonic()
    cpu = (cpu_seconds(os.getpid()) or 0.0) - cpu0
    consumer.close()
    elapsed = last - first if first is not None else 0.0
    return {
        "events": got,
        "expected": args.count,
        "unacknowledged": left,
        "elapsed_s": round(elapsed, 3),
        "events_per_s": got / elapsed if elapsed > 0 else 0.0,
        "cpu_s": round(cpu, 3),
    }


def _ping(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    from hookline.clients import consumer_config, producer_config

    settings = _settings(args)
    producer = Producer(producer_config(settings, **{"client.id": "hookline-bench-ping"}))
    consumer = Consumer(consumer_config(settings, None, **{"fetch.wait.max.ms": 100}))
    consumer.assign([TopicPartition(args.topic, 0, OFFSET_END)])
    # Let the consumer reach the end before the first ping.
    consumer.poll(1.0)
    rtts: list[float] = []
    deadline = time.monotonic() + args.timeout
    for i in range(args.count):
        if time.monotonic() > deadline:
            break
        token = f"ping-{i}".encode()
        sent = time.perf_counter()
        producer.produce(args.topic, partition=0, value=token)
        producer.poll(0)
        while time.monotonic() < deadline:
            # poll(), not consume(n): a batch consume waits until n records or the timeout.
            m = consumer.poll(0.5)
            if m is not None and m.error() is None and m.value() == token:
                rtts.append(time.perf_counter() - sent)
                break
            producer.poll(0)
    producer.flush(10)
    consumer.close()
    return {
        "pings": len(rtts),
        "p50_s": _percentile(rtts, 0.50),
        "p99_s": _percentile(rtts, 0.99),
        "max_s": max(rtts) if rtts else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.baselines", description=__doc__)
    sub = p.add_subparsers(dest="kind", required=True)
    h = sub.add_parser("http")
    h.add_argument("--client", choices=("aiohttp", "httpx"), required=True)
    h.add_argument("--url", required=True, help="the sink, http://127.0.0.1:PORT")
    h.add_argument("--seed", required=True)
    h.add_argument("--webhook", default="raw-client")
    h.add_argument("--run", required=True)
    h.add_argument("--concurrency", type=int, default=16)
    h.add_argument("--duration", type=float, default=5.0)
    h.add_argument("--max-requests", type=int, default=1_000_000)
    for name in ("consume", "relay", "ping"):
        k = sub.add_parser(name)
        k.add_argument("--bootstrap", required=True)
        k.add_argument("--topic", required=True)
        k.add_argument("--count", type=int, default=10_000)
        k.add_argument("--timeout", type=float, default=120.0)
        if name == "relay":
            k.add_argument("--source", required=True, help="topics to read, comma-separated")
    args = p.parse_args(argv)
    if args.kind == "http":
        result = asyncio.run(_http_loop(args))
    elif args.kind == "consume":
        result = _consume(args)
    elif args.kind == "relay":
        result = _relay(args)
    else:
        result = _ping(args)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
