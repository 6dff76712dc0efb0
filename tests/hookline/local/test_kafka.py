"""`hookline kafka start|stop|status` and `hookline topics create` against a broker of their own."""

from __future__ import annotations

import base64
import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from hookline.cli import main
from hookline.clients import create_topics, describe_topic_config, port_open
from hookline.local.kafka import KafkaSetupError, LocalKafka, new_cluster_id
from hookline.local.ports import free_port
from hookline.settings import load_settings
from hookline.topics import all_topics
from tests.support import REPO

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    port, ctrl = free_port(), free_port()
    env = {
        "HOOKLINE_HOME": str(tmp_path / "home"),
        "HOOKLINE_KAFKA_LIBS": str(REPO / ".hookline" / "kafka-libs"),
        "HOOKLINE_KAFKA_PORT": str(port),
        "HOOKLINE_KAFKA_CONTROLLER_PORT": str(ctrl),
        "HOOKLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "HOOKLINE_KAFKA_HEAP": "512m",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env
    LocalKafka(load_settings(env)).stop()


def jvm_xx_options(pid: int) -> list[bytes]:
    """The ``-XX:`` options on the command line of the running process ``pid``."""
    return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg.startswith(b"-XX:")]


def test_start_twice_status_stop_start_keeps_data(
    own_env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    settings = load_settings(own_env)
    assert main(["kafka", "status"]) == 3
    assert "stopped" in capsys.readouterr().out
    assert main(["kafka", "start"]) == 0
    first_pid = LocalKafka(settings).status().pid
    assert main(["kafka", "start"]) == 0  # a no-op when running
    out = capsys.readouterr()
    assert "already running" in out.err
    assert LocalKafka(settings).status().pid == first_pid
    # The JVM runs with the configured options (G1 and both JIT compilers by default).
    assert jvm_xx_options(first_pid) == [b"-XX:+UseG1GC"]
    assert main(["kafka", "status"]) == 0
    assert f"running (pid {first_pid}) at {settings.kafka_bootstrap}" in capsys.readouterr().out

    create_topics(settings)
    topic = settings.topic("contact-events")
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    p.produce(topic, key=b"k", value=b"survives restarts")
    assert p.flush(10) == 0

    assert main(["kafka", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not LocalKafka(settings).status().running
    # Stopped means gone and reaped, not a zombie leader whose JVM threads still hold the port.
    assert not Path(f"/proc/{first_pid}").exists()
    assert not port_open("127.0.0.1", settings.kafka_port)
    # The options are a setting: the restarted broker runs with C1 only and the serial collector.
    monkeypatch.setenv("HOOKLINE_KAFKA_JVM_OPTIONS", " -XX:+UseSerialGC  -XX:TieredStopAtLevel=1 ")
    assert main(["kafka", "start"]) == 0
    second_pid = LocalKafka(settings).status().pid
    assert second_pid is not None
    assert jvm_xx_options(second_pid) == [b"-XX:+UseSerialGC", b"-XX:TieredStopAtLevel=1"]

    c = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": "x", "enable.auto.commit": False}
    )
    parts = c.list_topics(topic, timeout=60).topics[topic].partitions
    c.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in parts])
    values = []
    for _ in range(50):
        values += [m.value() for m in c.consume(10, 0.2) if m.error() is None]
        if values:
            break
    c.close()
    assert values == [b"survives restarts"]


def test_topics_create_is_idempotent_and_config_topic_is_compacted(
    own_env: dict[str, str], capsys: pytest.CaptureFixture[str]
):
    settings = load_settings(own_env)
    # A stored cluster id that starts with "-" (one random id in 64 did, and failed CI) still formats.
    kafka = LocalKafka(settings)
    kafka.dir.mkdir(parents=True)
    (kafka.dir / "cluster-id").write_text("-" + new_cluster_id()[1:])
    kafka.start()
    capsys.readouterr()
    assert main(["topics", "create"]) == 0
    first = capsys.readouterr().out
    n = len(all_topics(settings))
    assert f"{n} created, 0 already present" in first
    assert main(["topics", "create"]) == 0
    assert f"0 created, {n} already present" in capsys.readouterr().out
    cfg = describe_topic_config(settings, settings.topic("webhook-config"))
    assert cfg["cleanup.policy"] == "compact"
    assert int(cfg["delete.retention.ms"]) >= 24 * 3600 * 1000


def test_start_fails_clearly_when_the_port_is_taken(own_env: dict[str, str]):
    settings = load_settings(own_env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", settings.kafka_port))
        s.listen()
        with pytest.raises(KafkaSetupError, match=f"port {settings.kafka_port} .* already taken"):
            LocalKafka(settings).start()


def test_start_fails_clearly_without_java(own_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaSetupError, match="Java is not installed"):
        LocalKafka(load_settings(own_env)).start()


def test_fetch_fails_clearly_without_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    settings = load_settings({}, home=tmp_path, kafka_libs=tmp_path / "libs")
    with pytest.raises(KafkaSetupError, match=r"Maven .* is not installed"):
        LocalKafka(settings).fetch()


def test_new_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch):
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    plain = uuid.UUID(int=1)
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    assert new_cluster_id() == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
