"""``hookline up``: the whole pipeline on one machine, for development and demos.

It starts the local broker (unless one answers already), creates the topics, runs every role
as a child process with prefixed logs, points a demo webhook at a demo receiver, publishes
sample events, and shows the deliveries arriving. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import Producer

from hookline.clients import (
    BrokerUnavailable,
    TopicsNotVisible,
    admin_client,
    create_topics,
    port_open,
    producer_config,
    wait_for_broker,
    wait_topics_ready,
)
from hookline.local.kafka import LocalKafka
from hookline.settings import Settings
from hookline.signing import generate_secret
from hookline.webhooks import EVENT_TYPES

__all__ = ["Pipeline", "UpError"]

DEMO_ACCOUNT = "demo"
DEMO_WEBHOOK_NAME = "hookline demo receiver"
_VERIFIED = re.compile(r"^VERIFIED \S+\s+(\S+)")


class UpError(RuntimeError):
    """The pipeline could not be brought up; the message says why."""


@dataclass
class Child:
    name: str
    args: list[str]
    ready_url: str | None
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None


@dataclass
class Pipeline:
    settings: Settings
    receiver_port: int = 8001
    out: TextIO = sys.stdout
    children: list[Child] = field(default_factory=list)
    verified: set[str] = field(default_factory=set)
    started_kafka: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- local state (demo credentials, persisted so re-runs find their webhook) ------------------
    def _local_env(self) -> dict[str, str]:
        path = self.settings.home / "up.env"
        values: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                k, _, v = line.partition("=")
                if k and v:
                    values[k] = v
        changed = False
        if "HOOKLINE_SECRET_KEY" not in values:
            values["HOOKLINE_SECRET_KEY"] = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            changed = True
        if "HOOKLINE_DEMO_API_KEY" not in values:
            values["HOOKLINE_DEMO_API_KEY"] = "demo_" + secrets.token_urlsafe(24)
            changed = True
        if "HOOKLINE_RECEIVER_SECRET" not in values:
            values["HOOKLINE_RECEIVER_SECRET"] = generate_secret()
            changed = True
        if changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
            path.chmod(0o600)
        return values

    def say(self, msg: str) -> None:
        with self._lock:
            print(f"[up      ] {msg}", file=self.out, flush=True)

    # -- children ---------------------------------------------------------------------------------
    def _env(self, local: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        env.update(
            {
                "HOOKLINE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "HOOKLINE_TOPIC_PREFIX": s.topic_prefix,
                "HOOKLINE_HOME": str(s.home),
                "HOOKLINE_LOG_FORMAT": "text",
                "HOOKLINE_SECRET_KEY": s.secret_key.get() or local["HOOKLINE_SECRET_KEY"],
                "HOOKLINE_RECEIVER_SECRET": local["HOOKLINE_RECEIVER_SECRET"],
                "PYTHONUNBUFFERED": "1",
            }
        )
        # One log store for every child: the log sink writes it, the API (logs, web page) reads it.
        # Unset means a SQLite file under home, named by its absolute path (sqlite:////...).
        store = s.database_url.get().strip() or f"sqlite:///{(s.home / 'logs.sqlite3').resolve()}"
        env["HOOKLINE_DATABASE_URL"] = store
        keys = s.api_keys.get()
        demo_pair = f"{DEMO_ACCOUNT}:{local['HOOKLINE_DEMO_API_KEY']}"
        env["HOOKLINE_API_KEYS"] = f"{keys},{demo_pair}" if keys else demo_pair
        # The demo receiver listens on loopback: exempt it from the outbound address check.
        nets = set(s.allow_networks) | {"127.0.0.0/8"}
        env["HOOKLINE_ALLOW_NETWORKS"] = ",".join(sorted(nets))
        return env

    def _start(self, child: Child, env: dict[str, str]) -> None:
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "hookline.cli", *child.args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.pump.start()
        self.children.append(child)

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if child.name == "receiver":
                m = _VERIFIED.match(line)
                if m:
                    with self._lock:
                        self.verified.add(m.group(1))
            with self._lock:
                print(f"[{child.name:8}] {line}", file=self.out, flush=True)

    def _wait_ready(self, child: Child, timeout: float) -> None:
        assert child.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise UpError(
                    f"{child.name} exited with code {child.proc.returncode} (see its log lines above)"
                )
            if child.ready_url is None or _http(child.ready_url)[0] == 200:
                return
            time.sleep(0.25)
        raise UpError(f"{child.name} was not ready within {timeout:g}s")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGTERM)
        for child in reversed(self.children):
            if child.proc is not None:
                try:
                    child.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                    child.proc.wait()
            if child.pump is not None:
                child.pump.join(2)
        self.children.clear()
        if self.started_kafka:
            LocalKafka(self.settings).stop()
            self.say("stopped the local broker")

    # -- the run ----------------------------------------------------------------------------------
    def up(self, *, roles: list[str], demo: bool, events: int, keep_kafka: bool) -> str:
        """Bring everything up; return the demo API key. Raises :class:`UpError`."""
        s = self.settings
        local = LocalKafka(s)
        if s.kafka_bootstrap == local.bootstrap and not port_open("127.0.0.1", s.kafka_port, timeout=0.3):
            # Started before any Kafka client exists: librdkafka would print every refused
            # connection of a client waiting for it (about 20 lines a second).
            local.start()
            self.started_kafka = not keep_kafka
        else:
            try:
                wait_for_broker(s, timeout=30)
            except BrokerUnavailable as exc:
                raise UpError(str(exc)) from None
            self.say(f"using the broker at {s.kafka_bootstrap}")
        created, present = create_topics(s)
        self.say(f"topics: {len(created)} created, {len(present)} already present")
        _wait_settled(s, [*created, *present], timeout=60)
        local_env = self._local_env()
        env = self._env(local_env)
        ports = {
            "api": (["api"], f"http://127.0.0.1:{s.api_port}/readyz"),
            "router": (["router"], f"http://127.0.0.1:{s.router_metrics_port}/readyz"),
            "deliver": (["deliver"], f"http://127.0.0.1:{s.deliver_metrics_port}/readyz"),
            "logsink": (["logsink"], f"http://127.0.0.1:{s.logsink_metrics_port}/readyz"),
            "health": (["health"], f"http://127.0.0.1:{s.health_metrics_port}/readyz"),
        }
        wanted = [r for r in roles if r in ports]
        if demo:
            self._start(Child("receiver", ["receiver", "--port", str(self.receiver_port)], None), env)
        for role in wanted:
            args, url = ports[role]
            self._start(Child(role, args, url), env)
        for child in self.children:
            self._wait_ready(child, timeout=120)
            self.say(f"{child.name} is ready")
        api_key = local_env["HOOKLINE_DEMO_API_KEY"]
        if demo:
            self._demo_webhook(api_key, local_env["HOOKLINE_RECEIVER_SECRET"])
            if events:
                self.say(f"publishing {events} sample events for account {DEMO_ACCOUNT!r}")
                produced = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "hookline.cli",
                        "produce",
                        "--count",
                        str(events),
                        "--account",
                        DEMO_ACCOUNT,
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if produced.returncode != 0:
                    raise UpError("publishing sample events failed:\n" + produced.stderr[-2000:])
        return api_key

    def _demo_webhook(self, api_key: str, secret: str) -> None:
        base = f"http://127.0.0.1:{self.settings.api_port}/api/webhooks"
        url = f"http://127.0.0.1:{self.receiver_port}/webhooks"
        status, body = _http(base + "?limit=100", api_key=api_key)
        if status != 200:
            raise UpError(f"listing webhooks failed with {status}: {body[:300]!r}")
        existing = [w for w in json.loads(body)["items"] if w["name"] == DEMO_WEBHOOK_NAME]
        doc: dict[str, Any] = {
            "url": url,
            "active": True,
            "subscriptions": list(EVENT_TYPES),
        }
        if existing:
            status, body = _http(
                f"{base}/{existing[0]['id']}", api_key=api_key, method="PATCH", data={**doc, "secret": secret}
            )
        else:
            status, body = _http(
                base,
                api_key=api_key,
                method="POST",
                data={**doc, "name": DEMO_WEBHOOK_NAME, "secret": secret},
            )
        if status not in (200, 201):
            raise UpError(f"creating the demo webhook failed with {status}: {body[:300]!r}")
        self.say(f"demo webhook {json.loads(body)['id']} -> {url} (all six events)")

    def wait_verified(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.verified) >= count:
                    return True
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    raise UpError(f"{child.name} exited with code {child.proc.returncode}")
            time.sleep(0.2)
        return False


def _wait_settled(settings: Settings, topics: list[str], timeout: float) -> None:
    """Wait until every partition of ``topics`` answers its leader's offsets and producers get ids.

    A broker that has just started, or topics just created, answer "not leader for partition" for
    a moment, and a new broker answers its first producer-id requests with "coordinator load in
    progress" until its controller allocates a block of ids. The roles retry past both but print
    them, as failures, on the first screen; waiting here keeps it clean.
    """
    deadline = time.monotonic() + timeout
    try:
        wait_topics_ready(admin_client(settings), dict.fromkeys(topics, 1), timeout)
    except TopicsNotVisible as exc:
        raise UpError(str(exc)) from None
    states: list[str] = []
    producer = Producer(
        producer_config(
            settings,
            **{
                "statistics.interval.ms": 100,
                "stats_cb": lambda stats: states.append(json.loads(stats).get("eos", {}).get("idemp_state")),
                "log_level": 0,  # its own "coordinator load in progress" retries are expected here
            },
        )
    )
    while not states or states[-1] != "Assigned":
        if time.monotonic() > deadline:
            raise UpError(f"the broker handed out no producer id within {timeout:g}s")
        producer.poll(0.05)


def _http(
    url: str, *, api_key: str | None = None, method: str = "GET", data: dict[str, Any] | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    req = urllib.request.Request(
        url, method=method, headers=headers, data=json.dumps(data).encode() if data is not None else None
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""
