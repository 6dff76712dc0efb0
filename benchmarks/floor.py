"""What a consumer costs per event before it does any work: a Faust agent against a plain loop.

``python -m benchmarks.floor --bootstrap HOST:PORT`` starts, one at a time, a consumer that does
nothing with its events and one that only forwards them to another topic, each as a Faust agent with
the router's settings (uvloop, at-least-once, the same session, heartbeat and commit intervals) and as
a plain confluent-kafka loop; offers each the same ~1 KiB events at fixed rates (20 and 100 events/s by
default) and prints the child's CPU per event and its idle cores as JSON lines. The router's own CPU
per event (``hookline bench --only curve``) is measured against these floors (README: Where the CPU
goes). Only loopback brokers are meant; nothing else is started.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson

__all__ = ["main"]

KINDS = ("faust-noop", "faust-relay", "plain-noop", "plain-relay")


def _faust_child(topic: str, bootstrap: str, relay: bool) -> None:
    import faust
    import mode.loop

    from processors.router.app import FAUST_OPTIONS

    mode.loop.use("uvloop")  # as the router (processors/router/_cmd.py)
    app = faust.App(
        f"floor-{topic}",
        broker=f"kafka://{bootstrap}",
        broker_client_id="hookline-floor",
        datadir=f"/tmp/hookline-floor-{topic}",
        **FAUST_OPTIONS,
    )
    src = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    out = app.topic(f"{topic}-out", key_serializer="raw", value_serializer="raw")

    @app.agent(src, name="floor")
    async def floor(stream: Any) -> None:
        async for event in stream.events():
            if relay:
                await out.send(key=event.message.key, value=event.message.value)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        if assigned:
            print("assigned", flush=True)

    # Started as the router starts its app (processors/router/_cmd.py): our logging at WARNING (so no
    # client's debug records are built), Faust's own logging setup, stdout and spinner left alone.
    logging.basicConfig(level=logging.WARNING)
    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, redirect_stdouts=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def _plain_child(topic: str, bootstrap: str, relay: bool) -> None:
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"floor-{topic}",
            "client.id": "hookline-floor",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})

    def assigned(_consumer: Any, parts: list[Any]) -> None:
        if parts:
            print("assigned", flush=True)

    consumer.subscribe([topic], on_assign=assigned)
    while True:
        for msg in consumer.consume(500, 0.0) or consumer.consume(1, 1.0):
            if msg.error() is None and relay:
                producer.produce(f"{topic}-out", key=msg.key(), value=msg.value())
        producer.poll(0)


def _measure(bootstrap: str, kind: str, rates: list[float], seconds: float, idle_seconds: float) -> None:
    """Run one kind of consumer at each rate and print a JSON line per rate."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from benchmarks.processes import cpu_seconds

    topic = f"hookline-floor-{kind}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 12, 1), NewTopic(f"{topic}-out", 12, 1)]).values():
        fut.result(30)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.floor",
            "--child",
            kind,
            "--topic",
            topic,
            "--bootstrap",
            bootstrap,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        # Blocks until the group assigned it partitions, or it died.
        for line in child.stdout:
            if line.strip().endswith("assigned"):
                break
        else:
            raise RuntimeError(f"{kind}: the consumer exited before it was assigned partitions")
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        time.sleep(3.0)  # let the group settle
        before, t0 = cpu_seconds(child.pid), time.monotonic()
        time.sleep(idle_seconds)
        idle = ((cpu_seconds(child.pid) or 0.0) - (before or 0.0)) / (time.monotonic() - t0)
        value = b"x" * 1000
        for rate in rates:
            n = max(1, round(rate * seconds))
            before, start = cpu_seconds(child.pid), time.monotonic()
            for i in range(n):  # open loop: event i is due i / rate seconds after the start
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.produce(topic, key=str(i % 10).encode(), value=value)
                producer.poll(0)
            producer.flush(10)
            time.sleep(1.0)  # the last events are consumed
            spent = (cpu_seconds(child.pid) or 0.0) - (before or 0.0)
            row = {"kind": kind, "rate": rate, "events": n, "cpu_us_per_event": round(spent / n * 1e6, 1)}
            row["idle_cores"] = round(idle, 4)
            print(orjson.dumps(row).decode(), flush=True)
    finally:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
        admin.delete_topics([topic, f"{topic}-out"])
        shutil.rmtree(f"/tmp/hookline-floor-{topic}", ignore_errors=True)  # the Faust agent's datadir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="a loopback broker, e.g. 127.0.0.1:9092")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--rates", default="20,100", help="events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="each fixed-rate run")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU is sampled this long")
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        relay = args.child.endswith("relay")
        (_faust_child if args.child.startswith("faust") else _plain_child)(args.topic, args.bootstrap, relay)
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        ap.error(f"unknown kinds: {', '.join(unknown)}")
    rates = [float(r) for r in args.rates.split(",")]
    for kind in kinds:
        print(f"[floor] {kind}: {', '.join(f'{r:g}' for r in rates)} events/s", file=sys.stderr, flush=True)
        _measure(args.bootstrap, kind, rates, args.seconds, args.idle_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
