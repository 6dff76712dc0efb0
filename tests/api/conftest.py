"""A real management API for tests: uvicorn on 127.0.0.1 in a thread, against the session broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from api import create_app
from api._cmd import server_config
from hookline.clients import create_topics
from hookline.local.ports import free_port
from hookline.sealing import generate_key
from hookline.settings import Secret, Settings, load_settings
from hookline.topics import CONFIG, all_topics
from tests.support import scaled, wait_until

KEY_A = "key-a-" + "a1" * 16
KEY_B = "key-b-" + "b2" * 16
KEYS = {"acct-a": KEY_A, "acct-b": KEY_B}


@dataclass
class RunningApi:
    settings: Settings
    base_url: str
    registry: CollectorRegistry
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, api_key: str | None = KEY_A, headers: dict[str, str] | None = None) -> httpx.Client:
        sent = {"X-API-Key": api_key} if api_key else {}
        sent.update(headers or {})
        c = httpx.Client(base_url=self.base_url, headers=sent, timeout=30.0)
        self.clients.append(c)
        return c

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "API server did not stop"


def api_settings(base: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_keys": Secret(",".join(f"{acct}:{key}" for acct, key in KEYS.items())),
        "secret_key": Secret(generate_key("test")),
        "allow_networks": ("127.0.0.0/8",),
    }
    values.update(overrides)
    return base.replace(**values)


def wait_for_config_topic(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until every partition of the config topic answers: fresh topics elect leaders lazily."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "unused"})
    topic = settings.topic(CONFIG)

    def answers() -> bool:
        md = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            return False
        try:
            for p in md.partitions:
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
        except KafkaException:
            return False
        return True

    try:
        wait_until(answers, timeout, f"leaders for {topic}", interval=0.01)
    finally:
        consumer.close()


def start_api(settings: Settings) -> RunningApi:
    wait_for_config_topic(settings)
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, settings))
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    running = RunningApi(settings, f"http://127.0.0.1:{port}", registry, server, thread)
    probe = httpx.Client(base_url=running.base_url, timeout=2.0)
    running.clients.append(probe)

    def ready() -> bool:
        if not thread.is_alive():
            raise AssertionError("API server thread ended during start-up")
        try:
            return probe.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 60.0, "the API to become ready", interval=0.01)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture
def make_api(settings: Settings) -> Iterator[Callable[..., RunningApi]]:
    """Start an API on this test's topics; keyword arguments override settings fields."""
    started: list[RunningApi] = []

    def make(**overrides: Any) -> RunningApi:
        api = start_api(api_settings(settings, **overrides))
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def api(make_api: Callable[..., RunningApi]) -> RunningApi:
    return make_api()


@pytest.fixture(scope="module")
def module_api(kafka_bootstrap: str) -> Iterator[RunningApi]:
    """One API for a whole module (read-mostly tests), on a topic prefix of its own."""
    base = load_settings({}, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"m{uuid.uuid4().hex[:10]}.")
    create_topics(base, [s for s in all_topics(base) if s.name == CONFIG])
    api = start_api(api_settings(base, allow_networks=()))  # no allow-list: every private form refused
    yield api
    api.stop()


def read_config_topic(settings: Settings, timeout: float = 60.0) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on the config topic up to its current end, in offset order per partition."""
    topic = settings.topic(CONFIG)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        parts = sorted(consumer.list_topics(topic, timeout=scaled(30)).topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=scaled(30))[1] for p in parts
        }
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        records: list[tuple[bytes | None, bytes | None]] = []
        limit = scaled(timeout)
        deadline = time.monotonic() + limit
        while todo:
            assert time.monotonic() < deadline, f"config topic not read to its end within {limit:g}s"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is None:
                records.append((msg.key(), msg.value()))
            err = msg.error()
            at_end = (msg.offset() or 0) + 1 >= ends[msg.partition()]
            if (err is None and at_end) or (err is not None and err.code() == KafkaError._PARTITION_EOF):
                todo.discard(msg.partition())
        return records
    finally:
        consumer.close()
