"""A local 3-node Kafka cluster for the fault tests, on free loopback ports in a temporary home."""

from __future__ import annotations

from pathlib import Path

from hookline.local.kafka import LocalKafka
from hookline.local.ports import free_port_block
from hookline.settings import Settings, load_settings
from tests.support import REPO

BROKERS = 3


def cluster_settings(home: Path, **changes: object) -> Settings:
    """Settings for a 3-node cluster under ``home``: node i on base + 2(i-1), its controller one above."""
    return _local_settings(home, BROKERS, **changes)


def single_broker_settings(home: Path, **changes: object) -> Settings:
    """Settings for the single local broker (``hookline kafka start``) under ``home``, on free ports."""
    return _local_settings(home, 1, **changes)


def _local_settings(home: Path, brokers: int, **changes: object) -> Settings:
    base = free_port_block(2 * brokers)
    bootstrap = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(brokers))
    return load_settings(
        {},
        home=home,
        kafka_libs=REPO / ".hookline" / "kafka-libs",
        kafka_port=base,
        kafka_controller_port=base + 1,
        kafka_bootstrap=bootstrap,
        kafka_heap="384m",
        **changes,
    )


def cluster_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``hookline kafka ...`` (``--brokers 3`` for the cluster) use ``settings``'
    broker or cluster."""
    return {
        "HOOKLINE_HOME": str(settings.home),
        "HOOKLINE_KAFKA_LIBS": str(settings.kafka_libs_dir),
        "HOOKLINE_KAFKA_PORT": str(settings.kafka_port),
        "HOOKLINE_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "HOOKLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HOOKLINE_KAFKA_HEAP": settings.kafka_heap,
    }


def local_cluster(settings: Settings) -> LocalKafka:
    return LocalKafka(settings, brokers=BROKERS)
