"""Steady load and its ledger for the fault tests: a paced event publisher that records what the
brokers acknowledged, and what the receiver (tests/processors/deliver/receivers.py) got, by message id."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from hookline.clients import producer_config
from hookline.settings import Settings
from hookline.signing import message_id
from schemas.codec import encode
from tests.processors.deliver.receivers import Got, Receiver, Reply
from tests.support import REPO, event_record

EVENT_TYPES = ("SALE_NEW", "CONTACT_CREATED", "CONTACT_TAG_ADDED", "SALE_CANCELED")

#: The fault tests' load: events per second, each going to the HOOKS_PER_ACCOUNT webhooks of its account.
#: 50 events/s times 2 = 100 deliveries/s across 20 webhooks is what stays steady on the 2-core
#: development machine next to the brokers, the roles and other work; HOOKLINE_FAULTS_RATE raises it.
RATE = float(os.environ.get("HOOKLINE_FAULTS_RATE", "50"))
ACCOUNTS = 10
HOOKS_PER_ACCOUNT = 2


def arrivals(receiver: Receiver) -> list[tuple[float, str]]:
    """(arrival time, message id) of every request the receiver answered, in arrival order."""
    return [(g.at, g.headers.get("webhook-id", "")) for g in receiver.got()]


def delivery_counts(receiver: Receiver) -> Counter[str]:
    return Counter(mid for _t, mid in arrivals(receiver))


def first_arrivals(receiver: Receiver) -> dict[str, float]:
    first: dict[str, float] = {}
    for t, mid in arrivals(receiver):
        first.setdefault(mid, t)
    return first


@dataclass
class Published:
    event_id: str
    account: str
    sent_at: float  # when it was handed to the producer
    acked_at: float | None = None
    error: str | None = None


@dataclass
class Load:
    """Publishes ``rate`` events per second, round-robin over ``accounts``, from a thread.

    The producer is the platform's (idempotent, acks=all) with a delivery timeout long enough to
    outlast the outages in the test: records wait in it while writes are stopped, and every record
    ends acknowledged or with an error (recorded, never ignored).
    """

    settings: Settings
    accounts: list[str]
    rate: float
    events: list[Published] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _producer: Any = None

    def start(self) -> Load:
        self._producer = Producer(
            producer_config(
                self.settings,
                # Brokers are killed on purpose: librdkafka's connection errors would flood the output.
                **{"client.id": "faults-load", "message.timeout.ms": 300_000, "log_level": 2},
            )
        )
        self._thread = threading.Thread(target=self._run, name="faults-load", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = 1.0 / self.rate
        start = time.monotonic()
        n = 0
        while not self._stop.is_set():
            due = start + n * interval
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            account = self.accounts[n % len(self.accounts)]
            kind = EVENT_TYPES[n % len(EVENT_TYPES)]
            pub = Published(f"ev-{uuid.uuid4().hex[:16]}", account, time.time())
            self.events.append(pub)
            topic = "sale-events" if kind.startswith("SALE") else "contact-events"
            self._producer.produce(
                self.settings.topic(topic),
                key=account.encode(),
                value=encode("Event", event_record(account, kind, pub.event_id)),
                on_delivery=lambda err, _msg, pub=pub: self._acked(pub, err),
            )
            self._producer.poll(0)
            n += 1

    @staticmethod
    def _acked(pub: Published, err: KafkaError | None) -> None:
        if err is None:
            pub.acked_at = time.time()
        else:
            pub.error = err.name()

    def stop(self, flush_timeout: float) -> int:
        """Stop publishing, wait for every acknowledgement; return the records still unacknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return int(self._producer.flush(flush_timeout))

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for p in list(self.events) if p.acked_at is not None and start <= p.acked_at < end)

    def acked_before(self, t: float) -> list[Published]:
        return [p for p in list(self.events) if p.acked_at is not None and p.acked_at < t]


def expected_messages(events: list[Published], hooks: dict[str, list[str]]) -> dict[str, Published]:
    """Every acknowledged event times each webhook of its account: message id -> the event."""
    return {
        message_id(p.event_id, wid): p for p in events if p.acked_at is not None for wid in hooks[p.account]
    }


def drained_seconds(
    expected: dict[str, Published], first_arrivals: dict[str, float], fault_at: float, back_at: float
) -> float | None:
    """Seconds from ``fault_at`` until the last message of an event published between ``fault_at`` and
    ``back_at`` (the outage) arrived; None while one of them is missing."""
    during = [m for m, e in expected.items() if fault_at <= e.sent_at < back_at]
    if any(m not in first_arrivals for m in during):
        return None
    return max((first_arrivals[m] for m in during), default=fault_at) - fault_at


def settled_seconds(
    expected: dict[str, Published],
    first_arrivals: dict[str, float],
    fault_at: float,
    until: float,
    threshold: float,
) -> float:
    """Seconds from ``fault_at`` until the last arrival of a message that took longer than ``threshold``
    (publish to arrival) among the events published between ``fault_at`` and ``until``: from then on,
    every message arrived within ``threshold``. 0 if none was slower."""
    slow = [
        first_arrivals[m]
        for m, e in expected.items()
        if fault_at <= e.sent_at < until and first_arrivals[m] - e.sent_at > threshold
    ]
    return max(slow, default=fault_at) - fault_at


def recovery_seconds(
    first_arrivals: Iterable[float], fault_at: float, per_second: float, window: int = 3, share: float = 0.9
) -> float | None:
    """Seconds from ``fault_at`` to the start of the first ``window`` whole seconds in a row in each of
    which at least ``share * per_second`` new messages arrived; None if that never happened."""
    buckets = Counter(int(t - fault_at) for t in first_arrivals if t >= fault_at)
    last = max(buckets, default=-1)
    for s in range(0, last - window + 2):
        if all(buckets.get(s + k, 0) >= share * per_second for k in range(window)):
            return float(s)
    return None


class Answers:
    """A receiver behaviour that keeps the ledger of what was delivered: 500 to the first request of
    ``fail_share`` of the messages (chosen by message id, so a retry delivers them), 200 to the rest;
    per message id, how many requests were answered 200 and when the first one arrived."""

    def __init__(self, fail_share: float = 0.0) -> None:
        self.fail_share = fail_share
        self._lock = threading.Lock()
        self._requested: set[str] = set()
        self._delivered: dict[str, list[float]] = {}

    def __call__(self, n: int, got: Got) -> Reply:
        mid = got.headers.get("webhook-id", "")
        with self._lock:
            first_request = mid not in self._requested
            self._requested.add(mid)
            if first_request and zlib.crc32(mid.encode()) % 10_000 < self.fail_share * 10_000:
                return Reply(500)
            self._delivered.setdefault(mid, []).append(got.at)
        return Reply(200)

    def delivered(self) -> Counter[str]:
        with self._lock:
            return Counter({m: len(times) for m, times in self._delivered.items()})

    def first(self) -> dict[str, float]:
        with self._lock:
            return {m: times[0] for m, times in self._delivered.items()}

    def duplicated(self) -> dict[str, list[float]]:
        """Arrival times of the 200s of every message answered 200 more than once."""
        with self._lock:
            return {m: list(times) for m, times in self._delivered.items() if len(times) > 1}


def ledger(expected: Iterable[str], delivered: Counter[str]) -> dict[str, Any]:
    """Lost (never answered 200), delivered, duplicates (200s after the first) of ``expected``."""
    wanted = set(expected)
    duplicates = sum(delivered[m] - 1 for m in wanted if delivered[m] > 1)
    return {
        "messages": len(wanted),
        "lost": sum(1 for m in wanted if delivered[m] == 0),
        "duplicates": duplicates,
        "duplicate_share": round(duplicates / max(1, len(wanted)), 4),
    }


def caught_up(
    load: Load, hooks: dict[str, list[str]], first_arrivals: dict[str, float], threshold: float
) -> bool:
    """Every event acknowledged 2 s ago or earlier reached all its webhooks, and each of those published
    in the 5 s before that within ``threshold``: the pipeline keeps up."""
    now = time.time()
    want = expected_messages(load.acked_before(now - 2), hooks)
    if not set(want) <= set(first_arrivals):
        return False
    recent = [first_arrivals[m] - e.sent_at for m, e in want.items() if e.sent_at >= now - 7]
    return bool(recent) and max(recent) <= threshold


def steady_p99(
    load: Load, hooks: dict[str, list[str]], first_arrivals: dict[str, float], seconds: float
) -> float:
    """p99 of publish -> first arrival over the events published in the ``seconds`` before the last 2 s."""
    now = time.time()
    spans = sorted(
        first_arrivals[m] - e.sent_at
        for m, e in expected_messages(load.acked_before(now - 2), hooks).items()
        if e.sent_at >= now - 2 - seconds and m in first_arrivals
    )
    return spans[int(len(spans) * 0.99)] if spans else 0.0


def report(scenario: str, figures: dict[str, Any], load: Load, tmp_path: Path, **raw: Any) -> None:
    """Print the figures and write them to ``test-artifacts/faults/<scenario>.json`` and the test's tmp
    dir, with the raw timings (every event, and ``raw``) in ``raw.json`` there."""
    text = json.dumps(figures, indent=2)
    print(f"\n{scenario.replace('_', ' ')} figures:\n{text}")
    for path in (REPO / "test-artifacts" / "faults" / f"{scenario}.json", tmp_path / "figures.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    events = [[e.event_id, e.account, e.sent_at, e.acked_at] for e in load.events]
    (tmp_path / "raw.json").write_text(json.dumps({"events": events, **raw}))
