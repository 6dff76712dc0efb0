"""`hookline kafka start|status|stop --brokers 3`: a local KRaft cluster of three combined nodes, and the
topics created on it with three replicas and ``min.insync.replicas=2`` (issue 16, point 1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from hookline.cli import main
from hookline.clients import admin_client, create_topics, describe_topic_config, port_open
from hookline.local.kafka import KafkaSetupError, LocalKafka
from hookline.settings import Settings, load_settings
from hookline.topics import DELIVERIES, TopicSpec, all_topics
from tests.faults.cluster import BROKERS, cluster_env, cluster_settings, local_cluster
from tests.support import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def topic_config(settings: Settings, topic: str) -> Mapping[str, str]:
    """The topic's configuration, asked again while the broker that answers has not yet learned of the topic
    from the metadata log (UNKNOWN_TOPIC_OR_PART: seen once in a fresh-clone CI run, right after creation)."""

    def ask() -> Mapping[str, str] | None:
        try:
            return describe_topic_config(settings, topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            return None

    return wait_until(ask, 60, f"the configuration of {topic}")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = cluster_settings(tmp_path / "home")
    for k, v in cluster_env(settings).items():
        monkeypatch.setenv(k, v)
    yield settings
    local_cluster(settings).stop()
    LocalKafka(settings).stop()


def test_three_nodes_start_report_and_stop_and_topics_get_three_replicas(
    cluster: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kafka", "start", "--brokers", "3"]) == 0
    out = capsys.readouterr()
    for i in range(1, BROKERS + 1):
        assert f"[kafka] node {i} ready at 127.0.0.1:{cluster.kafka_port + 2 * (i - 1)}" in out.err
    assert "[kafka] cluster ready: 3 brokers" in out.err
    kafka = local_cluster(cluster)
    home = cluster.home / "kafka"
    pids = [kafka.node_pid(i) for i in range(1, BROKERS + 1)]
    assert all(pids) and len(set(pids)) == BROKERS
    for i in range(1, BROKERS + 1):
        props = (home / f"node-{i}" / "server.properties").read_text()
        assert f"node.id={i}\n" in props
        assert f"log.dirs={(home / f'node-{i}' / 'data').resolve()}\n" in props
        assert (home / f"node-{i}" / "data" / "meta.properties").exists()
        assert (home / f"node-{i}" / "kafka.log").exists()
    # One cluster id on every node, and a controller quorum of all three (KIP-853 bootstrap servers).
    ids = {
        line
        for i in range(1, BROKERS + 1)
        for line in (home / f"node-{i}" / "data" / "meta.properties").read_text().splitlines()
        if line.startswith("cluster.id=")
    }
    assert len(ids) == 1
    controllers = ",".join(f"127.0.0.1:{cluster.kafka_controller_port + 2 * i}" for i in range(BROKERS))
    assert f"controller.quorum.bootstrap.servers={controllers}\n" in props
    assert "controller.quorum.voters" not in props

    # status and stop without --brokers cover every node under HOOKLINE_HOME.
    assert main(["kafka", "status"]) == 0
    status = capsys.readouterr().out
    assert "3 of 3 nodes running" in status
    assert main(["kafka", "start", "--brokers", "3"]) == 0
    assert "already running" in capsys.readouterr().err

    # Topics: three replicas each, two in sync required.
    metadata = admin_client(cluster).list_topics(timeout=30)
    assert sorted(metadata.brokers) == [1, 2, 3]
    create_topics(cluster)
    admin = admin_client(cluster)
    names = {spec.full_name(cluster) for spec in all_topics(cluster)}
    # Every broker learns of new topics through the metadata log: the one asked may lag a moment.
    metadata = wait_until(
        lambda: (md := admin.list_topics(timeout=30)) and names <= set(md.topics) and md, 60, "the topics"
    )
    for spec in all_topics(cluster):
        topic = metadata.topics[spec.full_name(cluster)]
        assert {len(p.replicas) for p in topic.partitions.values()} == {3}, spec.name
    config = topic_config(cluster, cluster.topic("webhook-deliveries"))
    assert config["min.insync.replicas"] == "2"

    # One node down: status says which; start brings back just that one.
    assert kafka.kill_node(2)
    assert main(["kafka", "status"]) == 3
    status = capsys.readouterr().out
    assert "2 of 3 nodes running" in status and "node 2: stopped" in status
    # Once the controller has fenced it, the metadata shows two brokers: a topic created now takes the
    # brokers' defaults, still 3 replicas (one on the stopped node, to catch up later) and 2 in sync.
    wait_until(lambda: sorted(admin.list_topics(timeout=10).brokers) == [1, 3], 60, "node 2 fenced")
    late = cluster.replace(topic_prefix="late.")
    create_topics(late, [TopicSpec(DELIVERIES, 3)])
    topic = wait_until(lambda: admin.list_topics(timeout=10).topics.get(late.topic(DELIVERIES)), 60, "late")
    assert [sorted(p.replicas) for p in topic.partitions.values()] == [[1, 2, 3]] * 3
    assert topic_config(late, late.topic(DELIVERIES))["min.insync.replicas"] == "2"
    assert main(["kafka", "start", "--brokers", "3"]) == 0
    err = capsys.readouterr().err
    assert "starting node 2" in err and "starting node 1" not in err
    assert kafka.node_pid(1) == pids[0] and kafka.node_pid(3) == pids[2]

    assert main(["kafka", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    for i in range(BROKERS):
        assert not port_open("127.0.0.1", cluster.kafka_port + 2 * i)
    assert main(["kafka", "status"]) == 3
    assert "0 of 3 nodes running" in capsys.readouterr().out


def test_a_taken_port_and_clashing_ports_are_refused_clearly(cluster: Settings) -> None:
    third = cluster.kafka_controller_port + 4  # node 3's controller port
    with socket.socket() as s:
        s.bind(("127.0.0.1", third))
        s.listen()
        with pytest.raises(KafkaSetupError, match=f"port {third} on 127.0.0.1 \\(node 3\\) is already taken"):
            local_cluster(cluster).start()
    with pytest.raises(KafkaSetupError, match="1 to 5 nodes"):
        LocalKafka(cluster, brokers=6)
    # A node that cannot start: its exit code and the end of its log; the nodes started with it stopped.
    broken = LocalKafka(cluster.replace(kafka_heap="1k"), brokers=3)
    with pytest.raises(
        KafkaSetupError, match=r"node \d exited with code 1; last lines of .*kafka\.log:\n(.|\n)*heap"
    ):
        broken.start()
    assert not any(broken.node_pid(i) for i in range(1, BROKERS + 1))
    # Node 1's client port is node 2's controller port: refused before anything starts.
    clash = load_settings({}, home=cluster.home, kafka_port=7000, kafka_controller_port=7002)
    with pytest.raises(KafkaSetupError, match="would share ports"):
        LocalKafka(clash, brokers=3).start()
