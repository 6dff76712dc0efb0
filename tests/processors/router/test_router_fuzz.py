"""Bad input at scale through a real router on the real broker (issue 16, point 3).

30,000 fuzzed event records (truncated, bit-flipped, wrong magic or fingerprint, valid Avro of another
schema, a string length of terabytes, random bytes, tombstones, valid events under a wrong key, a few
valid events with huge strings) interleaved with 6,000 valid events, from a seeded RNG. What each
record must become is decided before it is sent: a fuzzed record that still decodes (a flipped bit in
a string) is a valid event and must be routed by its own ``accountId``; every other one must be in
``webhook-dlq`` exactly once, with the codec's reason (``tombstone`` for a null value). A wrong key
never decides where an event goes: the account inside it does.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.records import DeliveryTask
from hookline.settings import Settings
from hookline.webhooks import EVENT_TYPES
from schemas.codec import CodecError, decode, encode
from tests.support import (
    ConfigWriter,
    Role,
    TopicReader,
    event_record,
    make_webhook,
    role_env,
    scaled,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEED = 16
#: Events occur at fixed times from here, so that the same seed makes the same bytes on every run.
EPOCH_MS = 1_780_000_000_000
FUZZED = 30_000
VALID_EVERY = 5  # one valid event after every 5 fuzzed records: 6,000 valid
ACCOUNTS = [f"fz-acct-{i}" for i in range(5)]
#: What a fuzzed record is made as (the weights sum to 100).
KINDS = {
    "truncated": 15,
    "bit_flip": 20,
    "wrong_magic": 5,
    "wrong_fingerprint": 10,
    "other_schema": 10,
    "huge_length": 10,
    "random_bytes": 5,
    "header_then_garbage": 5,
    "tombstone": 5,
    "wrong_key": 14,
    "huge_valid": 1,
}


def _topic(event_type: str) -> str:
    return "sale-events" if event_type.startswith("SALE") else "contact-events"


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Fuzzer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0
        self.event_header = encode("Event", event_record("x", "SALE_NEW", "x"))[:10]
        hook = make_webhook("fz-acct-0", "fz-hook-x")
        task = DeliveryTask.for_webhook(
            hook, event_id="e", event_type="SALE_NEW", occurred_at=0, payload=b"{}", now_ms=0
        )
        self.others = [encode("WebhookConfig", hook.to_record()), task.encode()]

    def valid(self, prefix: str = "ev") -> tuple[str, bytes, bytes]:
        """(topic, key, value) of a valid event."""
        self.n += 1
        account = self.rng.choice(ACCOUNTS)
        event_type = self.rng.choice(EVENT_TYPES)
        value = encode(
            "Event", event_record(account, event_type, f"{prefix}-{self.n:06d}", EPOCH_MS + self.n)
        )
        return _topic(event_type), account.encode(), value

    def fuzzed(self) -> tuple[str, str, bytes | None, bytes | None]:
        """(kind, topic, key, value) of one fuzzed record."""
        rng = self.rng
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        topic, key, value = self.valid("fz")
        out: bytes | None = value
        if kind == "truncated":
            out = value[: rng.randrange(1, len(value))]
        elif kind == "bit_flip":
            flipped = bytearray(value)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(flipped))
                flipped[i] ^= 1 << rng.randrange(8)
            out = bytes(flipped)
        elif kind == "wrong_magic":
            magic = bytes([rng.randrange(256), rng.randrange(256)])
            out = (magic if magic != b"\xc3\x01" else b"\xc3\x02") + value[2:]
        elif kind == "wrong_fingerprint":
            out = value[:2] + rng.randbytes(8) + value[10:]
        elif kind == "other_schema":
            out = rng.choice(self.others)
        elif kind == "huge_length":
            # The eventId's length says terabytes (up to 2^62 bytes); a few bytes follow.
            out = (
                self.event_header
                + _zigzag_varint(rng.randrange(2**40, 2**62))
                + rng.randbytes(rng.randrange(64))
            )
        elif kind == "random_bytes":
            out = rng.randbytes(rng.randrange(1, 512))
        elif kind == "header_then_garbage":
            out = self.event_header + rng.randbytes(rng.randrange(0, 512))
        elif kind == "tombstone":
            out = None
        elif kind == "wrong_key":
            key = rng.choice([b"", b"\x00\xff" * 8, b"someone-else", rng.choice(ACCOUNTS).encode(), None])  # type: ignore[list-item]
        elif kind == "huge_valid":
            account = rng.choice(ACCOUNTS)
            record = event_record(account, "CONTACT_CREATED", f"huge-{self.n:06d}", EPOCH_MS + self.n)
            record["payload"]["contact"] = {**record["payload"]["contact"], "locale": "x" * 100_000}
            out = encode("Event", record)
            topic, key = _topic("CONTACT_CREATED"), account.encode()
        return kind, topic, key, out


def expected_outcome(value: bytes | None) -> tuple[str, dict[str, Any] | None]:
    """("routed", event) or (the DLQ reason, None), decided before the record is sent."""
    if value is None:
        return "tombstone", None
    try:
        return "routed", decode(value, "Event")
    except CodecError as exc:
        return exc.reason, None


@pytest.fixture
def router(settings: Settings, tmp_path: Path) -> Iterator[Role]:
    cfg = ConfigWriter(settings)
    for i, account in enumerate(ACCOUNTS):
        cfg.put(make_webhook(account, f"fz-hook-{i}"))
    cfg.flush()
    port = free_port()
    role = Role(
        ["router"], role_env(settings, HOOKLINE_ROUTER_METRICS_PORT=str(port)), tmp_path / "router.log"
    )
    role.start()
    try:
        role.wait_ready(port, timeout=90)
        yield role
    finally:
        role.stop()


def test_thirty_thousand_fuzzed_records_each_dead_lettered_once_with_its_reason_or_routed(
    settings: Settings, router: Role
) -> None:
    rng = random.Random(SEED)
    fuzzer = Fuzzer(rng)
    hooks = {account: f"fz-hook-{i}" for i, account in enumerate(ACCOUNTS)}
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    # Index of each record -> (topic, partition, offset), from the delivery reports.
    placed: dict[int, tuple[str, int, int]] = {}
    expected_letters: dict[int, str] = {}
    expected_tasks: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    bad_by_kind: Counter[str] = Counter()

    def report(index: int) -> Any:
        def done(err: Any, msg: Any) -> None:
            assert err is None, err
            placed[index] = (msg.topic(), msg.partition(), msg.offset())

        return done

    def produce(index: int, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                producer.produce(settings.topic(topic), key=key, value=value, on_delivery=report(index))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)

    started = time.monotonic()
    index = 0
    for i in range(FUZZED):
        kind, topic, key, value = fuzzer.fuzzed()
        kinds[kind] += 1
        outcome, event = expected_outcome(value)
        if event is None:
            expected_letters[index] = outcome
            bad_by_kind[kind] += 1
        elif event["accountId"] in hooks:
            expected_tasks[(event["eventId"], hooks[event["accountId"]])] += 1
        produce(index, topic, key, value)
        index += 1
        if i % VALID_EVERY == VALID_EVERY - 1:
            topic, key, value = fuzzer.valid()
            event = decode(value, "Event")
            expected_tasks[(event["eventId"], hooks[event["accountId"]])] += 1
            produce(index, topic, key, value)
            index += 1
    assert producer.flush(scaled(60)) == 0
    produced = time.monotonic() - started
    total = index
    assert len(placed) == total
    # What the generator promised: these kinds can never decode as an Event.
    for kind in ("truncated", "wrong_magic", "wrong_fingerprint", "other_schema", "tombstone"):
        assert bad_by_kind[kind] == kinds[kind], (kind, bad_by_kind[kind], kinds[kind])
    assert bad_by_kind["wrong_key"] == bad_by_kind["huge_valid"] == 0

    letters_reader = TopicReader(settings, "webhook-dlq")
    tasks_reader = TopicReader(settings, "webhook-deliveries")
    want_tasks = sum(expected_tasks.values())

    def all_there() -> bool:
        letters_reader.poll(0.2)
        tasks_reader.poll(0.2)
        return (
            len(letters_reader.records) >= len(expected_letters) and len(tasks_reader.records) >= want_tasks
        )

    wait_until(
        all_there,
        180,
        f"{len(expected_letters)} dead letters and {want_tasks} tasks "
        f"(have {len(letters_reader.records)} and {len(tasks_reader.records)})",
    )
    routed_in = time.monotonic() - started
    # Nothing more comes: each bad record is dead-lettered once, each valid one routed once.
    letters_reader.poll(2.0)
    tasks_reader.poll(0.5)
    assert router.proc is not None and router.proc.poll() is None, "the router stopped"

    by_source = {placed[i]: (i, reason) for i, reason in expected_letters.items()}
    seen: Counter[tuple[str, int, int]] = Counter()
    reasons: Counter[str] = Counter()
    for letter in letters_reader.decoded("DeadLetter"):
        source = (letter["sourceTopic"], letter["sourcePartition"], letter["sourceOffset"])
        seen[source] += 1
        assert source in by_source, (
            f"a record that is not bad was dead-lettered: {letter['reason']} at {source}"
        )
        assert letter["stage"] == "router"
        assert letter["reason"] == by_source[source][1], (source, letter["reason"], by_source[source][1])
        reasons[letter["reason"]] += 1
    assert set(seen) == set(by_source), f"{len(set(by_source) - set(seen))} bad records not dead-lettered"
    assert max(seen.values()) == 1, "a record was dead-lettered twice"
    assert "internal_error" not in reasons

    routed = Counter((t["eventId"], t["webhookId"]) for t in tasks_reader.decoded("DeliveryTask"))
    missing, unexpected = expected_tasks - routed, routed - expected_tasks
    assert routed == expected_tasks, f"missing {sum(missing.values())}, unexpected {sum(unexpected.values())}"
    print(
        f"\n{total} records ({FUZZED} fuzzed: {dict(kinds)}), {len(expected_letters)} dead-lettered "
        f"({dict(reasons)}; bit flips still valid: {kinds['bit_flip'] - bad_by_kind['bit_flip']}), "
        f"{want_tasks} tasks routed; produced in {produced:.1f} s, all routed or "
        f"dead-lettered {routed_in:.1f} s after the first record"
    )
    # Still running: one more event is routed.
    writer_value = encode("Event", event_record(ACCOUNTS[0], "SALE_NEW", "after-the-fuzz"))
    produce(total, "sale-events", ACCOUNTS[0].encode(), writer_value)
    assert producer.flush(scaled(60)) == 0
    wait_until(
        lambda: (
            tasks_reader.poll(0.2) is not None
            and any(
                decode(m.value(), "DeliveryTask")["eventId"] == "after-the-fuzz"
                for m in tasks_reader.records[-50:]
            )
        ),
        60,
        "routing after the fuzz",
    )
    letters_reader.close()
    tasks_reader.close()
