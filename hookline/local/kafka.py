"""The embedded default broker: Apache Kafka from Maven Central, run as one local KRaft node
(or, with ``brokers=3``, a local cluster of three combined broker+controller nodes).

Layout under ``settings.home``::

    kafka-libs/        jars fetched by ``mvn dependency:copy-dependencies`` (deploy/local/pom.xml)
    kafka/server.properties, kafka/log4j2.properties, kafka/cluster-id
    kafka/data/        log.dirs (survives stop/start)
    kafka/kafka.pid, kafka/kafka.log

A cluster of N nodes (``hookline kafka start --brokers N``) lives beside it::

    kafka/cluster.properties   cluster id, node count, controller ports and each node's directory id
    kafka/node-<i>/            server.properties, log4j2.properties, data/, kafka.pid, kafka.log

Node i (1-based) listens for clients on ``HOOKLINE_KAFKA_PORT + 2(i-1)`` and for the KRaft quorum
on ``HOOKLINE_KAFKA_CONTROLLER_PORT + 2(i-1)`` (9092/9093, 9094/9095, 9096/9097 by default). Every
node is a voter of a dynamic controller quorum (``controller.quorum.bootstrap.servers``, storage
formatted with ``--initial-controllers``, KIP-853).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import KafkaException

from hookline.clients import BrokerUnavailable, admin_client, port_open, wait_for_broker
from hookline.settings import Settings

__all__ = ["MAX_BROKERS", "KafkaSetupError", "LocalKafka", "Node", "NodeStatus", "Status", "new_cluster_id"]

POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"
#: The largest local cluster ``hookline kafka start --brokers`` makes (every node is a controller too).
MAX_BROKERS = 5


def new_cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of a UUID), never starting with "-".

    Kafka's own ``Uuid.randomUuid()`` draws again for the same reason: one id in 64 would start with
    "-" and command-line tools would take it for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# Brokers started by this process: kept referenced so Popen does not warn "still running" when
# collected (the broker outlives the command that started it by design), and reaped on stop.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class KafkaSetupError(RuntimeError):
    """The local broker cannot be fetched or started; the message says what to do."""


@dataclass(frozen=True)
class Node:
    """One node of the local cluster: its id, ports and files."""

    id: int
    port: int
    controller_port: int
    dir: Path
    data: Path
    pid_file: Path
    log_file: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def controller(self) -> str:
        return f"127.0.0.1:{self.controller_port}"


@dataclass(frozen=True)
class NodeStatus:
    id: int
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"node {self.id}: {state} at {self.bootstrap}; log: {self.log_file}"


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path
    #: One entry per node of a multi-node cluster; empty for the single broker.
    nodes: tuple[NodeStatus, ...] = ()

    def describe(self) -> str:
        if self.nodes:
            up = sum(n.running for n in self.nodes)
            head = f"{up} of {len(self.nodes)} nodes running, bootstrap {self.bootstrap}"
            return "\n".join([head, *(f"  {n.describe()}" for n in self.nodes)])
        if self.running:
            return f"running (pid {self.pid}) at {self.bootstrap}; log: {self.log_file}"
        return f"stopped (would listen on {self.bootstrap}); log: {self.log_file}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs any thread.

    A zombie counts as dead, but only once all its threads are gone: when a JVM's main thread ends
    first, /proc shows the leader as "Z" while shutdown threads still hold the port and data dir.
    """
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(")")[-1].split()[0] != "Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return True


class LocalKafka:
    """Fetch, start, stop and inspect the local broker described by ``settings``."""

    def __init__(
        self,
        settings: Settings,
        out: TextIO | None = None,
        *,
        request_log: bool = False,
        brokers: int = 1,
    ) -> None:
        if not 1 <= brokers <= MAX_BROKERS:
            raise KafkaSetupError(f"--brokers {brokers}: the local cluster has 1 to {MAX_BROKERS} nodes")
        if brokers > 1 and request_log:
            raise KafkaSetupError("the request log is for the single local broker only")
        self.settings = settings
        self.brokers = brokers
        # Diagnostics (``hookline bench``): every request the broker completes, one line each with
        # its client id and API, in ``kafka/requests.log``. It costs the broker CPU; never by default.
        self.dir = settings.home / "kafka"
        self.request_log = self.dir / "requests.log" if request_log else None
        self.libs = settings.kafka_libs_dir
        self.data = self.dir / "data"
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "kafka.log"
        self.bootstrap = f"127.0.0.1:{settings.kafka_port}"
        self._out = out if out is not None else sys.stderr
        #: The nodes of a multi-node cluster (``brokers`` > 1); empty for the single broker.
        self.nodes: tuple[Node, ...] = ()
        if brokers > 1:
            self.nodes = tuple(self._node(i) for i in range(1, brokers + 1))
            self.cluster_file = self.dir / "cluster.properties"
            self.data = self.nodes[0].data
            self.pid_file = self.nodes[0].pid_file
            self.log_file = self.nodes[0].log_file
            self.bootstrap = ",".join(n.bootstrap for n in self.nodes)

    def _node(self, i: int) -> Node:
        d = self.dir / f"node-{i}"
        return Node(
            id=i,
            port=self.settings.kafka_port + 2 * (i - 1),
            controller_port=self.settings.kafka_controller_port + 2 * (i - 1),
            dir=d,
            data=d / "data",
            pid_file=d / "kafka.pid",
            log_file=d / "kafka.log",
        )

    @classmethod
    def formatted_brokers(cls, settings: Settings) -> int | None:
        """The node count of the multi-node cluster formatted under ``settings.home``, if there is one."""
        try:
            meta = _read_properties(settings.home / "kafka" / "cluster.properties")
            return int(meta["brokers"])
        except (OSError, KeyError, ValueError):
            return None

    def _say(self, msg: str) -> None:
        print(f"[kafka] {msg}", file=self._out, flush=True)

    # -- fetching -----------------------------------------------------------------------------
    def fetch(self) -> Path:
        """Copy the broker's jars from Maven into the cache (a no-op when the pom is unchanged)."""
        marker = self.libs / ".pom-sha256"
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()
        if (
            marker.exists()
            and marker.read_text().strip() == digest
            and any(self.libs.glob("kafka_2.13-*.jar"))
        ):
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaSetupError(
                "Maven (`mvn`) is not installed; it fetches the Kafka jars from Maven Central. "
                "Install it (Debian: `apt-get install maven`) "
                "or point HOOKLINE_KAFKA_BOOTSTRAP at a running broker."
            )
        self._say(f"fetching Apache Kafka jars with Maven into {self.libs} ...")
        if self.libs.exists():
            shutil.rmtree(self.libs)
        self.libs.mkdir(parents=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs.resolve()}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise KafkaSetupError("Maven could not fetch the Kafka jars:\n" + "\n".join(tail))
        marker.write_text(digest)
        self._say(f"fetched {len(list(self.libs.glob('*.jar')))} jars")
        return self.libs

    # -- state --------------------------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def status(self) -> Status:
        if self.nodes:
            nodes = tuple(
                NodeStatus(n.id, pid is not None, pid, n.bootstrap, n.log_file)
                for n in self.nodes
                for pid in [self.node_pid(n.id)]
            )
            return Status(all(n.running for n in nodes), nodes[0].pid, self.bootstrap, self.log_file, nodes)
        pid = self._pid()
        return Status(pid is not None, pid, self.bootstrap, self.log_file)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"no node {node_id} in this {self.brokers}-node cluster")

    def node_pid(self, node_id: int) -> int | None:
        """The process id of a running node of the cluster, or None."""
        try:
            pid = int(self.node(node_id).pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to one node (fault tests); with SIGKILL, wait until it is gone.

        False if the node was not running.
        """
        pid = self.node_pid(node_id)
        if pid is None:
            return False
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            while _alive(pid):
                time.sleep(0.05)
            _CHILDREN.pop(pid, None)
        return True

    # -- start / stop -------------------------------------------------------------------------
    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise KafkaSetupError(
                "Java is not installed; the local broker needs Java 17+ "
                "(Debian: `apt-get install openjdk-17-jre-headless`)."
            )
        return java

    def _write_config(self, node: Node | None = None) -> Path:
        """Write server.properties and log4j2.properties for the single broker or one ``node``."""
        home = node.dir if node is not None else self.dir
        home.mkdir(parents=True, exist_ok=True)
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data.resolve()),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "1000",
            # Deleted topics release their files within seconds, not a minute (tests churn topics).
            "file.delete.delay.ms": "2000",
            "log.retention.check.interval.ms": "60000",
            # A one-node broker on a small machine (issue 14, README "Where the CPU goes"): two network
            # and two request threads instead of 3 + 8 (fewer threads woken per request), and the
            # controller's no-op metadata record every 5 s instead of every 0.5 s (idle cost).
            "num.network.threads": "2",
            "num.io.threads": "2",
            "metadata.max.idle.interval.ms": "5000",
        }
        if node is not None:
            del props["controller.quorum.voters"]
            props.update(self._cluster_props(node))
        path = home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = home / "log4j2.properties"
        log4j.write_text(
            "status = warn\n"
            "appender.out.type = Console\nappender.out.name = OUT\n"
            "appender.out.layout.type = PatternLayout\n"
            "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
            "logger.started.name = kafka.server.KafkaRaftServer\nlogger.started.level = INFO\n"
            "logger.state.name = state.change.logger\nlogger.state.level = WARN\n"
            + (
                "appender.req.type = File\nappender.req.name = REQ\n"
                f"appender.req.fileName = {self.request_log.resolve()}\n"
                "appender.req.layout.type = PatternLayout\n"
                "appender.req.layout.pattern = %d{UNIX_MILLIS} %m%n\n"
                "logger.req.name = kafka.request.logger\nlogger.req.level = DEBUG\n"
                "logger.req.additivity = false\nlogger.req.appenderRef.req.ref = REQ\n"
                if self.request_log is not None
                else ""
            )
        )
        return path

    def _cluster_props(self, node: Node) -> dict[str, str]:
        """What a node of a multi-node cluster sets differently from the single broker."""
        return {
            "node.id": str(node.id),
            # A dynamic quorum (KIP-853): every node is a voter, found through the bootstrap list;
            # the initial voter set is written by `kafka-storage format --initial-controllers`.
            "controller.quorum.bootstrap.servers": ",".join(n.controller for n in self.nodes),
            "listeners": f"PLAINTEXT://{node.bootstrap},CONTROLLER://{node.controller}",
            "advertised.listeners": f"PLAINTEXT://{node.bootstrap},CONTROLLER://{node.controller}",
            "log.dirs": str(node.data.resolve()),
            # Three copies, two of which must acknowledge a write (acks=all), for every topic the
            # brokers create themselves and as the default for the others (hookline/topics.py sets
            # the same explicitly): with one node down writes go on, with two they stop.
            "default.replication.factor": str(min(3, self.brokers)),
            "min.insync.replicas": str(min(2, self.brokers)),
            "offsets.topic.replication.factor": str(min(3, self.brokers)),
            "transaction.state.log.replication.factor": str(min(3, self.brokers)),
            "transaction.state.log.min.isr": str(min(2, self.brokers)),
            "share.coordinator.state.topic.replication.factor": str(min(3, self.brokers)),
            "share.coordinator.state.topic.min.isr": str(min(2, self.brokers)),
            "unclean.leader.election.enable": "false",
        }

    def _cluster_id(self) -> str:
        f = self.dir / "cluster-id"
        if f.exists():
            return f.read_text().strip()
        cid = new_cluster_id()
        f.write_text(cid)
        return cid

    def _classpath(self) -> str:
        return str(self.libs.resolve() / "*")

    def _log4j_options(self, props: Path) -> list[str]:
        """The JVM options that point at the log4j2.properties written beside ``props``, and the jars."""
        return [
            f"-Dlog4j2.configurationFile={(props.parent / 'log4j2.properties').resolve()}",
            "-cp",
            self._classpath(),
        ]

    def _format(
        self, java: str, props: Path, cluster_id: str, env: dict[str, str], *options: str
    ) -> subprocess.CompletedProcess[str]:
        """``kafka-storage format`` for the storage ``props`` names (a no-op when it is formatted)."""
        return subprocess.run(
            [
                java,
                *self._log4j_options(props),
                "kafka.tools.StorageTool",
                "format",
                # The "=" form: an id that starts with "-" would otherwise read as an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
                *options,
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            env=env,
        )

    def _spawn(
        self, java: str, props: Path, log_file: Path, pid_file: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start ``kafka.Kafka`` with ``props`` in the background, its output appended to ``log_file``."""
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    f"-Xmx{self.settings.kafka_heap}",
                    f"-Xms{self.settings.kafka_heap}",
                    # G1 and both JIT compilers unless the setting says otherwise: C1 only and the
                    # serial collector idle on less CPU, at a price at saturation (docs/architecture.md §9).
                    *self.settings.kafka_jvm_options.split(),
                    "-Djava.awt.headless=true",
                    *self._log4j_options(props),
                    "kafka.Kafka",
                    str(props),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        _CHILDREN[proc.pid] = proc
        pid_file.write_text(str(proc.pid))
        return proc

    def start(self, timeout: float = 90.0) -> Status:
        """Start the broker if it is not running and wait until it answers metadata requests.

        A cluster (``brokers`` > 1) starts the nodes that are not running, then waits until each of
        them is registered and the cluster's metadata lists every node.
        """
        if self.nodes:
            return self._start_cluster(timeout)
        current = self.status()
        if current.running:
            self._say(f"already running: {current.describe()}")
            return current
        java = self._java()
        for port in (self.settings.kafka_port, self.settings.kafka_controller_port):
            if port_open("127.0.0.1", port, timeout=0.3):
                raise KafkaSetupError(
                    f"port {port} on 127.0.0.1 is already taken by another process; stop it or set "
                    "HOOKLINE_KAFKA_PORT / HOOKLINE_KAFKA_CONTROLLER_PORT to free ports."
                )
        self.fetch()
        props = self._write_config()
        env = dict(os.environ)
        env.pop("KAFKA_OPTS", None)
        fmt = self._format(java, props, self._cluster_id(), env)
        if fmt.returncode != 0:
            raise KafkaSetupError("formatting Kafka storage failed:\n" + (fmt.stdout + fmt.stderr)[-2000:])
        self._say(f"starting Apache Kafka on {self.bootstrap} (log: {self.log_file})")
        proc = self._spawn(java, props, self.log_file, self.pid_file, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaSetupError(
                    f"the broker exited with code {proc.returncode}; last lines of {self.log_file}:\n"
                    + self._tail()
                )
            if port_open("127.0.0.1", self.settings.kafka_port, timeout=0.3):
                try:
                    wait_for_broker(
                        self.settings.replace(kafka_bootstrap=self.bootstrap),
                        timeout=max(1.0, deadline - time.monotonic()),
                    )
                    break
                except BrokerUnavailable:
                    continue
            time.sleep(0.2)
        else:
            self.stop()
            raise KafkaSetupError(f"the broker did not answer within {timeout:g}s; see {self.log_file}")
        self._say(f"ready at {self.bootstrap}")
        return self.status()

    def _tail(self, n: int = 20, log_file: Path | None = None) -> str:
        try:
            path = log_file if log_file is not None else self.log_file
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); False if it was not running.

        A cluster stops every running node (all at once: SIGTERM, SIGKILL after ``timeout``).
        """
        if self.nodes:
            return self._stop_nodes([n.id for n in self.nodes], timeout)
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        _CHILDREN.pop(pid, None)
        self.pid_file.unlink(missing_ok=True)
        return True

    # -- a multi-node cluster -----------------------------------------------------------------
    def _cluster_meta(self) -> dict[str, str]:
        """The cluster's identity (id, node count, controller ports, directory ids), made once.

        The initial voter set is part of every node's formatted storage, so a cluster formatted with
        other nodes or ports cannot be started with these settings: that is refused, not reformatted.
        """
        ports = ",".join(str(n.controller_port) for n in self.nodes)
        if self.cluster_file.exists():
            meta = _read_properties(self.cluster_file)
            if meta.get("brokers") != str(self.brokers) or meta.get("controller.ports") != ports:
                raise KafkaSetupError(
                    f"the cluster under {self.dir} was formatted with {meta.get('brokers')} nodes on "
                    f"controller ports {meta.get('controller.ports')}, not {self.brokers} on {ports}: "
                    f"start it with those settings, or stop it and remove {self.cluster_file} and "
                    f"{self.dir}/node-* to make a new one"
                )
            return meta
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "cluster.id": new_cluster_id(),
            "brokers": str(self.brokers),
            "controller.ports": ports,
            # One directory id per controller's metadata log dir, named in --initial-controllers.
            **{f"node.{n.id}.directory.id": new_cluster_id() for n in self.nodes},
        }
        self.cluster_file.write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
        return meta

    def _check_ports(self, nodes: list[Node]) -> None:
        ports = [p for n in self.nodes for p in (n.port, n.controller_port)]
        if len(set(ports)) != len(ports):
            raise KafkaSetupError(
                f"the {self.brokers} nodes would share ports ({', '.join(map(str, ports))}): node i uses "
                "HOOKLINE_KAFKA_PORT + 2(i-1) and HOOKLINE_KAFKA_CONTROLLER_PORT + 2(i-1); "
                "choose ports further apart"
            )
        for n in nodes:
            for port in (n.port, n.controller_port):
                if port_open("127.0.0.1", port, timeout=0.3):
                    raise KafkaSetupError(
                        f"port {port} on 127.0.0.1 (node {n.id}) is already taken by another process; "
                        "stop it or set HOOKLINE_KAFKA_PORT / HOOKLINE_KAFKA_CONTROLLER_PORT to free ports "
                        "(node i uses both + 2(i-1))."
                    )

    def _start_cluster(self, timeout: float) -> Status:
        current = self.status()
        if current.running:
            self._say(f"already running: {current.describe()}")
            return current
        java = self._java()
        down = [n for n, st in zip(self.nodes, current.nodes, strict=True) if not st.running]
        self._check_ports(down)
        self.fetch()
        meta = self._cluster_meta()
        voters = ",".join(f"{n.id}@{n.controller}:{meta[f'node.{n.id}.directory.id']}" for n in self.nodes)
        env = dict(os.environ)
        env.pop("KAFKA_OPTS", None)
        procs: dict[int, subprocess.Popen[bytes]] = {}
        for n in down:
            props = self._write_config(n)
            fmt = self._format(java, props, meta["cluster.id"], env, f"--initial-controllers={voters}")
            if fmt.returncode != 0:
                self._stop_nodes(list(procs), 10.0)
                raise KafkaSetupError(
                    f"formatting node {n.id}'s storage failed:\n" + (fmt.stdout + fmt.stderr)[-2000:]
                )
            self._say(f"starting node {n.id} on {n.bootstrap} (controller {n.controller}; log: {n.log_file})")
            procs[n.id] = self._spawn(java, props, n.log_file, n.pid_file, env)
        try:
            self._wait_registered(down, procs, time.monotonic() + timeout)
        except KafkaSetupError:
            self._stop_nodes(list(procs), 10.0)
            raise
        status = self.status()
        self._say(f"cluster ready: {self.brokers} brokers at {self.bootstrap}")
        return status

    def _wait_registered(
        self, nodes: list[Node], procs: dict[int, subprocess.Popen[bytes]], deadline: float
    ) -> None:
        """Wait until each of ``nodes`` answers and the metadata lists every node of the cluster."""
        pending = {n.id: n for n in nodes}
        admins: dict[int, Any] = {}
        seen: set[int] = set()
        while time.monotonic() < deadline:
            for node_id, n in list(pending.items()):
                proc = procs[node_id]
                if proc.poll() is not None:
                    raise KafkaSetupError(
                        f"node {node_id} exited with code {proc.returncode}; "
                        f"last lines of {n.log_file}:\n" + self._tail(log_file=n.log_file)
                    )
                if node_id not in admins:
                    if not port_open("127.0.0.1", n.port, timeout=0.3):
                        continue
                    admins[node_id] = admin_client(self.settings.replace(kafka_bootstrap=n.bootstrap))
                try:
                    md = admins[node_id].list_topics(timeout=2.0)
                except KafkaException:
                    continue
                seen |= set(md.brokers)
                if node_id in md.brokers:
                    self._say(f"node {node_id} ready at {n.bootstrap}")
                    del pending[node_id]
            if not pending and seen >= {n.id for n in self.nodes}:
                return
            if not pending:  # every started node is up; the others must show up in the metadata too
                admin = next(iter(admins.values()))
                with contextlib.suppress(KafkaException):
                    seen |= set(admin.list_topics(timeout=2.0).brokers)
            time.sleep(0.2)
        tails = "".join(
            f"\n--- node {n.id}: last lines of {n.log_file} ---\n" + self._tail(log_file=n.log_file)
            for n in pending.values()
        )
        missing = sorted({n.id for n in self.nodes} - seen)
        raise KafkaSetupError(
            f"the cluster was not ready in time: nodes {sorted(pending) or missing} did not register" + tails
        )

    def _stop_nodes(self, node_ids: list[int], timeout: float) -> bool:
        """SIGTERM the running nodes among ``node_ids`` at once, SIGKILL what is left after ``timeout``."""
        pids = {}
        for node_id in node_ids:
            pid = self.node_pid(node_id)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                pids[node_id] = pid
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
            _CHILDREN.pop(pid, None)
        for node_id in node_ids:
            self.node(node_id).pid_file.unlink(missing_ok=True)
        return bool(pids)


def _read_properties(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, _, v in pairs}
