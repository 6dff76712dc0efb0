"""hookline.configview without a broker: what one consumed config record does to the view.

The consumer thread is never started; records are handed to ``ConfigView._apply`` as the thread
would hand them over (key bytes, value bytes or None, partition, offset), and the "caught up" line
is set on ``_targets`` as the thread sets it from the high watermarks at start.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from hookline.configview import ConfigView
from hookline.metrics import ConfigViewMetrics
from hookline.settings import load_settings
from hookline.webhooks import EVENT_TYPES, SealedSecret, Subscription, Webhook
from schemas.codec import encode

T0 = 1_717_243_200_000  # 2024-06-01T12:00:00Z


def hook(
    webhook_id: str = "wh-1",
    account_id: str = "acct-a",
    *,
    version: int = 1,
    created_at: int = T0,
    events: tuple[str, ...] = EVENT_TYPES,
    disabled: tuple[str, ...] = (),
    active: bool = True,
    name: str | None = None,
) -> Webhook:
    return Webhook(
        id=webhook_id,
        account_id=account_id,
        name=name or f"hook {webhook_id} v{version}",
        url=f"https://receiver.example/{webhook_id}",
        secret=SealedSecret("k1", b"\x01" * 12, b"sealed-secret-bytes"),
        subscriptions=tuple(
            Subscription(e, T0 if e in disabled else None, "test" if e in disabled else None) for e in events
        ),
        active=active,
        created_at=created_at,
        updated_at=created_at + version,
        version=version,
    )


def value(webhook: Webhook) -> bytes:
    return encode("WebhookConfig", webhook.to_record())


class Feed:
    """A view and the offsets of its partitions, fed one record at a time like the consumer thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.view = ConfigView(load_settings({}), metrics=ConfigViewMetrics(self.registry))
        self.next: dict[int, int] = {}
        self.calls: list[tuple[str, Webhook | None]] = []

    def put(self, webhook: Webhook, *, key: str | None = None, partition: int = 0) -> int:
        return self.raw((webhook.id if key is None else key).encode(), value(webhook), partition)

    def delete(self, webhook_id: str, partition: int = 0) -> int:
        return self.raw(webhook_id.encode(), None, partition)

    def raw(self, key: bytes | None, data: bytes | None, partition: int = 0) -> int:
        offset = self.next.get(partition, 0)
        self.next[partition] = offset + 1
        self.view._apply(key, data, partition, offset)
        return offset

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name)


@pytest.fixture
def feed() -> Feed:
    return Feed()


# --- upserts and versions ---------------------------------------------------------------------------


def test_a_new_config_is_served_by_id_and_by_account(feed: Feed) -> None:
    wh = hook()
    feed.put(wh)
    assert feed.view.get("wh-1") == wh
    assert feed.view.for_account("acct-a") == [wh]
    assert feed.view.subscribers("acct-a", "SALE_NEW") == [wh]
    assert len(feed.view) == 1
    assert feed.view.get("wh-2") is None and feed.view.for_account("acct-b") == []


def test_a_newer_version_replaces_the_config(feed: Feed) -> None:
    feed.put(hook(version=1))
    v2 = hook(version=2, events=("SALE_NEW",))
    feed.put(v2)
    assert feed.view.get("wh-1") == v2
    assert feed.view.for_account("acct-a") == [v2]
    assert feed.view.subscribers("acct-a", "CONTACT_CREATED") == []
    assert len(feed.view) == 1


def test_an_equal_version_replaces_the_config_last_writer_wins(feed: Feed) -> None:
    # The API's next write and a worker's 410 switch-off can both carry version n + 1; the topic's
    # order decides between them.
    feed.put(hook(version=1))
    api_write = hook(version=2, name="renamed")
    switched_off = dataclasses.replace(hook(version=2), active=False, disabled_reason="410 Gone")
    feed.put(api_write)
    feed.put(switched_off)
    assert feed.view.get("wh-1") == switched_off
    assert feed.view.subscribers("acct-a", "SALE_NEW") == []


def test_an_older_version_is_ignored(feed: Feed) -> None:
    v3 = hook(version=3)
    feed.put(v3)
    feed.put(hook(version=2, events=("SALE_NEW",), name="stale"))
    assert feed.view.get("wh-1") == v3
    assert feed.view.for_account("acct-a") == [v3]
    assert len(feed.view.subscribers("acct-a", "CONTACT_CREATED")) == 1


# --- tombstones -------------------------------------------------------------------------------------


def test_a_tombstone_deletes_the_config_everywhere(feed: Feed) -> None:
    feed.put(hook("wh-1"))
    keep = hook("wh-2", created_at=T0 + 1)
    feed.put(keep)
    feed.delete("wh-1")
    assert feed.view.get("wh-1") is None
    assert feed.view.for_account("acct-a") == [keep]
    assert feed.view.subscribers("acct-a", "SALE_NEW") == [keep]
    assert len(feed.view) == 1


def test_a_tombstone_deletes_whatever_version_is_held(feed: Feed) -> None:
    feed.put(hook(version=7))
    feed.delete("wh-1")
    assert feed.view.get("wh-1") is None and len(feed.view) == 0


def test_a_tombstone_for_an_unknown_webhook_changes_nothing(feed: Feed) -> None:
    wh = hook()
    feed.put(wh)
    feed.delete("wh-unknown")
    assert feed.view.get("wh-1") == wh and len(feed.view) == 1
    assert feed.view.bad_records == 0


def test_a_config_written_again_after_its_tombstone_is_served(feed: Feed) -> None:
    feed.put(hook(version=4))
    feed.delete("wh-1")
    again = hook(version=1)  # a tombstone carries no version: what follows it starts afresh
    feed.put(again)
    assert feed.view.get("wh-1") == again


# --- records that must not change anything ----------------------------------------------------------

GOOD = value(hook("wh-1"))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty-value-is-no-tombstone"),
        pytest.param(b"not avro at all", id="garbage"),
        pytest.param(GOOD[:-3], id="truncated"),
        pytest.param(GOOD + b"\x00", id="trailing-byte"),
        pytest.param(b"\xc3\x01" + b"\xff" * 8 + GOOD[10:], id="unknown-fingerprint"),
        pytest.param(
            encode(
                "DeadLetter",
                {"stage": "t", "reason": "r", "sourceTopic": "x", "sourcePartition": 0, "sourceOffset": 0,
                 "failedAt": T0},
            ),
            id="another-schema",
        ),
    ],
)
def test_an_undecodable_record_never_deletes_a_good_config(feed: Feed, data: bytes) -> None:
    good = hook("wh-1", version=2)
    feed.put(good)
    offset = feed.raw(b"wh-1", data)
    assert feed.view.get("wh-1") == good
    assert feed.view.for_account("acct-a") == [good]
    assert feed.view.bad_records == 1
    assert feed.metric("hookline_config_bad_records_total") == 1.0
    assert feed.view._positions[0] == offset + 1  # read past it all the same


def test_an_undecodable_record_for_an_unknown_key_creates_nothing(feed: Feed) -> None:
    feed.raw(b"wh-9", b"\xc3\x01garbage!!")
    assert feed.view.get("wh-9") is None and len(feed.view) == 0
    assert feed.view.bad_records == 1


def test_a_record_under_another_webhooks_key_is_refused(feed: Feed) -> None:
    held = hook("wh-2", version=1)
    feed.put(held)
    intruder = hook("wh-1", version=5)
    feed.put(intruder, key="wh-2")
    # Neither the key's webhook nor the record's id changes.
    assert feed.view.get("wh-2") == held
    assert feed.view.get("wh-1") is None
    assert feed.view.bad_records == 1
    assert feed.metric("hookline_config_bad_records_total") == 1.0


def test_a_config_without_a_key_is_refused(feed: Feed) -> None:
    feed.raw(None, value(hook("wh-1")))
    assert feed.view.get("wh-1") is None and feed.view.bad_records == 1


def test_a_tombstone_without_a_key_changes_nothing(feed: Feed) -> None:
    wh = hook()
    feed.put(wh)
    feed.raw(None, None)
    assert feed.view.get("wh-1") == wh and feed.view.bad_records == 0


# --- moving a webhook between accounts --------------------------------------------------------------


def test_a_newer_version_in_another_account_moves_the_webhook(feed: Feed) -> None:
    feed.put(hook("wh-1", "acct-a", version=1))
    moved = hook("wh-1", "acct-b", version=2)
    feed.put(moved)
    assert feed.view.for_account("acct-a") == []
    assert feed.view.subscribers("acct-a", "SALE_NEW") == []
    assert feed.view.for_account("acct-b") == [moved]
    assert feed.view.subscribers("acct-b", "SALE_NEW") == [moved]
    feed.delete("wh-1")  # the tombstone finds it in its new account
    assert feed.view.for_account("acct-b") == [] and len(feed.view) == 0


def test_an_older_version_in_another_account_does_not_move_it(feed: Feed) -> None:
    current = hook("wh-1", "acct-a", version=3)
    feed.put(current)
    feed.put(hook("wh-1", "acct-b", version=2))
    assert feed.view.for_account("acct-a") == [current]
    assert feed.view.for_account("acct-b") == []
    assert feed.view.subscribers("acct-b", "SALE_NEW") == []


# --- positions, readiness and lag -------------------------------------------------------------------


def test_every_record_advances_its_partitions_position(feed: Feed) -> None:
    feed.put(hook("wh-1"), partition=0)
    feed.raw(b"wh-2", b"garbage", partition=0)
    feed.put(hook("wh-3"), partition=2)
    feed.delete("wh-1", partition=2)
    feed.put(hook("wh-4"), key="wh-5", partition=2)
    assert feed.view._positions == {0: 2, 2: 3}
    assert asyncio.run(feed.view.wait_applied_async(2, 2, timeout=0))
    assert not asyncio.run(feed.view.wait_applied_async(2, 3, timeout=0))
    assert not asyncio.run(feed.view.wait_applied_async(1, 0, timeout=0))
    assert asyncio.run(feed.view.wait_applied_async(0, 1, timeout=0))
    assert not asyncio.run(feed.view.wait_applied_async(0, 2, timeout=0))


def test_the_view_is_ready_once_every_partition_reaches_its_start_watermark(feed: Feed) -> None:
    view = feed.view
    view._check_ready()
    assert view.lag() == -1 and not view.ready  # watermarks not read yet
    view._targets = {0: 2, 1: 0, 2: 1}
    view._check_ready()
    assert view.lag() == 3 and not view.ready
    feed.put(hook("wh-1"), partition=0)
    view._check_ready()
    assert view.lag() == 2 and not view.ready
    feed.raw(b"wh-2", b"garbage", partition=0)  # a bad record is read, so it counts as caught up
    feed.put(hook("wh-3"), partition=2)
    assert view.lag() == 0
    assert not view.ready  # readiness is decided by _check_ready, which the thread calls
    view._check_ready()
    assert view.ready and view.wait_ready(timeout=0)
    assert asyncio.run(view.wait_ready_async(timeout=0))
    feed.put(hook("wh-4"), partition=1)  # records written after the start go beyond the line
    assert view.lag() == 0 and view.ready


def test_an_empty_topic_is_ready_at_once(feed: Feed) -> None:
    feed.view._targets = {0: 0, 1: 0, 2: 0}
    feed.view._check_ready()
    assert feed.view.ready and feed.view.lag() == 0


def test_offsets_removed_by_compaction_count_as_read(feed: Feed) -> None:
    # After compaction a partition whose watermark is 10 may hold only its record at offset 9.
    feed.view._targets = {0: 10}
    wh = hook()
    feed.view._apply(b"wh-1", value(wh), 0, 9)
    feed.view._check_ready()
    assert feed.view.ready and feed.view.get("wh-1") == wh


def test_the_webhook_gauge_follows_the_view(feed: Feed) -> None:
    feed.put(hook("wh-1"))
    feed.put(hook("wh-2"))
    feed.put(hook("wh-2", version=2))
    assert feed.metric("hookline_config_webhooks") == 2.0
    feed.delete("wh-1")
    assert feed.metric("hookline_config_webhooks") == 1.0
    assert feed.metric("hookline_config_bad_records_total") == 0.0


# --- lookups ----------------------------------------------------------------------------------------


def test_for_account_orders_by_creation_time_then_id(feed: Feed) -> None:
    late = hook("wh-a", created_at=T0 + 50)
    tie_b = hook("wh-c", created_at=T0 + 10)
    tie_a = hook("wh-b", created_at=T0 + 10)
    first = hook("wh-z", created_at=T0)
    for wh in (late, tie_b, tie_a, first):
        feed.put(wh)
    assert [w.id for w in feed.view.for_account("acct-a")] == ["wh-z", "wh-b", "wh-c", "wh-a"]
    # An update keeps a webhook's place: the order is by creation, not by the last write.
    feed.put(hook("wh-z", created_at=T0, version=2))
    assert [w.id for w in feed.view.for_account("acct-a")] == ["wh-z", "wh-b", "wh-c", "wh-a"]


def test_subscribers_are_the_accounts_active_and_enabled_subscriptions(feed: Feed) -> None:
    wanted = hook("wh-1", events=("SALE_NEW", "SALE_CANCELED"))
    also = hook("wh-2", events=("SALE_NEW",), created_at=T0 + 1)
    feed.put(wanted)
    feed.put(also)
    feed.put(hook("wh-3", events=("CONTACT_CREATED",)))  # another event
    feed.put(hook("wh-4", events=("SALE_NEW",), active=False))  # switched off
    feed.put(hook("wh-5", events=("SALE_NEW",), disabled=("SALE_NEW",)))  # subscription disabled
    feed.put(hook("wh-6", "acct-b", events=("SALE_NEW",)))  # another account
    # The order of subscribers() is not part of its contract (the router sorts tasks by webhook id).
    assert sorted(w.id for w in feed.view.subscribers("acct-a", "SALE_NEW")) == ["wh-1", "wh-2"]
    assert feed.view.subscribers("acct-a", "SALE_CANCELED") == [wanted]
    assert feed.view.subscribers("acct-a", "CONTACT_OPT_IN") == []
    assert feed.view.subscribers("acct-c", "SALE_NEW") == []
    assert [w.id for w in feed.view.subscribers("acct-b", "SALE_NEW")] == ["wh-6"]
    assert len(feed.view.for_account("acct-a")) == 5


def test_a_failed_catch_up_asks_again_with_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a broker restart the old admin client keeps asking a fenced leader (FENCED_LEADER_EPOCH
    for up to 45 s in the failover test); the view drops it and asks once more with a new one."""
    view = ConfigView(load_settings({}, kafka_bootstrap="127.0.0.1:1"))
    stale = object()
    view._admin = stale  # type: ignore[assignment]
    clients: list[object] = []

    def end_offsets() -> dict[int, object]:
        clients.append(view._admin)
        if view._admin is stale:
            raise RuntimeError("KafkaError{code=FENCED_LEADER_EPOCH}")
        return {}  # an empty config topic: nothing to wait for

    monkeypatch.setattr(view, "_ask_end_offsets", end_offsets)
    assert asyncio.run(view.catch_up_async(1.0)) is True
    assert clients == [stale, None]  # the second call builds a fresh client


def test_a_catch_up_that_fails_twice_says_so_and_keeps_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    view = ConfigView(load_settings({}, kafka_bootstrap="127.0.0.1:1"))
    calls = []

    def end_offsets() -> dict[int, object]:
        calls.append(1)
        view._admin = object()  # type: ignore[assignment]
        raise RuntimeError("broker down")

    monkeypatch.setattr(view, "_ask_end_offsets", end_offsets)
    assert asyncio.run(view.catch_up_async(1.0)) is False
    assert len(calls) == 2 and view._admin is None
