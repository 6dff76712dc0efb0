"""Endpoint health over the real pipeline (issue 11, points 1-3).

The API in this process; ``hookline health``, ``hookline router`` and ``hookline deliver`` as
processes; one real broker; receivers on 127.0.0.1. The threshold is 10 failed
messages (alerts at 5, 7, 9 and 10); retries come after 2 s and 8 s, so a message's last attempt
is due well after its webhook was disabled.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookline.clients import create_topics
from hookline.health import Streak, WebhookEvent
from hookline.local.ports import free_port
from hookline.records import DeliveryResult
from hookline.signing import message_id
from tests.api.conftest import KEY_A, RunningApi
from tests.processors.deliver.receivers import Got, Receiver, Reply
from tests.support import EventWriter, Role, TopicReader, event_record, role_env, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

THRESHOLD = 10
SCHEDULE = (2.0, 8.0)


@dataclass
class Stack:
    api: RunningApi
    router: Role
    health: Role
    health_port: int
    receiver: Receiver
    events: EventWriter
    alerts: TopicReader
    results: TopicReader

    def webhook(self, path: str) -> str:
        r = self.api.client(KEY_A).post(
            "/api/webhooks",
            json={"name": f"hook {path}", "url": self.receiver.url(path), "subscriptions": ["SALE_NEW"]},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def publish(self, webhook_id: str, count: int) -> list[str]:
        """``count`` SALE_NEW events of account A; the message ids they make for ``webhook_id``."""
        ids = []
        for _ in range(count):
            event_id = f"ev-{uuid.uuid4().hex[:12]}"
            self.events.put(event_record("acct-a", "SALE_NEW", event_id))
            ids.append(message_id(event_id, webhook_id))
        self.events.flush()
        return ids

    def alerts_for(self, webhook_id: str) -> list[WebhookEvent]:
        self.alerts.poll()
        found = [WebhookEvent.decode(m.value()) for m in self.alerts.records]
        return [e for e in found if e.webhook_id == webhook_id]

    def results_for(self, webhook_id: str) -> list[DeliveryResult]:
        self.results.poll()
        found = [DeliveryResult.decode(m.value()) for m in self.results.records]
        return [r for r in found if r.webhook_id == webhook_id]

    def finals(self, webhook_id: str) -> dict[str, DeliveryResult]:
        return {r.message_id: r for r in self.results_for(webhook_id) if r.final}


@pytest.fixture
def stack(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[Stack]:
    api = make_api(retry_schedule=SCHEDULE)
    create_topics(api.settings)  # the retry tiers of this schedule
    env = role_env(
        api.settings,
        HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8",
        HOOKLINE_SECRET_KEY=api.settings.secret_key.get(),
        HOOKLINE_RETRY_JITTER="0",
        HOOKLINE_DISABLE_AFTER_FAILURES=str(THRESHOLD),
        HOOKLINE_BREAKER_PROBE_INTERVAL="1",  # the breaker opened during the streak: probe soon
    )
    router_port, deliver_port, health_port = free_port(), free_port(), free_port()
    router = Role(
        ["router"], {**env, "HOOKLINE_ROUTER_METRICS_PORT": str(router_port)}, tmp_path / "router.log"
    )
    health = Role(
        ["health"], {**env, "HOOKLINE_HEALTH_METRICS_PORT": str(health_port)}, tmp_path / "health.log"
    )
    deliver = Role(
        ["deliver"], {**env, "HOOKLINE_DELIVER_METRICS_PORT": str(deliver_port)}, tmp_path / "deliver.log"
    )
    receiver = Receiver().start()
    events = EventWriter(api.settings)
    alerts = TopicReader(api.settings, "webhook-events")
    results = TopicReader(api.settings, "webhook-results")
    try:
        router.start()
        health.start()
        deliver.start()
        router.wait_ready(router_port, timeout=120)
        health.wait_ready(health_port, timeout=120)
        deliver.wait_ready(deliver_port, timeout=120)
        yield Stack(api, router, health, health_port, receiver, events, alerts, results)
    finally:
        router.stop()
        health.stop()
        deliver.stop()
        receiver.stop()
        alerts.close()
        results.close()


def always_500(n: int, got: Got) -> Reply:
    return Reply(500, body=b"down")


def figures(alerts: list[WebhookEvent]) -> list[tuple[str, int, int]]:
    return [(a.type, a.threshold_percent, a.failed_messages) for a in alerts]


EXPECTED = [
    ("webhook.failing", 50, 5),
    ("webhook.failing", 70, 7),
    ("webhook.failing", 90, 9),
    ("webhook.disabled", 100, 10),
]


def test_a_dead_receiver_is_announced_at_each_threshold_then_disabled_and_can_be_re_enabled(
    stack: Stack,
) -> None:
    healthy = threading.Event()
    stack.receiver.set("/dead", lambda n, got: Reply(200) if healthy.is_set() else Reply(500, body=b"down"))
    wid = stack.webhook("/dead")
    sent = stack.publish(wid, THRESHOLD)

    wait_until(lambda: len(stack.alerts_for(wid)) >= 4, 120, "four alerts")
    a = stack.api.client(KEY_A)
    hook = wait_until(
        lambda: (h := a.get(f"/api/webhooks/{wid}").json()) and not h["active"] and h, 60, "off"
    )
    assert hook["disabledAt"] is not None
    assert hook["disabledReason"].startswith("failing since ") and hook["disabledReason"].endswith(
        ": http_5xx"
    )

    # Every pending retry ends as a skip (not the DLQ): each message's final result is `skipped`.
    finals = wait_until(lambda: (f := stack.finals(wid)) and len(f) == THRESHOLD and f, 120, "all final")
    assert set(finals) == set(sent)
    assert {r.outcome for r in finals.values()} == {"skipped"}, {r.outcome for r in finals.values()}

    # While it is off, new events are not sent (the router routes nothing to an inactive webhook).
    muted = stack.publish(wid, 2)

    # Exactly one alert per threshold, the streak figures of each crossing, then nothing more.
    alerts = stack.alerts_for(wid)
    assert figures(alerts) == EXPECTED, figures(alerts)
    assert alerts[-1].disabled_reason == hook["disabledReason"]
    assert all(x.account_id == "acct-a" and x.last_error_class == "http_5xx" for x in alerts)
    assert len({x.event_id for x in alerts}) == 4

    # The owner's page shows the banner with its one-click re-enable form.
    from tests.api.test_page import sign_in

    browser, csrf = sign_in(stack.api)
    page = browser.get("/settings/webhooks").text
    assert f'data-disabled-webhook="{wid}"' in page
    assert f'action="/settings/webhooks/{wid}/enable"' in page
    assert "failing since" in page and "http_5xx" in page

    # Re-enable with the banner's one click: disabledAt / disabledReason are cleared; the next event arrives.
    healthy.set()
    r = browser.post(f"/settings/webhooks/{wid}/enable", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/settings/webhooks?notice=enabled", r.text
    doc = a.get(f"/api/webhooks/{wid}").json()
    assert (doc["active"], doc["disabledAt"], doc["disabledReason"]) == (True, None, None)
    assert "data-disabled-webhook" not in browser.get("/settings/webhooks").text
    [fresh] = stack.publish(wid, 1)
    wait_until(
        lambda: any(g.headers.get("webhook-id") == fresh for g in stack.receiver.got("/dead")),
        60,
        "the event after re-enabling delivered",
    )
    recovered = wait_until(
        lambda: [x for x in stack.alerts_for(wid) if x.type == "webhook.recovered"], 60, "webhook.recovered"
    )
    assert len(recovered) == 1 and recovered[0].failed_messages == THRESHOLD

    # Nothing was sent while it was off: no request after it was disabled (bar the view's
    # propagation) until the owner switched it back on, and the muted events never arrived.
    disabled_at = alerts[-1].occurred_at / 1000
    late = [
        g
        for g in stack.receiver.got("/dead")
        if disabled_at + 2 < g.at and g.headers.get("webhook-id") != fresh
    ]
    assert late == [], [(g.headers.get("webhook-id"), g.at - disabled_at) for g in late]
    got_ids = {g.headers.get("webhook-id") for g in stack.receiver.got("/dead")}
    assert not got_ids & set(muted)


def streak_of(reader: TopicReader, wid: str) -> Streak | None:
    reader.poll()
    mine = [m for m in reader.records if m.key() == wid.encode()]
    return Streak.from_bytes(mine[-1].value()) if mine else None


def test_a_killed_and_restarted_health_processor_continues_the_streak(stack: Stack) -> None:
    stack.receiver.set("/dead", always_500)
    wid = stack.webhook("/dead")
    stack.publish(wid, 6)
    changelog = TopicReader(stack.api.settings, "hookline-health-webhook-health-changelog")
    try:
        wait_until(
            lambda: (s := streak_of(changelog, wid)) is not None and s.failed_messages == 6,
            120,
            "a streak of 6 in the changelog",
        )
        assert figures(stack.alerts_for(wid)) == EXPECTED[:1]
        stack.health.kill(signal.SIGKILL)
        proc = stack.health.proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, 60, "the killed health processor gone")
        stack.health.start()
        stack.health.wait_ready(stack.health_port, timeout=120)
        stack.publish(wid, 4)
        try:
            wait_until(lambda: len(stack.alerts_for(wid)) >= 4, 120, "the other three alerts")
        except AssertionError:
            _status, body = stack.health.get(stack.health_port, "/metrics")
            wanted = ("hookline_health",)
            lines = [x for x in body.decode().splitlines() if x.startswith(wanted)]
            raise AssertionError("\n".join(lines)) from None
        wait_until(lambda: len(stack.finals(wid)) == 10, 120, "every message final")
        wait_until(
            lambda: (s := streak_of(changelog, wid)) is not None and s.offset >= max_offset(stack, wid),
            60,
            "the health processor caught up with the results",
        )
    finally:
        changelog.close()
    assert figures(stack.alerts_for(wid)) == EXPECTED, figures(stack.alerts_for(wid))
    assert "health: webhook.disabled webhook" in stack.health.log_path.read_text()
    # PATCH {"active": true} is the API's way back; it clears what the processor set.
    r = stack.api.client(KEY_A).patch(f"/api/webhooks/{wid}", json={"active": True})
    assert r.status_code == 200, r.text
    assert (r.json()["active"], r.json()["disabledAt"], r.json()["disabledReason"]) == (True, None, None)


def max_offset(stack: Stack, wid: str) -> int:
    """The offset of the webhook's last result that changes a streak (skips change nothing)."""
    stack.results.poll()
    mine = [m for m in stack.results.records if m.key() == wid.encode()]
    return max(m.offset() for m in mine if DeliveryResult.decode(m.value()).outcome != "skipped")


def test_a_flapping_receiver_is_never_disabled(stack: Stack) -> None:
    # Every third request fails: its retry (or the next message) succeeds, so no streak grows.
    stack.receiver.set("/flaky", lambda n, got: Reply(500) if n % 3 == 1 else Reply(200))
    wid = stack.webhook("/flaky")
    sent = stack.publish(wid, 30)
    finals = wait_until(lambda: (f := stack.finals(wid)) and len(f) == 30 and f, 120, "30 messages final")
    assert set(finals) == set(sent)
    assert sum(r.outcome == "delivered" for r in finals.values()) >= 20  # an unlucky one may run out
    failed = [r for r in stack.results_for(wid) if r.outcome == "failed"]
    assert len(failed) >= 10  # it did fail, a third of the time
    total = len(stack.results_for(wid))

    def processed() -> bool:
        _status, body = stack.health.get(stack.health_port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith("hookline_health_results_total "):
                return float(line.split()[1]) >= total
        return False

    wait_until(processed, 60, f"the health processor read {total} results")
    assert stack.alerts_for(wid) == []
    assert stack.api.client(KEY_A).get(f"/api/webhooks/{wid}").json()["active"]
