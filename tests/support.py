"""Shared test tools: waiting with a deadline, reading topics back, running roles as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from hookline.clients import consumer_config, producer_config
from hookline.settings import Settings
from hookline.webhooks import EVENT_TYPES, SealedSecret, Subscription, Webhook
from schemas.codec import decode, encode

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


#: Multiplies every deadline the shared wait helpers apply (``HOOKLINE_TEST_TIMEOUT_SCALE``, default 1):
#: on a slow or busy machine set it to 2 or 3 rather than editing deadlines. Periods in which something
#: must NOT happen are not deadlines and are not scaled.
TIMEOUT_SCALE_ENV = "HOOKLINE_TEST_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """The factor from ``HOOKLINE_TEST_TIMEOUT_SCALE`` (a positive number; 1 when unset or empty)."""
    raw = os.environ.get(TIMEOUT_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not 0 < scale < float("inf"):
        raise ValueError(f"{TIMEOUT_SCALE_ENV}={raw!r}: expected a positive number such as 2")
    return scale


def scaled(seconds: float) -> float:
    """A deadline of ``seconds``, stretched by :func:`timeout_scale`."""
    return seconds * timeout_scale()


def in_ci() -> bool:
    """The one rule for "are we in CI": ``CI`` is ``true``, ``1`` or ``yes`` (any case).

    In CI (``.ci/run`` exports ``CI=true``) a missing checker, tool or server is a broken setup and
    fails its tests; elsewhere those tests skip and say what to install.
    """
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose tool is missing, or fail it in CI (:func:`in_ci`)."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing tool fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``.

    ``timeout`` is a deadline for a condition, stretched by :func:`timeout_scale`.
    """
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what}")
        time.sleep(interval)


class TopicReader:
    """Read a whole topic from the beginning, incrementally, without a consumer group."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = settings.topic(topic)
        self.consumer = Consumer(consumer_config(settings, None, **{"enable.auto.commit": False}))

        def partitions() -> list[int]:
            # A topic created a moment ago may not be in this broker's metadata yet (docs/architecture.md
            # §9, pitfall 15): assigning its empty partition list would read nothing, forever.
            topic = self.consumer.list_topics(self.topic, timeout=scaled(60)).topics[self.topic]
            return sorted(topic.partitions) if topic.error is None else []

        parts = wait_until(partitions, 60, f"partitions of {self.topic} in the metadata")
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self.records: list[Any] = []

    def poll(self, seconds: float = 0.2) -> list[Any]:
        new = []
        deadline = time.monotonic() + seconds
        while True:
            msgs = self.consumer.consume(1000, max(0.0, min(0.1, deadline - time.monotonic())))
            for m in msgs:
                if m.error() is None:
                    new.append(m)
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(str(m.error()))
            if not msgs and time.monotonic() >= deadline:
                break
        self.records.extend(new)
        return new

    def wait_for(self, count: int, timeout: float) -> list[Any]:
        try:
            wait_until(lambda: self.poll() is not None and len(self.records) >= count, timeout, "")
        except AssertionError as exc:  # say how many came, not how many there were when it began
            raise AssertionError(f"{exc}{count} records on {self.topic} (have {len(self.records)})") from None
        return self.records

    def decoded(self, schema: str) -> list[dict[str, Any]]:
        return [decode(m.value(), schema) for m in self.records]

    def close(self) -> None:
        self.consumer.close()


def make_webhook(
    account_id: str,
    webhook_id: str,
    *,
    events: tuple[str, ...] = EVENT_TYPES,
    active: bool = True,
    version: int = 1,
    url: str = "https://receiver.example/hook",
    disabled: tuple[str, ...] = (),
) -> Webhook:
    now = int(time.time() * 1000)
    subs = tuple(
        Subscription(e, now if e in disabled else None, "test" if e in disabled else None) for e in events
    )
    return Webhook(
        id=webhook_id,
        account_id=account_id,
        name=f"hook {webhook_id}",
        url=url,
        secret=SealedSecret("test", b"\0" * 12, b"not-a-real-ciphertext"),
        subscriptions=subs,
        active=active,
        created_at=now,
        updated_at=now,
        version=version,
    )


class ConfigWriter:
    """Write WebhookConfig records (and tombstones) straight to the config topic."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic("webhook-config")
        self.producer = Producer(producer_config(settings))

    def put(self, hook: Webhook) -> None:
        self.producer.produce(
            self.topic, key=hook.id.encode(), value=encode("WebhookConfig", hook.to_record())
        )

    def delete(self, webhook_id: str) -> None:
        self.producer.produce(self.topic, key=webhook_id.encode(), value=None)

    def flush(self) -> None:
        assert self.producer.flush(scaled(60)) == 0


class Role:
    """A ``hookline <role>`` child process with its own environment and log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Role:
        full_env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hookline.cli", *self.args],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        return self

    def get(self, port: int, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def wait_ready(self, port: int, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.get(port, "/readyz")[0] == 200

        try:
            wait_until(ready, timeout, f"{self.args} ready on port {port}", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- log ---\n{self.log_tail()}") from None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def role_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        "HOOKLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "HOOKLINE_HOME": str(settings.home),
        "HOOKLINE_RETRY_SCHEDULE": ",".join(f"{d:g}" for d in settings.retry_schedule),
        "HOOKLINE_LOG_FORMAT": "text",
    }
    env.update(extra)
    return env


@contextmanager
def running(role: Role) -> Iterator[Role]:
    role.start()
    try:
        yield role
    finally:
        role.stop()


_CONTACT = {
    "id": 1,
    "email": "ada@example.com",
    "registeredAt": 1_700_000_000_000,
    "locale": "en",
    "sourceURL": "https://example.com/form",
    "unsubscribed": False,
    "bounced": False,
    "needsConfirmation": False,
    "fields": [{"fieldName": "First name", "slug": "first_name", "value": "Ada"}],
    "tags": [{"id": 7, "name": "vip"}],
}
_SALE = {
    "customer": {
        "id": 3,
        "email": "bob@example.com",
        "paymentProcessor": "stripe",
        "sourceUrl": None,
        "fields": {"first_name": "Bob"},
    },
    "order": {"id": 11, "totalPrice": 49.0, "createdAt": 1_700_000_000_000},
    "pricePlan": {
        "id": 5,
        "name": "Pro",
        "innerName": None,
        "currency": "EUR",
        "type": "subscription",
        "amount": 49.0,
    },
}


def event_record(
    account_id: str, event_type: str, event_id: str, occurred_at: int | None = None
) -> dict[str, Any]:
    """A valid Event record of the given type (fixed, small payloads)."""
    if event_type == "CONTACT_CREATED":
        payload: dict[str, Any] = {"contact": _CONTACT}
    elif event_type in ("CONTACT_TAG_ADDED", "CONTACT_TAG_REMOVED"):
        payload = {"contact": _CONTACT, "tag": {"id": 9, "name": "lead"}}
    elif event_type == "CONTACT_OPT_IN":
        payload = {
            "contact": _CONTACT,
            "funnelStep": {
                "id": 4,
                "name": "Squeeze",
                "type": "optin",
                "funnel": {"id": 2, "name": "Launch"},
            },
        }
    elif event_type == "SALE_NEW":
        payload = dict(_SALE)
    else:
        payload = {
            **_SALE,
            "cancellation": {"reason": "refunded", "canceledAt": 1_700_000_100_000, "originalOrderId": 11},
        }
    return {
        "eventId": event_id,
        "accountId": account_id,
        "occurredAt": occurred_at if occurred_at is not None else int(time.time() * 1000),
        "source": "tests",
        "schemaVersion": 1,
        "type": event_type,
        "payload": payload,
    }


class EventWriter:
    """Produce Event records keyed by account to the right event topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))

    def put(self, record: dict[str, Any]) -> None:
        topic = "sale-events" if record["type"].startswith("SALE") else "contact-events"
        self.producer.produce(
            self.settings.topic(topic), key=record["accountId"].encode(), value=encode("Event", record)
        )
        self.producer.poll(0)

    def raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.producer.produce(self.settings.topic(topic), key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(scaled(60)) == 0
