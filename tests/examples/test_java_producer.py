"""The Java producer example (examples/java-producer) against the session broker.

Maven builds it (offline when the local repository already has every artifact, else online), and it
publishes one event of each kind with the test's topic prefix. Then (a) every record it wrote is read
back with the Python codec: single-object header with Event.avsc's fingerprint, the six types, the
expected fields, keyed by account on the partition hookline's own producer picks for that key; and
(b) with a webhook subscribed to all six, the real router and delivery worker deliver all six to a
receiver on 127.0.0.1, both signatures verified by the independent ``standardwebhooks`` package.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.payloads import build_payload
from hookline.settings import Settings
from hookline.webhooks import EVENT_TYPES
from schemas.codec import decode, fingerprint
from tests.processors.deliver.deliver_harness import Harness, verify
from tests.processors.deliver.receivers import Receiver
from tests.support import REPO, Role, TopicReader, role_env, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXAMPLE = REPO / "examples" / "java-producer"
JAR = EXAMPLE / "target" / "hookline-java-producer.jar"
ACCOUNT = "acct-java-42"


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


VIP = {"id": 7, "name": "vip"}
JAVA = {"id": 9, "name": "java"}


def _contact(tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": 1001, "email": "ada@example.com", "registeredAt": _ms("2024-06-01T12:00:00"),
        "locale": "en", "sourceURL": "https://example.com/signup",
        "unsubscribed": False, "bounced": False, "needsConfirmation": False,
        "fields": [{"fieldName": "First name", "slug": "first_name", "value": "Ada"}], "tags": tags,
    }  # fmt: skip


_SALE: dict[str, Any] = {
    "customer": {
        "id": 3001, "email": "grace@example.com", "paymentProcessor": "stripe", "sourceUrl": None,
        "fields": {"first_name": "Grace"},
    },
    "order": {"id": 5001, "totalPrice": 47.0, "createdAt": _ms("2024-06-01T12:30:00")},
    "pricePlan": {
        "id": 77, "name": "Pro monthly", "innerName": None, "currency": "EUR", "type": "subscription",
        "amount": 47.0,
    },
}  # fmt: skip
#: The payload the Java program sends for each type (SampleEvents.java), as the Python codec reads it.
EXPECTED: dict[str, dict[str, Any]] = {
    "CONTACT_CREATED": {"contact": _contact([VIP])},
    "CONTACT_TAG_ADDED": {"contact": _contact([VIP, JAVA]), "tag": JAVA},
    "CONTACT_TAG_REMOVED": {"contact": _contact([JAVA]), "tag": VIP},
    "CONTACT_OPT_IN": {
        "contact": _contact([VIP]),
        "funnelStep": {
            "id": 4,
            "name": "Squeeze page",
            "type": "optin",
            "funnel": {"id": 2, "name": "Launch"},
        },
    },
    "SALE_NEW": _SALE,
    "SALE_CANCELED": {
        **_SALE,
        "cancellation": {
            "reason": "subscription_canceled",
            "canceledAt": _ms("2024-07-01T00:00:00"),
            "originalOrderId": 5001,
        },
    },
}


def _topic(event_type: str) -> str:
    return "sale-events" if event_type.startswith("SALE_") else "contact-events"


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=EXAMPLE, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def java_producer() -> Path:
    """Build the example with Maven: offline when ~/.m2 has everything, else online (then cached there)."""
    mvn = shutil.which("mvn")
    if mvn is None or shutil.which("javac") is None:
        pytest.fail(
            "the Java example needs Maven and a Java 17+ JDK (README: Run it, test it; .ci/run installs both)"
        )
    offline = _run([mvn, "-B", "-q", "-o", "package"], timeout=600)
    if offline.returncode != 0:
        online = _run([mvn, "-B", "-q", "package"], timeout=900)
        assert online.returncode == 0, (
            f"mvn package failed offline:\n{offline.stdout[-2000:]}\nand online:\n{online.stdout[-6000:]}"
        )
    assert JAR.is_file() and (JAR.parent / "lib").is_dir()
    return JAR


@dataclass(frozen=True)
class Published:
    event_type: str
    event_id: str
    topic: str
    partition: int
    offset: int


def publish_with_java(jar: Path, settings: Settings) -> list[Published]:
    """Run the Java program once; the six events it reports as acknowledged."""
    java = shutil.which("java")
    assert java is not None
    proc = _run(
        [java, "-jar", str(jar), "--bootstrap", settings.kafka_bootstrap,
         "--topic-prefix", settings.topic_prefix, "--account", ACCOUNT],
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    out = []
    for line in proc.stdout.splitlines():
        event_type, event_id, topic, partition, offset = line.split()
        out.append(Published(event_type, event_id, topic, int(partition), int(offset)))
    return out


def read_back(settings: Settings, published: list[Published]) -> dict[str, Any]:
    """The records of ``published``, by event id, read from the event topics."""
    found: dict[str, Any] = {}
    for name in ("contact-events", "sale-events"):
        reader = TopicReader(settings, name)
        try:
            want = sum(p.topic == settings.topic(name) for p in published)
            for record in reader.wait_for(want, 60):
                found[decode(record.value(), "Event")["eventId"]] = record
        finally:
            reader.close()
    return found


def partition_of(settings: Settings, topic: str, key: bytes) -> int:
    """The partition hookline's own producer (murmur2, docs/architecture.md §3) picks for ``key``."""
    producer = Producer(producer_config(settings))
    got: list[int | None] = []
    producer.produce(
        settings.topic(topic),
        key=key,
        value=b"probe",
        on_delivery=lambda e, m: got.append(m.partition()),
    )
    assert producer.flush(30) == 0
    assert got[0] is not None
    return got[0]


def test_java_records_decode_with_the_python_codec(java_producer: Path, settings: Settings) -> None:
    started = int(time.time() * 1000)
    published = publish_with_java(java_producer, settings)
    finished = int(time.time() * 1000)
    assert [p.event_type for p in published] == list(EVENT_TYPES)
    assert [p.topic for p in published] == [settings.topic(_topic(p.event_type)) for p in published]

    records = read_back(settings, published)
    assert set(records) == {p.event_id for p in published}
    header = b"\xc3\x01" + fingerprint("Event")
    partitions = {
        name: partition_of(settings, name, ACCOUNT.encode()) for name in ("contact-events", "sale-events")
    }
    for p in published:
        record = records[p.event_id]
        assert (record.topic(), record.partition(), record.offset()) == (p.topic, p.partition, p.offset)
        assert record.key() == ACCOUNT.encode()
        assert record.partition() == partitions[_topic(p.event_type)], (
            "a key must land where librdkafka puts it"
        )
        value = record.value()
        assert value[:10] == header, f"{p.event_type}: header {value[:10].hex()} is not {header.hex()}"
        event = decode(value, "Event")
        assert started <= event.pop("occurredAt") <= finished
        assert event == {
            "eventId": p.event_id,
            "accountId": ACCOUNT,
            "source": "java-example",
            "schemaVersion": 1,
            "type": p.event_type,
            "payload": EXPECTED[p.event_type],
        }


@pytest.fixture
def harness(settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(settings, tmp_path)
    yield h
    h.close()


def test_java_events_are_delivered_and_signed(java_producer: Path, harness: Harness) -> None:
    with Receiver() as receiver:
        hook = harness.webhook("wh-java", receiver.url("/java"), account=ACCOUNT, events=EVENT_TYPES)
        port = free_port()
        router = Role(
            ["router"],
            role_env(harness.settings, HOOKLINE_ROUTER_METRICS_PORT=str(port)),
            harness.tmp_path / "router.log",
        )
        harness.roles.append(router.start())
        router.wait_ready(port, timeout=90)
        harness.worker()

        published = publish_with_java(java_producer, harness.settings)

        wait_until(
            lambda: len(receiver.got("/java")) >= 6, 90, "six deliveries of the Java events", interval=0.2
        )
        got = receiver.got("/java")
        # At least once: a redelivery would repeat a message id, never add a seventh message.
        assert len({g.headers["webhook-id"] for g in got}) == 6, [g.headers for g in got]
        by_type = {g.headers["x-webhook-event"]: g for g in got}
        assert set(by_type) == set(EVENT_TYPES)
        for p in published:
            delivery = by_type[p.event_type]
            verify(delivery, harness.secrets[hook.id])
            assert delivery.body == build_payload({"type": p.event_type, "payload": EXPECTED[p.event_type]})
        # The body a receiver gets, read as JSON without hookline's code: timestamps in RFC 3339.
        canceled = orjson.loads(by_type["SALE_CANCELED"].body)
        assert canceled["cancellation"] == {
            "reason": "subscription_canceled",
            "canceledAt": "2024-07-01T00:00:00.000Z",
            "originalOrderId": 5001,
        }
        assert orjson.loads(by_type["CONTACT_TAG_ADDED"].body)["tag"] == JAVA
