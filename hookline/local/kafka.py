"""The embedded default broker: Apache Kafka from Maven Central, run as one local KRaft node.

Layout under ``settings.home``::

    kafka-libs/        jars fetched by ``mvn dependency:copy-dependencies`` (deploy/local/pom.xml)
    kafka/server.properties, kafka/log4j2.properties, kafka/cluster-id
    kafka/data/        log.dirs (survives stop/start)
    kafka/kafka.pid, kafka/kafka.log
"""

from __future__ import annotations

import base64
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
from typing import TextIO

from hookline.clients import BrokerUnavailable, port_open, wait_for_broker
from hookline.settings import Settings

__all__ = ["KafkaSetupError", "LocalKafka", "Status", "new_cluster_id"]

POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"


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
class Status:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def describe(self) -> str:
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

    def __init__(self, settings: Settings, out: TextIO | None = None, *, request_log: bool = False) -> None:
        self.settings = settings
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
        pid = self._pid()
        return Status(pid is not None, pid, self.bootstrap, self.log_file)

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

    def _write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
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
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.dir / "log4j2.properties"
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

    def _cluster_id(self) -> str:
        f = self.dir / "cluster-id"
        if f.exists():
            return f.read_text().strip()
        cid = new_cluster_id()
        f.write_text(cid)
        return cid

    def _classpath(self) -> str:
        return str(self.libs.resolve() / "*")

    def start(self, timeout: float = 90.0) -> Status:
        """Start the broker if it is not running and wait until it answers metadata requests."""
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
        base = [
            java,
            f"-Dlog4j2.configurationFile={(self.dir / 'log4j2.properties').resolve()}",
            "-cp",
            self._classpath(),
        ]
        fmt = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                # The "=" form: an id that starts with "-" would otherwise read as an option.
                f"--cluster-id={self._cluster_id()}",
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if fmt.returncode != 0:
            raise KafkaSetupError("formatting Kafka storage failed:\n" + (fmt.stdout + fmt.stderr)[-2000:])
        self._say(f"starting Apache Kafka on {self.bootstrap} (log: {self.log_file})")
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [
                    *base[:1],
                    f"-Xmx{self.settings.kafka_heap}",
                    f"-Xms{self.settings.kafka_heap}",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    *base[1:],
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
        self.pid_file.write_text(str(proc.pid))
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

    def _tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); False if it was not running."""
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
