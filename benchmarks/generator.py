"""The open-loop event generator: publishes bench events at a fixed rate, each stamped with its t0.

``python -m benchmarks.generator --bootstrap B --prefix P --run R --rate N --duration S
--accounts-file F --out O`` publishes ``rate * duration`` CONTACT_CREATED events (~1 KiB JSON body
once routed) to the prefixed contact-events topic, keyed by account, accounts taken in turn. Event
``seq`` is scheduled at ``start + seq / rate``; that time is its t0, written into the event (see
:mod:`benchmarks.traffic`) whether or not the generator manages to publish it on time. Falling behind
does not stretch the schedule (open loop); it shows up as publish lag, which is reported.
``--rate 0`` publishes as fast as possible (a backlog), t0 being the time of each publish.
``--contacts N`` makes each account's events go to N contacts in turn
(:func:`benchmarks.traffic.contact_ids`); by default every event is about a contact of its own.

The producer has the pipeline's own settings (:func:`hookline.clients.producer_config`:
idempotent, acks=all). The output JSON lists which sequence numbers the broker acknowledged:
the ledger counts only those as published.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.processes import cpu_seconds
from benchmarks.traffic import contact_ids, event_record

__all__ = ["main"]


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.generator", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--rate", type=float, required=True, help="events per second; 0: as fast as possible")
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--count", type=int, default=0, help="events to publish (default rate * duration)")
    p.add_argument("--accounts-file", required=True, help="JSON list of account ids, used in turn")
    p.add_argument("--contacts", type=int, default=0, help="contacts per account, in turn (0: one per event)")
    p.add_argument("--start", type=float, default=0.0, help="epoch seconds of the first t0 (default: now)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-seconds", type=float, default=600.0, help="hard bound on the whole run")
    args = p.parse_args(argv)

    from confluent_kafka import Producer

    from hookline.clients import producer_config
    from hookline.settings import load_settings
    from hookline.topics import CONTACT_EVENTS
    from schemas.codec import encode

    settings = load_settings({}, kafka_bootstrap=args.bootstrap, topic_prefix=args.prefix)
    accounts: list[str] = orjson.loads(Path(args.accounts_file).read_bytes())
    keys = [a.encode() for a in accounts]
    contact_of = contact_ids(accounts, args.contacts) if args.contacts > 0 else None
    topic = settings.topic(CONTACT_EVENTS)
    count = args.count or round(args.rate * args.duration)
    if count <= 0:
        raise SystemExit("nothing to publish: give --count or --rate and --duration")
    acked = bytearray(count)  # 1: acknowledged, 2: failed
    errors: dict[str, int] = {}

    def report(seq: int) -> Any:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                acked[seq] = 1
            else:
                acked[seq] = 2
                errors[err.name()] = errors.get(err.name(), 0) + 1

        return on_delivery

    producer = Producer(producer_config(settings, **{"client.id": "hookline-bench-generator"}))
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    start = args.start or time.time() + 0.05
    hard_deadline = time.monotonic() + args.max_seconds
    lags: list[float] = []
    cpu0 = cpu_seconds(os.getpid()) or 0.0
    attempted = 0
    next_progress = time.monotonic() + 2.0
    first_publish = last_publish = 0.0
    while attempted < count and time.monotonic() < hard_deadline:
        seq = attempted
        if interval:
            t0 = start + seq * interval
            ahead = t0 - time.time()
            if ahead > 0:
                producer.poll(0)
                time.sleep(ahead)
        now = time.time()
        if not interval:
            t0 = now
        lags.append(max(0.0, now - t0))
        contact = contact_of(seq) if contact_of is not None else None
        value = encode("Event", event_record(accounts[seq % len(accounts)], args.run, seq, t0, contact))
        while True:
            try:
                producer.produce(topic, key=keys[seq % len(keys)], value=value, on_delivery=report(seq))
                break
            except BufferError:
                producer.poll(0.01)
        if not first_publish:
            first_publish = now
        last_publish = now
        attempted += 1
        if attempted % 256 == 0:
            producer.poll(0)
            if time.monotonic() > next_progress:
                next_progress = time.monotonic() + 2.0
                print(
                    f"generator {args.run}: {attempted}/{count} published, lag {lags[-1] * 1000:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    end = time.time()
    left = producer.flush(max(5.0, min(60.0, hard_deadline - time.monotonic())))
    cpu = (cpu_seconds(os.getpid()) or 0.0) - cpu0
    result = {
        "run": args.run,
        "rate": args.rate,
        "count": count,
        "attempted": attempted,
        "cut_off": count - attempted,
        "unconfirmed": left,
        "start": start if interval else first_publish,
        "first_publish": first_publish,
        "last_publish": last_publish,
        "end": end,
        "achieved_rate": (attempted - 1) / (last_publish - first_publish) if attempted > 1 else 0.0,
        "lag_p50_s": _quantile(lags, 0.50),
        "lag_p99_s": _quantile(lags, 0.99),
        "lag_max_s": max(lags) if lags else 0.0,
        "errors": errors,
        "cpu_s": round(cpu, 3),
        "acked": [i for i in range(count) if acked[i] == 1],
    }
    Path(args.out).write_bytes(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
