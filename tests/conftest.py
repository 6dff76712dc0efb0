"""Test session wiring: one real Apache Kafka broker per session, a topic prefix per test.

Set ``HOOKLINE_TEST_BOOTSTRAP`` to use an already running broker instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from hookline.clients import admin_client, create_topics, delete_topics
from hookline.local.kafka import LocalKafka
from hookline.local.ports import free_port
from hookline.settings import Settings, load_settings
from tests.support import scaled

# One throwaway PostgreSQL server per session for the log store tests (started only when used).
pytest_plugins = ["tests.postgres"]

REPO = Path(__file__).resolve().parent.parent

# Property tests judge correctness, never speed: on a shared, busy machine one slow example must not
# fail a run through hypothesis' per-example deadline (speed is the benchmarks' business).
hypothesis.settings.register_profile("hookline", deadline=None)
hypothesis.settings.load_profile("hookline")

# Compressed retry schedule for tests: seconds instead of hours.
TEST_RETRY_SCHEDULE = (0.5, 1.0, 1.5)
TEST_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the real broker for this test session."""
    existing = os.environ.get("HOOKLINE_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    port = free_port()
    ctrl = free_port()
    home = tmp_path_factory.mktemp("kafka-home")
    settings = load_settings(
        {},
        home=home,
        kafka_libs=REPO / ".hookline" / "kafka-libs",
        kafka_port=port,
        kafka_controller_port=ctrl,
        kafka_heap="768m",
    )
    broker = LocalKafka(settings)
    broker.start(timeout=scaled(120))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: the session broker, a fresh topic prefix, every topic created.

    Topics get 3 partitions each and are deleted afterwards, so a whole suite on one broker
    stays far below its open-file limit.
    """
    s = load_settings(
        {},
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        retry_schedule=TEST_RETRY_SCHEDULE,
        topic_partitions=TEST_PARTITIONS,
        home=tmp_path / "home",
    )
    create_topics(s, timeout=scaled(60))
    yield s
    drop_prefixed_topics(s)


def drop_prefixed_topics(s: Settings) -> None:
    """Delete every topic under the settings' prefix (including ones the roles made themselves)."""
    topics = admin_client(s).list_topics(timeout=scaled(60)).topics
    delete_topics(s, [n for n in topics if n.startswith(s.topic_prefix)], timeout=scaled(60))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A run in which no test executed must fail, whatever selected it away.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    ran = 0
    if reporter is not None:
        ran = sum(len(reporter.stats.get(k, [])) for k in ("passed", "failed", "error"))
    if ran == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
