"""Kafka client adapters: waiting for a broker quietly, consumer lag from (high watermark, position) pairs,
waiting until created topics have leaders that answer."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import time
import types
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from hookline.clients import (
    TopicsNotVisible,
    admin_client,
    create_topics,
    records_behind,
    wait_for_broker,
    wait_topics_ready,
)
from hookline.local.ports import free_port
from hookline.settings import Settings
from hookline.topics import TopicSpec
from tests.support import REPO, scaled

_WAIT = """
import sys
from hookline.clients import BrokerUnavailable, wait_for_broker
from hookline.settings import load_settings
try:
    wait_for_broker(load_settings({}, kafka_bootstrap=sys.argv[1]), timeout=2.0)
except BrokerUnavailable as exc:
    print("unavailable:", exc)
"""


def test_waiting_for_an_absent_broker_prints_no_client_noise() -> None:
    """No librdkafka client exists while nothing listens: no "Connection refused" lines on the screen."""
    bootstrap = f"127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-c", _WAIT, bootstrap], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"unavailable: Kafka at {bootstrap} did not answer within 2s")
    assert out.stderr == ""


@pytest.mark.kafka
def test_waiting_for_a_running_broker_returns(settings: Settings) -> None:
    wait_for_broker(settings, timeout=scaled(60))


def test_records_behind_sums_known_partitions_only() -> None:
    assert records_behind([(10, 4), (7, 7), (5, 9)]) == 6  # a position past the mark counts 0
    assert records_behind([(-1, 3), (8, -1001), (None, 2), (4, None)]) == 0  # not known yet
    assert records_behind([]) == 0


class _Admin:
    """Metadata and offsets answers as a broker gives them while it applies a topic's creation."""

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages  # one per list_topics call: absent, error, leaderless, unanswered, ready
        self.calls = 0

    def _stage(self) -> str:
        return self.stages[min(self.calls - 1, len(self.stages) - 1)]

    def list_topics(self, timeout: float) -> Any:
        self.calls += 1
        stage = self._stage()
        if stage == "absent":
            return types.SimpleNamespace(topics={})
        error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART) if stage == "error" else None
        leader = -1 if stage == "leaderless" else 1
        parts = {p: types.SimpleNamespace(leader=leader) for p in range(3)}
        return types.SimpleNamespace(topics={"t": types.SimpleNamespace(error=error, partitions=parts)})

    def list_offsets(self, specs: dict[Any, Any], request_timeout: float) -> dict[Any, Any]:
        futures = {}
        for tp in specs:
            f: concurrent.futures.Future[Any] = concurrent.futures.Future()
            if self._stage() == "unanswered":
                f.set_exception(KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)))
            else:
                f.set_result(types.SimpleNamespace(offset=0))
            futures[tp] = f
        return futures


def test_created_topics_are_waited_for_until_every_partition_has_a_leader_that_answers() -> None:
    admin = _Admin(["absent", "error", "leaderless", "unanswered", "ready"])
    wait_topics_ready(admin, {"t": 3}, timeout=30)  # type: ignore[arg-type]
    assert admin.calls == 5


def test_topics_that_never_become_ready_end_in_a_clear_error() -> None:
    admin = _Admin(["unanswered"])
    started = time.monotonic()
    with pytest.raises(TopicsNotVisible, match=r"partitions of t \(partition 0: .*within 0.3 s"):
        wait_topics_ready(admin, {"t": 3}, timeout=0.3)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    with pytest.raises(TopicsNotVisible, match="partitions of t did not"):
        wait_topics_ready(_Admin(["absent"]), {"t": 1}, timeout=0.2)  # type: ignore[arg-type]


@pytest.mark.kafka
def test_a_created_topic_is_ready_for_clients_when_create_returns(settings: Settings) -> None:
    """Straight after create_topics a fresh client sees the topic and its leaders (pitfall 15)."""
    specs = [TopicSpec(f"fresh-{i}", 3) for i in range(5)]
    created, _present = create_topics(settings, specs, timeout=scaled(60))
    assert len(created) == 5
    md = admin_client(settings).list_topics(timeout=scaled(30))
    for name in created:
        assert md.topics[name].error is None and len(md.topics[name].partitions) == 3
        assert all(p.leader >= 0 for p in md.topics[name].partitions.values())
