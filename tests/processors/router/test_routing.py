"""The router's fan-out (pure): one event and the account's webhooks -> delivery tasks; and its handler
with a config view that cannot catch up."""

from __future__ import annotations

import asyncio
import dataclasses
import types

import orjson
from prometheus_client import CollectorRegistry

from hookline.metrics import RouterMetrics
from hookline.payloads import build_payload
from hookline.records import DeliveryTask
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret
from hookline.signing import message_id
from hookline.webhooks import Subscription, Webhook
from processors.router.app import Router
from processors.router.routing import tasks_for
from schemas.codec import encode
from tests.support import event_record

SEALER = Sealer.from_secret(Secret(generate_key()))
NOW = 1_796_400_000_000


def hook(webhook_id: str, *events: str, account: str = "acct", **kw: object) -> Webhook:
    base = Webhook(
        id=webhook_id, account_id=account, name=webhook_id, url="https://example.com/h",
        secret=SEALER.seal(webhook_id, "s3cret-value"), subscriptions=tuple(Subscription(e) for e in events),
        active=True, created_at=0, updated_at=0, version=3,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def event(event_type: str = "CONTACT_CREATED", account: str = "acct", event_id: str = "evt-1") -> dict:
    return event_record(account, event_type, event_id, occurred_at=NOW - 5000)


def test_a_task_per_subscribed_active_webhook_of_the_account_in_id_order() -> None:
    hooks = [
        hook("wh-b", "CONTACT_CREATED"),
        hook("wh-a", "CONTACT_CREATED", "SALE_NEW"),
        hook("wh-other-event", "SALE_NEW"),
        hook("wh-inactive", "CONTACT_CREATED", active=False),
        hook("wh-disabled-sub", subscriptions=(Subscription("CONTACT_CREATED", NOW, "410 Gone"),)),
        hook("wh-other-account", "CONTACT_CREATED", account="someone-else"),
    ]
    tasks = tasks_for(event(), hooks, NOW)
    assert [t.webhook_id for t in tasks] == ["wh-a", "wh-b"]


def test_every_task_carries_the_event_the_webhook_and_a_stable_message_id() -> None:
    ev = event("CONTACT_CREATED", event_id="evt-42")
    [task] = tasks_for(ev, [hook("wh-1", "CONTACT_CREATED")], NOW)
    assert task == DeliveryTask(
        message_id=message_id("evt-42", "wh-1"), event_id="evt-42", webhook_id="wh-1", account_id="acct",
        event_type="CONTACT_CREATED", event_occurred_at=NOW - 5000, routed_at=NOW, config_version=3,
        payload=build_payload(ev), attempt=1, due_at=0, trigger="automatic", first_attempt_at=None,
    )
    # Routed again (a restart re-reads the event): the same message id, so receivers deduplicate.
    [again] = tasks_for(ev, [hook("wh-1", "CONTACT_CREATED")], NOW + 60_000)
    assert again.message_id == task.message_id and again.routed_at == NOW + 60_000
    assert DeliveryTask.decode(task.encode()) == task


def test_the_body_is_built_once_and_shared_by_every_task() -> None:
    hooks = [hook(f"wh-{i}", "CONTACT_CREATED") for i in range(5)]
    tasks = tasks_for(event(), hooks, NOW)
    assert len(tasks) == 5 and len({id(t.payload) for t in tasks}) == 1
    assert orjson.loads(tasks[0].payload) == orjson.loads(build_payload(event()))
    assert len({t.message_id for t in tasks}) == 5


def test_no_subscriber_means_no_task_and_no_body() -> None:
    assert tasks_for(event("SALE_NEW"), [hook("wh", "CONTACT_CREATED")], NOW) == []
    assert tasks_for(event(), [], NOW) == []


class _View:
    """A config view whose catch-up fails (the broker cannot say where the config topic ends)."""

    def __init__(self, hooks: list[Webhook], caught_up: bool) -> None:
        self.hooks, self.caught_up = hooks, caught_up

    async def catch_up_async(self, written_before_ms: float) -> bool:
        return self.caught_up

    def subscribers(self, account_id: str, event_type: str) -> list[Webhook]:
        return [h for h in self.hooks if h.account_id == account_id]


class _Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key: bytes, value: bytes) -> None:
        self.sent.append(value)


def test_an_event_is_routed_and_counted_when_the_config_view_cannot_catch_up() -> None:
    """The router routes on the view as it stands and counts the event (docs/architecture.md §4)."""
    for caught_up, counted in ((True, 0.0), (False, 1.0)):
        metrics = RouterMetrics(CollectorRegistry())
        deliveries = _Topic()
        router = types.SimpleNamespace(
            view=_View([hook("wh-a", "CONTACT_CREATED")], caught_up), metrics=metrics, deliveries=deliveries
        )
        msg = types.SimpleNamespace(
            value=encode("Event", event()), timestamp=NOW / 1000, topic="t", partition=0, offset=0, key=b"k"
        )
        asyncio.run(Router.handle(router, msg))  # type: ignore[arg-type]
        assert len(deliveries.sent) == 1
        got = metrics.registry.get_sample_value("hookline_router_config_catch_up_failed_total")
        assert got == counted, (caught_up, got)
