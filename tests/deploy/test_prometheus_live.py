"""A real Prometheus scrapes a locally running pipeline under test traffic; then every PromQL
expression of every dashboard panel and alert rule runs through its HTTP API.

The pipeline: ``hookline router``, ``deliver``, ``api`` (and ``logsink`` when the CLI has it) as
child processes on the session's broker, a receiver on 127.0.0.1 that answers 200, 500 once, 500
always or 410 by path, webhooks with real sealed secrets, events of all six kinds, one event no
webhook wants, one unreadable event record, a task for a deleted webhook, and a webhook whose
address is refused. That gives every panel something to show; the few that legitimately stay
empty are listed below with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from confluent_kafka import Producer

from hookline.cli import COMMANDS
from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret, Settings
from hookline.signing import message_id
from hookline.webhooks import EVENT_TYPES, Subscription, Webhook
from schemas.codec import encode
from tests.deploy.conftest import DEPLOY
from tests.deploy.promql import alert_queries, dashboard_queries, substitute
from tests.support import ConfigWriter, EventWriter, Role, event_record, role_env, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ACCOUNT = "acct-live"
API_KEY = "live-" + "k" * 40
#: Panels (dashboard file, title, refId) that may return nothing in a short run, and why.
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {}
#: The same for the log sink's panels, when ``hookline logsink`` is not part of the CLI yet.
LOGSINK_PANELS = {
    ("overview.json", "Results written to the log store", "A"),
    ("overview.json", "Results written to the log store", "B"),
    ("overview.json", "Log store batch write (p50 / p99)", "A"),
    ("overview.json", "Log store batch write (p50 / p99)", "B"),
    ("overview.json", "Log store errors and dead letters", "A"),
    ("overview.json", "Log store errors and dead letters", "B"),
    ("overview.json", "Log store up", "A"),
}
HAS_LOGSINK = "logsink" in COMMANDS
if not HAS_LOGSINK:
    EXPECTED_EMPTY.update(
        dict.fromkeys(LOGSINK_PANELS, "`hookline logsink` is not registered in hookline.cli")
    )


# -- a receiver on 127.0.0.1 -----------------------------------------------------------------------


@dataclass
class Receiver:
    """``/ok`` 200; ``/flaky`` 500 on a message's first attempt, then 200; ``/down`` 500; ``/gone`` 410."""

    port: int = field(default_factory=free_port)
    hits: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        path = request.path.strip("/")
        self.hits[path] += 1
        msg = request.headers.get("x-webhook-message-id", "")
        if path == "ok":
            return web.Response(status=200)
        if path == "flaky":
            first = msg not in self.seen
            self.seen.add(msg)
            return web.Response(status=500 if first else 200)
        if path == "gone":
            return web.Response(status=410)
        return web.Response(status=500)

    def start(self) -> Receiver:
        started = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("POST", "/{path}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="receiver", daemon=True)
        self._thread.start()
        assert started.wait(60)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


# -- a real Prometheus -----------------------------------------------------------------------------


class Prometheus:
    """The Debian ``prometheus`` binary with deploy/prometheus/prometheus.yml, targets rewritten."""

    def __init__(self, binary: str, tmp: Path, targets: dict[str, int]) -> None:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "1s"
        config["global"]["evaluation_interval"] = "1s"
        config["rule_files"] = [str(DEPLOY / "prometheus" / "rules.yml")]
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        assert set(jobs) == {f"hookline-{role}" for role in ("api", "router", "deliver", "logsink", "health")}
        for job, port in targets.items():
            jobs[job]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        config["scrape_configs"] = [jobs[j] for j in targets]
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = tmp / "prometheus.log"
        self.args = [
            binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, 60, "prometheus ready", interval=0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as e:
            with e:
                return dict(json.load(e))

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def value(self, expr: str) -> float:
        """The single value of ``expr``, or 0 when it returns nothing."""
        doc = self.query(expr)
        assert doc["status"] == "success", (expr, doc)
        result = doc["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0


# -- the pipeline ------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    settings: Settings
    tmp: Path
    receiver: Receiver
    secret_key: str = field(default_factory=generate_key)
    roles: dict[str, tuple[Role, int]] = field(default_factory=dict)

    def webhooks(self) -> list[Webhook]:
        sealer = Sealer.from_secret(Secret(self.secret_key))
        now = int(time.time() * 1000)
        # (id, url, events): a healthy receiver, one that fails once, one that always fails, one that
        # is gone (410: disabled), one on an address the worker refuses ([::1] is not allow-listed).
        plan = [
            ("wh-ok", self.receiver.url("ok"), EVENT_TYPES),
            ("wh-flaky", self.receiver.url("flaky"), EVENT_TYPES),
            ("wh-down", self.receiver.url("down"), ("SALE_NEW",)),
            ("wh-gone", self.receiver.url("gone"), ("CONTACT_CREATED",)),
            ("wh-blocked", f"http://[::1]:{self.receiver.port}/ok", ("CONTACT_OPT_IN",)),
        ]
        return [
            Webhook(
                id=wid, account_id=ACCOUNT, name=f"live {wid}", url=url,
                secret=sealer.seal(wid, "whsec_" + uuid.uuid4().hex),
                subscriptions=tuple(Subscription(e) for e in events),
                active=True, created_at=now, updated_at=now, version=1,
            )
            for wid, url, events in plan
        ]  # fmt: skip

    def start_role(self, role: str, port_var: str, **env: str) -> None:
        port = free_port()
        extra = {port_var: str(port), "HOOKLINE_SECRET_KEY": self.secret_key, **env}
        r = Role([role], role_env(self.settings, **extra), self.tmp / f"{role}.log").start()
        self.roles[role] = (r, port)

    def start(self) -> None:
        self.start_role("router", "HOOKLINE_ROUTER_METRICS_PORT")
        self.start_role("deliver", "HOOKLINE_DELIVER_METRICS_PORT", HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8")
        self.start_role("api", "HOOKLINE_API_PORT", HOOKLINE_API_KEYS=f"{ACCOUNT}:{API_KEY}")
        if HAS_LOGSINK:
            self.start_role("logsink", "HOOKLINE_LOGSINK_METRICS_PORT")
        # /down's five SALE_NEW messages a wave (and /blocked's five) cross 50 % of 16 in wave 2: a
        # webhook.failing event, but never 100 %, so neither is switched off and wave 2's retries still
        # end in the DLQ (a disabled webhook's pending retries end as skips).
        self.start_role("health", "HOOKLINE_HEALTH_METRICS_PORT", HOOKLINE_DISABLE_AFTER_FAILURES="16")
        for role, (r, port) in self.roles.items():
            r.wait_ready(port, timeout=120 if role in ("router", "health") else 60)

    def stop(self) -> None:
        for r, _port in self.roles.values():
            r.stop()

    def api_get(self, path: str, key: str | None) -> int:
        port = self.roles["api"][1]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": key} if key else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)


def skipped_task(settings: Settings) -> tuple[bytes, bytes]:
    """A task for a webhook that does not exist (deleted after routing): the worker skips it."""
    now = int(time.time() * 1000)
    event_id, webhook_id = f"evt-{uuid.uuid4().hex[:12]}", "wh-deleted"
    task = {
        "messageId": message_id(event_id, webhook_id), "eventId": event_id, "webhookId": webhook_id,
        "accountId": ACCOUNT, "eventType": "CONTACT_CREATED", "eventOccurredAt": now, "routedAt": now,
        "configVersion": 1, "payload": orjson.dumps({"contact": {"id": 1}}), "attempt": 1, "dueAt": 0,
        "trigger": "automatic", "firstAttemptAt": None,
    }  # fmt: skip
    return webhook_id.encode(), encode("DeliveryTask", task)


@pytest.fixture
def pipeline(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    receiver = Receiver().start()
    p = Pipeline(settings, tmp_path, receiver)
    configs = ConfigWriter(settings)
    for hook in p.webhooks():
        configs.put(hook)
    configs.flush()
    try:
        p.start()
        yield p
    finally:
        p.stop()
        receiver.stop()


@pytest.fixture
def prometheus(pipeline: Pipeline, prometheus_bin: str, tmp_path: Path) -> Iterator[Prometheus]:
    targets = {f"hookline-{role}": port for role, (_r, port) in pipeline.roles.items()}
    (tmp_path / "prometheus").mkdir()
    prom = Prometheus(prometheus_bin, tmp_path / "prometheus", targets).start()
    try:
        yield prom
    finally:
        prom.stop()


def send_traffic(settings: Settings, pipeline: Pipeline, wave: int) -> None:
    """Events of all six kinds, unmatched and unreadable ones, a task to skip, API requests."""
    events = EventWriter(settings)
    for i in range(5):
        for event_type in EVENT_TYPES:
            events.put(event_record(ACCOUNT, event_type, f"evt-{wave}-{event_type.lower()}-{i}"))
        events.put(event_record("acct-nobody", "SALE_NEW", f"evt-{wave}-unmatched-{i}"))
    events.raw("contact-events", ACCOUNT.encode(), b"not an avro record")  # the router dead-letters it
    events.flush()
    producer = Producer(producer_config(settings))
    key, value = skipped_task(settings)
    producer.produce(settings.topic("webhook-deliveries"), key=key, value=value)
    assert producer.flush(30) == 0
    assert pipeline.api_get("/api/webhooks", API_KEY) == 200
    assert pipeline.api_get("/api/webhooks", None) == 401
    assert pipeline.api_get("/api/webhooks/wh-nope", API_KEY) == 404


def wait_for(
    prometheus: Prometheus, pipeline: Pipeline, conditions: dict[str, str], timeout: float = 120
) -> None:
    """Wait until every expression in ``conditions`` is above zero in Prometheus."""
    try:
        wait_until(
            lambda: all(prometheus.value(e) > 0 for e in conditions.values()),
            timeout,
            "scrapes",
            interval=1.0,
        )
    except AssertionError:
        missing = [name for name, expr in conditions.items() if prometheus.value(expr) <= 0]
        logs = "\n".join(f"--- {role} ---\n{r.log_tail(30)}" for role, (r, _p) in pipeline.roles.items())
        raise AssertionError(
            f"never scraped: {missing}; receiver hits {dict(pipeline.receiver.hits)}\n{logs}"
        ) from None


def _non_empty(result: dict[str, Any]) -> bool:
    data = result["data"]
    if data["resultType"] == "scalar":
        return True
    return len(data["result"]) > 0


def test_every_dashboard_and_alert_query_runs_on_real_scraped_data(
    prometheus_bin: str, settings: Settings, pipeline: Pipeline, prometheus: Prometheus
):
    del prometheus_bin  # requested first: a missing binary fails (CI) or skips before the pipeline starts
    # -- every target scraped before any traffic, so no first increment is lost to rate() --------
    roles = len(pipeline.roles)
    wait_until(
        lambda: prometheus.value('count(count_over_time(up{job=~"hookline-.+"}[1m]) >= 2)') == roles,
        60,
        "two scrapes of every role",
        interval=0.5,
    )

    # -- wave 1 creates every labelled series; wave 2 makes them move -----------------------------
    conditions = {
        "delivered": 'sum(hookline_deliveries_total{outcome="delivered"})',
        "failed": 'sum(hookline_deliveries_total{outcome="failed"})',
        "dead-lettered by the worker": "sum(hookline_delivery_dead_lettered_total)",
        "dead-lettered by the router": "sum(hookline_router_dead_lettered_total)",
        "skipped": 'sum(hookline_deliveries_total{outcome="skipped"})',
        "blocked": "sum(hookline_blocked_addresses_total)",
        "disabled": "sum(hookline_webhooks_disabled_total)",
        "unmatched": "sum(hookline_router_events_unmatched_total)",
        "retried": "sum(hookline_retries_scheduled_total)",
        "api requests": "sum(hookline_api_requests_total)",
        "results read by the health processor": "sum(hookline_health_results_total)",
        # the mean attempt number of finished messages is above 1: some needed a retry
        "finished after a retry": "sum(hookline_delivery_attempt_number_sum)"
        " - sum(hookline_delivery_attempt_number_count)",
    }
    if HAS_LOGSINK:
        conditions["results stored"] = "sum(hookline_logsink_results_stored_total)"
    send_traffic(settings, pipeline, wave=1)
    wait_for(prometheus, pipeline, conditions)
    # Wave 2 moves the counters past what wave 1 left (compared with the values after wave 1, not with
    # increase() over a wall-clock window: a shared machine's clock may be stepped during the test).
    totals = {
        outcome: f'sum(hookline_deliveries_total{{outcome="{outcome}"}})'
        for outcome in ("delivered", "failed", "dead_lettered")
    }
    after_wave_1 = {outcome: prometheus.value(expr) for outcome, expr in totals.items()}
    send_traffic(settings, pipeline, wave=2)
    wait_for(
        prometheus,
        pipeline,
        {
            **{f"{name} in wave 2": f"{expr} - {after_wave_1[name]!r}" for name, expr in totals.items()},
            "failing webhook announced": 'sum(hookline_health_webhook_events_total{type="webhook.failing"})',
        },
    )

    # -- every target up, every rule loaded and evaluated without error -------------------------
    up = prometheus.query('up{job=~"hookline-.+"}')["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {
        f"hookline-{role}": "1" for role in pipeline.roles
    }
    groups = prometheus.api("rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {q.source.split(": ")[1] for q in alert_queries(DEPLOY / "prometheus" / "rules.yml")}
    assert {name: r["health"] for name, r in rules.items()} == dict.fromkeys(rules, "ok")

    # -- every panel and alert expression ------------------------------------------------------
    problems: list[str] = []
    empty: list[str] = []
    answered: dict[str, dict[str, Any]] = {}

    def panels_answered() -> bool:
        # Asked again until every panel has data: on a busy machine a series that appeared in the
        # last scrape has one sample, too few for rate() or increase() until the next scrape.
        problems.clear()
        empty.clear()
        for path in sorted((DEPLOY / "grafana").glob("*.json")):
            for q in dashboard_queries(path):
                doc = prometheus.query(substitute(q.expr, rate_interval="2m", range_="10m"))
                if doc["status"] != "success":
                    problems.append(f"{q.source}: {doc.get('error')}")
                    continue
                answered[q.source] = doc
                key = (path.name, q.source.split(": ", 1)[1].rsplit(" [", 1)[0], q.source[-2])
                if not _non_empty(doc) and key not in EXPECTED_EMPTY:
                    empty.append(q.source)
        return not problems and not empty

    with contextlib.suppress(AssertionError):  # the assertions below name what is missing
        wait_until(panels_answered, 60, "every panel answered with data", interval=2.0)
    for q in alert_queries(DEPLOY / "prometheus" / "rules.yml"):
        doc = prometheus.query(q.expr)  # alerts may well be silent; they must parse and evaluate
        if doc["status"] != "success":
            problems.append(f"{q.source}: {doc.get('error')}")
    assert problems == [], "queries Prometheus refused"
    assert empty == [], "panels without data"

    # -- a few panels say what the traffic did ----------------------------------------------------
    def labels(source: str, label: str) -> set[str]:
        return {r["metric"].get(label, "") for r in answered[source]["data"]["result"]}

    assert labels("overview.json: Deliveries out by outcome [A]", "outcome") >= {
        "delivered", "failed", "dead_lettered", "skipped"
    }  # fmt: skip
    assert labels("overview.json: Events in [A]", "event_type") == set(EVENT_TYPES)
    assert labels("delivery.json: Attempts by status class [A]", "status_class") >= {
        "2xx",
        "4xx",
        "5xx",
        "none",
    }
    assert labels("delivery.json: Failed attempts by error class [A]", "error_class") >= {
        "http_5xx", "http_4xx", "blocked_address"
    }  # fmt: skip
    assert labels("overview.json: Consumer lag per role [A]", "role") >= {"deliver"} | (
        {"logsink"} if HAS_LOGSINK else set()
    )
    (rate,) = answered["overview.json: Success rate [A]"]["data"]["result"]
    assert 0 < float(rate["value"][1]) < 1
    p99 = answered["overview.json: Event to delivery (p50 / p95 / p99) [C]"]["data"]["result"]
    assert p99 and not math.isnan(float(p99[0]["value"][1]))
