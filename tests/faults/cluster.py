"""A local 3-node Kafka cluster for the fault tests, on free loopback ports in a temporary home."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from hookline.local.kafka import LocalKafka
from hookline.settings import Settings, load_settings
from tests.support import REPO

BROKERS = 3


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port_block(count: int, attempts: int = 500) -> int:
    """A port p such that p .. p + count - 1 are all free on 127.0.0.1 right now, below the kernel's
    ephemeral range.

    Not ``tests.support.free_port``'s OS-chosen ports: those are ephemeral ports, and while the first
    node starts, outgoing connections (its own, the other tests') take ephemeral ports as their source,
    so a later node's port in that range was once found taken ("Address already in use").
    """
    low, _high = _ephemeral_range()
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(10000, low - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no block of {count} free ports found")


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
