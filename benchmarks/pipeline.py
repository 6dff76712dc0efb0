"""One pipeline under test: a topic prefix, its webhooks (real sealed secrets), a router and a worker.

Roles run as child processes (``python -m benchmarks.launch router|deliver``) with the production
code and settings, except what a benchmark has to change: the loopback sink is allowed
(``HOOKLINE_ALLOW_NETWORKS=127.0.0.0/8``), the retry schedule is compressed to seconds, and a
scenario may raise the worker's concurrency limits through their ``HOOKLINE_DELIVER_*`` settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from benchmarks.processes import Child, http_get, wait_for
from benchmarks.traffic import webhook_secret
from hookline.local.ports import free_port

__all__ = ["BENCH_RETRY_SCHEDULE", "Pipeline", "metric"]

#: Retry tiers in seconds: tasks deferred by a full per-webhook backlog come back within a second.
BENCH_RETRY_SCHEDULE = (1.0, 2.0, 5.0)


def metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` in a Prometheus text exposition."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        total += float(m.group(1))
    return total


class Pipeline:
    """Topics, webhooks and roles of one prefix. ``groups`` maps each account to its webhook ids."""

    def __init__(
        self,
        *,
        name: str,
        prefix: str,
        bootstrap: str,
        home: Path,
        logs: Path,
        sink_url: str,
        seed: str,
        secret_key: str,
        groups: dict[str, list[str]],
        log_level: str = "INFO",
        ordered: frozenset[str] = frozenset(),
    ) -> None:
        from hookline.settings import load_settings

        self.name = name
        self.prefix = prefix
        self.bootstrap = bootstrap
        self.home = home
        self.logs = logs
        self.sink_url = sink_url
        self.seed = seed
        self.secret_key = secret_key
        self.groups = groups
        self.ordered = ordered  # webhooks with ``ordering: "contact"`` (docs/architecture.md §6)
        self.accounts = list(groups)
        self.log_level = log_level
        self.settings = load_settings(
            {},
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            retry_schedule=BENCH_RETRY_SCHEDULE,
            home=home,
        )
        self.accounts_file = logs / f"{name}-accounts.json"
        self.router: Child | None = None
        self.worker: Child | None = None
        self.logsink: Child | None = None
        self.health: Child | None = None
        self.api: Child | None = None
        self.router_port = 0
        self.worker_port = 0
        self.logsink_port = 0
        self.health_port = 0
        self.api_port = 0
        self.worker_settings: dict[str, str] = {}

    @property
    def webhook_count(self) -> int:
        return sum(len(h) for h in self.groups.values())

    def hooks_of(self, seq: int) -> list[str]:
        """The webhooks owed a delivery of event ``seq`` (the generator takes accounts in turn)."""
        return self.groups[self.accounts[seq % len(self.accounts)]]

    def fanout(self) -> float:
        return self.webhook_count / len(self.accounts)

    # -- setup ---------------------------------------------------------------------------------
    def create(self) -> Pipeline:
        """Create every topic of the prefix and write each webhook's config (sealed secret)."""
        from confluent_kafka import Producer

        from hookline.clients import create_topics, producer_config
        from hookline.sealing import Sealer, parse_keys
        from hookline.topics import CONFIG
        from hookline.webhooks import EVENT_TYPES, Subscription, Webhook
        from schemas.codec import encode

        create_topics(self.settings)
        self.accounts_file.write_bytes(orjson.dumps(self.accounts))
        sealer = Sealer(parse_keys(self.secret_key))
        producer = Producer(producer_config(self.settings, **{"client.id": "hookline-bench-configs"}))
        topic = self.settings.topic(CONFIG)
        now = 1_700_000_000_000
        for account, hooks in self.groups.items():
            for wid in hooks:
                hook = Webhook(
                    id=wid,
                    account_id=account,
                    name=f"bench {wid}",
                    url=f"{self.sink_url}/hook/{wid}",
                    secret=sealer.seal(wid, webhook_secret(self.seed, wid)),
                    subscriptions=tuple(Subscription(e) for e in EVENT_TYPES),
                    active=True,
                    created_at=now,
                    updated_at=now,
                    version=1,
                    ordering="contact" if wid in self.ordered else "none",
                )
                while True:
                    try:
                        producer.produce(
                            topic, key=wid.encode(), value=encode("WebhookConfig", hook.to_record())
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
        if producer.flush(60) != 0:
            raise RuntimeError(f"{self.name}: webhook configs were not all acknowledged")
        return self

    def role_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOOKLINE_KAFKA_BOOTSTRAP": self.bootstrap,
            "HOOKLINE_TOPIC_PREFIX": self.prefix,
            "HOOKLINE_HOME": str(self.home),
            "HOOKLINE_SECRET_KEY": self.secret_key,
            "HOOKLINE_ALLOW_NETWORKS": "127.0.0.0/8",
            "HOOKLINE_RETRY_SCHEDULE": ",".join(f"{d:g}" for d in BENCH_RETRY_SCHEDULE),
            "HOOKLINE_LOG_FORMAT": "text",
            "HOOKLINE_LOG_LEVEL": self.log_level,
            # The delivery log of this pipeline: the log sink writes it, the API reads it.
            "HOOKLINE_DATABASE_URL": f"sqlite:///{(self.logs / f'{self.name}-logs.sqlite3').resolve()}",
            "HOOKLINE_API_KEYS": ",".join(f"{a}:bench-key-{i}" for i, a in enumerate(self.accounts)),
        }
        env.update(extra or {})
        return env

    # -- roles ---------------------------------------------------------------------------------
    def start_router(self, *, extra_env: dict[str, str] | None = None) -> Child:
        self.router_port = free_port()
        self.router = Child.python(
            f"{self.name}-router",
            "benchmarks.launch",
            ["router", "--metrics-port", str(self.router_port)],
            env=self.role_env(extra_env),
            log_path=self.logs / f"{self.name}-router.log",
        ).start()
        return self.router

    def start_worker(
        self, settings: dict[str, Any] | None = None, *, extra_env: dict[str, str] | None = None
    ) -> Child:
        """Start the delivery worker; ``settings`` are Settings fields (``deliver_concurrency=512``)."""
        self.worker_settings = {f"HOOKLINE_{k.upper()}": str(v) for k, v in (settings or {}).items()}
        self.worker_port = free_port()
        env = self.role_env({**self.worker_settings, **(extra_env or {})})
        self.worker = Child.python(
            f"{self.name}-worker",
            "benchmarks.launch",
            ["deliver", "--metrics-port", str(self.worker_port)],
            env=env,
            log_path=self.logs / f"{self.name}-worker.log",
        ).start()
        return self.worker

    def _start_consumer_role(self, role: str) -> tuple[Child, int]:
        port = free_port()
        child = Child.python(
            f"{self.name}-{role}",
            "benchmarks.launch",
            [role, "--metrics-port", str(port)],
            env=self.role_env(),
            log_path=self.logs / f"{self.name}-{role}.log",
        ).start()
        return child, port

    def start_logsink(self) -> Child:
        """The log sink, writing this pipeline's SQLite delivery log (every bench run has it)."""
        self.logsink, self.logsink_port = self._start_consumer_role("logsink")
        return self.logsink

    def start_health(self) -> Child:
        """The health processor over this pipeline's results (every bench run has it, as production does)."""
        self.health, self.health_port = self._start_consumer_role("health")
        return self.health

    def start_api(self) -> Child:
        """The management API over the same log store and config topic (its idle cost counts too)."""
        self.api_port = free_port()
        self.api = Child.python(
            f"{self.name}-api",
            "benchmarks.launch",
            ["api", "--host", "127.0.0.1", "--port", str(self.api_port)],
            env=self.role_env(),
            log_path=self.logs / f"{self.name}-api.log",
        ).start()
        return self.api

    def wait_ready(self, timeout: float = 120.0) -> None:
        roles = (
            (self.router, self.router_port),
            (self.worker, self.worker_port),
            (self.logsink, self.logsink_port),
            (self.health, self.health_port),
            (self.api, self.api_port),
        )
        for child, port in roles:
            if child is None:
                continue

            def ready(child: Child = child, port: int = port) -> bool:
                child.check_alive()
                return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200

            wait_for(ready, timeout, f"{child.name} ready", interval=0.2)

    def worker_metrics(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.worker_port}/metrics")
        return body.decode() if status == 200 else ""

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=30)
            self.worker = None

    def stop_router(self) -> None:
        if self.router is not None:
            self.router.stop(timeout=30)
            self.router = None

    def stop(self) -> None:
        self.stop_worker()
        self.stop_router()
        for child in (self.logsink, self.health, self.api):
            if child is not None:
                child.stop(timeout=30)
        self.logsink = self.health = self.api = None

    def topic_names(self) -> list[str]:
        from hookline.topics import all_topics

        return [spec.full_name(self.settings) for spec in all_topics(self.settings)]
