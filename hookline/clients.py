"""Adapters from :class:`Settings` to confluent-kafka clients, and broker-side helpers.

Raw librdkafka dicts are built here and nowhere else.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
)

from hookline.settings import Settings
from hookline.topics import TopicSpec, all_topics, replication

__all__ = [
    "BrokerUnavailable",
    "admin_client",
    "consumer_config",
    "consumer_marks",
    "create_topics",
    "delete_topics",
    "describe_topic_config",
    "port_open",
    "producer_config",
    "records_behind",
    "wait_for_broker",
]

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not answer within the deadline."""


def _quiet_errors(err: Any) -> None:
    # librdkafka reports transient connection errors here; callers see real failures through
    # delivery reports and timeouts, so these are debug noise.
    log.debug("kafka client error: %s", err)


def common_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": "hookline",
        "error_cb": _quiet_errors,
    }


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all, batched producer settings."""
    conf = common_config(settings)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 256 * 1024,
            "compression.type": "lz4",
            # Java's partitioner, so librdkafka, aiokafka (Faust) and JVM clients agree on key -> partition.
            "partitioner": "murmur2_random",
            "message.timeout.ms": 30_000,
        }
    )
    conf.update(overrides)
    return conf


def consumer_config(settings: Settings, group: str | None, **overrides: Any) -> dict[str, Any]:
    conf = common_config(settings)
    conf.update(
        {
            "group.id": settings.topic(group) if group else "hookline-unused",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "isolation.level": "read_committed",
        }
    )
    conf.update(overrides)
    return conf


def admin_client(settings: Settings) -> AdminClient:
    # Warnings and errors still print; INFO is left out: an admin client delivers its events on
    # librdkafka's background queue, and one going away with an event unserved (a broker that stopped
    # before the client was collected) prints "%6|...|BGQUEUE|... Purging 1 unserved events", which
    # reads like trouble on `hookline up`'s screen and means nothing here.
    return AdminClient({**common_config(settings), "log_level": 5})


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` accepts a TCP connection (no Kafka client involved)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening(bootstrap: str) -> bool:
    """True when some ``host:port`` of ``bootstrap`` accepts a TCP connection."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit() and port_open(host.strip("[]"), int(port)):
            return True
    return False


def wait_for_broker(settings: Settings, timeout: float = 30.0) -> None:
    """Return when the broker answers a metadata request; raise :class:`BrokerUnavailable` otherwise.

    No Kafka client exists until a bootstrap port accepts connections: librdkafka would print a
    "Connection refused" line per attempt while a broker is still starting (or not there at all).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while not _listening(settings.kafka_bootstrap):
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(f"Kafka at {settings.kafka_bootstrap} did not answer within {timeout:g}s")
        time.sleep(0.2)
    admin = admin_client(settings)
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if md.brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.2)
    raise BrokerUnavailable(
        f"Kafka at {settings.kafka_bootstrap} did not answer within {timeout:g}s"
        + (f" ({last})" if last else "")
    )


def create_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
) -> tuple[list[str], list[str]]:
    """Create missing topics; return (created, already existing). Never alters an existing topic.

    The replication factor follows the number of brokers in the cluster's metadata
    (:func:`hookline.topics.replication`: 3 replicas and ``min.insync.replicas=2`` from three brokers up).
    Returns once every created partition has a leader that answers (:func:`wait_topics_ready`).
    """
    specs = list(all_topics(settings) if specs is None else specs)
    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=timeout)
    existing = set(metadata.topics)
    factor, replicated = replication(len(metadata.brokers))
    wanted = {s.full_name(settings): s for s in specs}
    missing = [
        NewTopic(
            name, num_partitions=s.partitions, replication_factor=factor, config={**replicated, **s.config}
        )
        for name, s in wanted.items()
        if name not in existing
    ]
    created: list[str] = []
    if missing:
        for name, fut in admin.create_topics(missing, request_timeout=timeout).items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won
                    raise
    if created:
        wait_topics_ready(admin, {n: wanted[n].partitions for n in created}, timeout)
    present = sorted(n for n in wanted if n not in created)
    return sorted(created), present


class TopicsNotVisible(TimeoutError):
    """Topics were created but their partitions did not get leaders that answer in time."""


def wait_topics_ready(admin: AdminClient, partitions: Mapping[str, int], timeout: float) -> None:
    """Return once every topic (name -> at least that many partitions) has a leader for each partition
    that answers an offsets request; :class:`TopicsNotVisible` after ``timeout``.

    The controller acknowledges a creation before the brokers have applied it; a client that asks in
    between is told the topic does not exist or its partition has no leader (on a busy machine for
    seconds: `hookline produce` then refused the topics just created). docs/architecture.md §9,
    pitfall 15.
    """
    deadline = time.monotonic() + timeout
    while True:
        problem = _not_ready(admin, partitions)
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise TopicsNotVisible(
                f"the partitions of {problem} did not get a leader that answers within {timeout:g} s"
            )
        time.sleep(0.05)


def _not_ready(admin: AdminClient, partitions: Mapping[str, int]) -> str | None:
    """What is not ready yet (a description), or None."""
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        return f"the topics (metadata: {exc})"
    specs = {}
    for name, count in partitions.items():
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) < max(count, 1):
            return name
        if any(p.leader < 0 for p in topic.partitions.values()):
            return name
        for p in topic.partitions:
            specs[TopicPartition(name, p)] = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    if not specs:
        return None
    futures = admin.list_offsets(specs, request_timeout=10)
    # Every answer is in before one is read: an answer still on its way when the client goes away
    # makes librdkafka print "Purging N unserved events from background queue".
    concurrent.futures.wait(list(futures.values()), timeout=30)
    for tp, future in futures.items():
        # exception(), not result(): a raised error's traceback would hold this frame, and with it the
        # admin client, in a cycle, and a client kept alive that way prints "Connection refused" lines
        # once the broker stops.
        if not future.done():
            return f"{tp.topic} (partition {tp.partition}: no answer)"
        error = future.exception(timeout=0)
        if error is not None:
            return f"{tp.topic} (partition {tp.partition}: {error})"
    return None


def delete_topics(settings: Settings, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics by full name; missing ones are ignored."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    doomed = [n for n in names if n in existing]
    if not doomed:
        return
    for fut in admin.delete_topics(doomed, request_timeout=timeout).values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def describe_topic_config(settings: Settings, topic: str, timeout: float = 10.0) -> Mapping[str, str]:
    """The topic's effective configuration as the broker reports it."""
    admin = admin_client(settings)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([res], request_timeout=timeout)[res].result()
    return {k: v.value for k, v in entries.items()}


def new_producer(settings: Settings, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, **overrides))


def new_consumer(settings: Settings, group: str | None, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, group, **overrides))


def consumer_marks(consumer: Consumer) -> dict[tuple[str, int], tuple[int, int]]:
    """``(high watermark, position)`` of each partition assigned to ``consumer``; -1 where unknown.

    The high watermark is the one the last fetch response reported: asking the broker instead
    queues behind the long-polling fetch on the same connection (~0.5 s per partition).
    """
    assignment = consumer.assignment()
    positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assignment)}
    marks = {}
    for tp in assignment:
        try:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        marks[(tp.topic, tp.partition)] = (high, positions.get((tp.topic, tp.partition), -1))
    return marks


def records_behind(marks: Iterable[tuple[int | None, int | None]]) -> int:
    """Consumer lag: the records between each ``(high watermark, position)`` pair, summed.

    A partition whose high watermark or position is not known yet (None or negative) counts 0.
    """
    return sum(
        max(0, high - position)
        for high, position in marks
        if high is not None and position is not None and high >= 0 and position >= 0
    )
