"""The log store contract, run against SQLite and a real PostgreSQL server alike."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hookline.local.ports import free_port
from hookline.logstore import (
    LogStore,
    StoreRejected,
    StoreUnavailable,
    UnknownCursor,
    describe_url,
    open_store,
)
from hookline.logstore.base import from_ms, to_ms
from hookline.logstore.postgres import PostgresStore
from hookline.logstore.sqlite import SqliteStore
from hookline.records import DeliveryResult
from hookline.settings import Secret, SettingsError, load_settings
from tests.logrecords import delivery_result, now_ms

Opener = Callable[[], LogStore]

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores on one fresh database of the parametrized kind; closes them all afterwards."""
    if request.param == "sqlite":
        path = tmp_path / "logs.sqlite3"

        def make() -> LogStore:
            return SqliteStore(path)
    else:
        url = request.getfixturevalue("postgres_url")

        def make() -> LogStore:
            return PostgresStore(url)

    opened: list[LogStore] = []

    def tracked() -> LogStore:
        store = make()
        opened.append(store)
        return store

    yield tracked
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> LogStore:
    return opener()


def ids() -> tuple[str, str]:
    u = uuid.uuid4().hex[:8]
    return f"acct-{u}", f"wh-{u}"


def page_all(store: LogStore, account: str, webhook: str, limit: int, **filters: Any) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        page = store.list_messages(account, webhook, limit=limit, starting_after=cursor, **filters)
        out.extend(m.message_id for m in page.items)
        if not page.has_more:
            return out
        assert page.items, "has_more with an empty page"
        cursor = page.items[-1].message_id


# ----------------------------------------------------------------------------------- insert


def test_a_message_summarises_its_attempts_and_keeps_every_detail(store: LogStore) -> None:
    acct, wh = ids()
    t0 = now_ms() - 60_000
    first = delivery_result(acct, wh, "m1", 1, attempted_at=t0, outcome="failed", status=503,
                            nextRetryAt=t0 + 5000, errorMessage="HTTP 503",
                            responseBodyExcerpt=b"busy\x00\xff", responseBodyTruncated=True,
                            responseHeaders={"Retry-After": "5"})
    second = delivery_result(acct, wh, "m1", 2, attempted_at=t0 + 5000, outcome="failed", status=500,
                             nextRetryAt=t0 + 305_000)
    third = delivery_result(acct, wh, "m1", 3, attempted_at=t0 + 305_000, outcome="delivered")
    for r in (first, second, third):
        assert DeliveryResult.decode(r.encode()) == r  # the records are real ones
    assert store.insert_attempts([first, second, third]) == 3

    page = store.list_messages(acct, wh)
    assert not page.has_more
    [m] = page.items
    assert (m.account_id, m.webhook_id, m.message_id, m.event_id) == (acct, wh, "m1", "evt-m1")
    assert (m.status, m.last_outcome, m.attempt_count, m.last_attempt) == ("delivered", "delivered", 3, 3)
    assert m.last_response_status == 200 and m.last_error_class is None and m.next_retry_at is None
    assert m.first_attempt_at == from_ms(t0) and m.last_attempt_at == from_ms(t0 + 305_000)
    assert m.event_type == "SALE_NEW" and m.trigger == "automatic"
    assert m.event_occurred_at == from_ms(t0 - 1000) and m.url == "https://receiver.example/hook"

    detail = store.get_message(acct, wh, "m1")
    assert detail is not None and detail.message == m
    assert [a.attempt for a in detail.attempts] == [1, 2, 3]
    a1 = detail.attempts[0]
    assert a1.attempt_id == "m1.1" and a1.attempted_at == from_ms(t0)
    assert a1.request_headers == first.request_headers and a1.request_body == first.request_body
    assert a1.response_status == 503 and a1.response_headers == {"Retry-After": "5"}
    assert a1.response_excerpt == b"busy\x00\xff" and a1.response_truncated is True
    assert a1.latency_seconds == pytest.approx(0.042) and a1.error_class == "http_5xx"
    assert a1.error_message == "HTTP 503" and a1.next_retry_at == from_ms(t0 + 5000)
    assert a1.outcome == "failed" and a1.final is False and a1.trigger == "automatic"
    assert detail.attempts[2].outcome == "delivered" and detail.attempts[2].final is True


def test_reinserting_stored_attempts_changes_nothing(store: LogStore) -> None:
    acct, wh = ids()
    t0 = now_ms()
    batch = [delivery_result(acct, wh, f"m{i}", 1, attempted_at=t0 + i, outcome="failed") for i in range(20)]
    assert store.insert_attempts(batch) == 20
    before = store.list_messages(acct, wh, limit=100).items
    # The same records again (a re-read of the topic), alone and mixed with new ones and duplicates.
    assert store.insert_attempts(batch) == 0
    newer = delivery_result(acct, wh, "m3", 2, attempted_at=t0 + 10_000, outcome="delivered")
    assert store.insert_attempts([*batch[:5], newer, newer]) == 1
    after = store.list_messages(acct, wh, limit=100).items
    assert [m.message_id for m in after] == [m.message_id for m in before]  # order unchanged
    changed = {m.message_id: m for m in after}["m3"]
    assert changed.attempt_count == 2 and changed.status == "delivered"
    for m in after:
        if m.message_id != "m3":
            assert m.attempt_count == 1
    detail = store.get_message(acct, wh, "m3")
    assert detail is not None and [a.attempt_id for a in detail.attempts] == ["m3.1", "m3.2"]


def test_the_latest_attempt_decides_whatever_order_attempts_arrive_in(store: LogStore) -> None:
    acct, wh = ids()
    t0 = now_ms()
    late = delivery_result(acct, wh, "m", 2, attempted_at=t0 + 5000, outcome="delivered", trigger="manual")
    early = delivery_result(acct, wh, "m", 1, attempted_at=t0, outcome="failed", final=False)
    store.insert_attempts([late])
    store.insert_attempts([early])
    [m] = store.list_messages(acct, wh).items
    assert (m.status, m.attempt_count, m.last_attempt, m.last_response_status) == ("delivered", 2, 2, 200)
    assert m.first_attempt_at == from_ms(t0) and m.last_attempt_at == from_ms(t0 + 5000)
    assert m.trigger == "automatic"  # how the message began: its first attempt's trigger
    last = store.last_status_by_webhook(acct)[wh]
    assert (last.message_id, last.attempt_id, last.status) == ("m", "m.2", "delivered")


@pytest.mark.parametrize(
    ("outcome", "final", "status"),
    [
        ("delivered", True, "delivered"),
        ("failed", False, "retrying"),
        ("failed", True, "failed"),
        ("dead_lettered", True, "failed"),
        ("skipped", True, "skipped"),
    ],
)
def test_status_follows_the_latest_outcome(store: LogStore, outcome: str, final: bool, status: str) -> None:
    acct, wh = ids()
    store.insert_attempts([delivery_result(acct, wh, "m", 1, outcome=outcome, final=final)])
    [m] = store.list_messages(acct, wh).items
    assert (m.status, m.last_outcome) == (status, outcome)
    assert store.last_status_by_webhook(acct)[wh].status == status


def test_a_bad_record_rejects_the_whole_batch(store: LogStore) -> None:
    acct, wh = ids()
    good = delivery_result(acct, wh, "good", 1)
    bad = delivery_result(acct, wh, "bad", 1)
    bad = dataclasses.replace(bad, attempted_at=None)  # type: ignore[arg-type]
    with pytest.raises(StoreRejected):
        store.insert_attempts([good, bad])
    huge = delivery_result(acct, wh, "huge", 2**70)
    with pytest.raises(StoreRejected):
        store.insert_attempts([good, huge])
    assert store.list_messages(acct, wh).items == []
    assert store.insert_attempts([good]) == 1


def test_text_with_nul_characters_is_stored_alike_everywhere(store: LogStore) -> None:
    acct, wh = ids()
    store.insert_attempts([delivery_result(acct, wh, "m", 1, outcome="failed", errorMessage="bad\x00byte",
                                           responseHeaders={"x-odd": "a\x00b"})])
    detail = store.get_message(acct, wh, "m")
    assert detail is not None
    assert detail.attempts[0].error_message == "bad\ufffdbyte"
    assert detail.attempts[0].response_headers == {"x-odd": "a\ufffdb"}


def test_an_empty_batch_is_a_no_op(store: LogStore) -> None:
    assert store.insert_attempts([]) == 0
    assert store.ping()


# ----------------------------------------------------------------------------------- filters


def test_filters_by_status_and_event_type(store: LogStore) -> None:
    acct, wh = ids()
    t0 = now_ms()
    kinds = [("delivered", True), ("failed", False), ("failed", True), ("skipped", True)]
    events = ["SALE_NEW", "CONTACT_CREATED", "CONTACT_OPT_IN"]
    expected: dict[tuple[str, str], set[str]] = {}
    batch = []
    for i in range(60):
        outcome, final = kinds[i % 4]
        event = events[i % 3]
        r = delivery_result(acct, wh, f"m{i:02}", 1, attempted_at=t0 + i, outcome=outcome, final=final,
                            event_type=event)
        batch.append(r)
        status = {"delivered": "delivered", "skipped": "skipped"}.get(
            outcome, "failed" if final else "retrying"
        )
        expected.setdefault((status, event), set()).add(f"m{i:02}")
    store.insert_attempts(batch)

    def want(status: str | None, event: str | None) -> set[str]:
        return {m for (s, e), ms in expected.items() for m in ms
                if (status is None or s == status) and (event is None or e == event)}

    for want_status in (None, "delivered", "retrying", "failed", "skipped"):
        for want_event in (None, *events, "SALE_CANCELED"):
            got = page_all(store, acct, wh, 7, status=want_status, event_type=want_event)
            assert len(got) == len(set(got))
            assert set(got) == want(want_status, want_event), (want_status, want_event)
            assert got == sorted(got, reverse=True)  # newest first

    # A message leaves the "retrying" filter once its next attempt succeeds.
    store.insert_attempts([delivery_result(acct, wh, "m01", 2, attempted_at=t0 + 1000, outcome="delivered")])
    assert "m01" not in page_all(store, acct, wh, 50, status="retrying")
    assert "m01" in page_all(store, acct, wh, 50, status="delivered")
    with pytest.raises(ValueError):
        store.list_messages(acct, wh, status="pending")


def test_page_size_is_bounded(store: LogStore) -> None:
    acct, wh = ids()
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError):
            store.list_messages(acct, wh, limit=bad)
    assert store.list_messages(acct, wh, limit=1000).items == []


# ----------------------------------------------------------------------------------- pagination


def _fill(store: LogStore, acct: str, wh: str, count: int, t0: int, prefix: str = "m") -> list[str]:
    names = [f"{prefix}{i:04}" for i in range(count)]
    for start in range(0, count, 250):
        store.insert_attempts([
            delivery_result(acct, wh, name, 1, attempted_at=t0 + i, outcome="failed", final=False)
            for i, name in enumerate(names[start : start + 250], start=start)
        ])
    return names


@pytest.mark.parametrize("limit", [1, 37, 100, 1000])
def test_paging_through_1000_messages_has_no_gaps_or_repeats(store: LogStore, limit: int) -> None:
    acct, wh = ids()
    names = _fill(store, acct, wh, 1000, now_ms() - 3_600_000)
    seen = page_all(store, acct, wh, limit)
    assert seen == names[::-1]  # newest (last stored) first, each exactly once
    last = store.list_messages(acct, wh, limit=limit, starting_after=names[0])
    assert last.items == [] and not last.has_more


def test_paging_while_attempts_are_inserted_has_no_gaps_or_repeats(store: LogStore) -> None:
    acct, wh = ids()
    t0 = now_ms() - 3_600_000
    names = _fill(store, acct, wh, 1000, t0)
    stop = threading.Event()
    errors: list[BaseException] = []
    inserted: list[str] = []

    def writer() -> None:
        try:
            n = 0
            while not stop.is_set():
                # New messages, and new attempts that change existing messages' status and times.
                batch = [delivery_result(acct, wh, f"new{n:05}", 1, outcome="delivered")]
                old = names[(n * 37) % len(names)]
                batch.append(delivery_result(acct, wh, old, 2 + n, outcome="delivered"))
                store.insert_attempts(batch)
                inserted.append(f"new{n:05}")
                n += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = store.list_messages(acct, wh, limit=25, starting_after=cursor)
            seen.extend(m.message_id for m in page.items)
            pages += 1
            if pages == 3:
                # let the writer get well ahead of the reader at least once
                wait_for = len(inserted) + 20
                deadline = datetime.now(UTC) + timedelta(seconds=30)
                while len(inserted) < wait_for and not errors and datetime.now(UTC) < deadline:
                    threading.Event().wait(0.01)
            if not page.has_more:
                break
            cursor = page.items[-1].message_id
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert len(inserted) >= 20, "the writer did not run during paging"
    assert len(seen) == len(set(seen)), "a message was listed twice"
    assert set(names) <= set(seen), f"missed {sorted(set(names) - set(seen))[:5]}"
    first_page_new = [m for m in seen[:25] if m.startswith("new")]
    assert set(seen) - set(names) == set(first_page_new)  # newer messages only ever on the first page
    # Existing messages kept their place although their latest attempt changed.
    assert [m for m in seen if not m.startswith("new")] == names[::-1]


def test_a_cursor_from_elsewhere_is_refused(store: LogStore) -> None:
    acct, wh = ids()
    other_acct, other_wh = ids()
    store.insert_attempts([delivery_result(acct, wh, "mine", 1),
                           delivery_result(other_acct, other_wh, "theirs", 1)])
    for cursor in ("theirs", "never-stored"):
        with pytest.raises(UnknownCursor):
            store.list_messages(acct, wh, starting_after=cursor)
    with pytest.raises(LookupError):  # UnknownCursor is a LookupError too
        store.list_messages(acct, other_wh, starting_after="mine")


# ----------------------------------------------------------------------------------- retention


def test_purge_removes_whole_messages_whose_last_attempt_is_older_than_the_cutoff(store: LogStore) -> None:
    acct, wh = ids()
    _, wh_old = ids()
    now = now_ms()
    day = 86_400_000
    store.insert_attempts([
        delivery_result(acct, wh, "old", 1, attempted_at=now - 40 * day, outcome="failed", final=False),
        delivery_result(acct, wh, "old", 2, attempted_at=now - 39 * day, outcome="dead_lettered"),
        # first attempt before the cutoff, last one after it: kept whole
        delivery_result(acct, wh, "spans", 1, attempted_at=now - 35 * day, outcome="failed", final=False),
        delivery_result(acct, wh, "spans", 2, attempted_at=now - 20 * day, outcome="delivered"),
        delivery_result(acct, wh, "new", 1, attempted_at=now - 1000),
        delivery_result(acct, wh_old, "only-old", 1, attempted_at=now - 31 * day),
    ])
    cutoff = from_ms(now - 30 * day)
    purged = store.purge_older_than(cutoff)
    assert (purged.messages, purged.attempts, purged.complete) == (2, 3, True)
    assert page_all(store, acct, wh, 10) == ["new", "spans"]
    assert store.get_message(acct, wh, "old") is None
    spans = store.get_message(acct, wh, "spans")
    assert spans is not None and len(spans.attempts) == 2 and spans.message.attempt_count == 2
    assert set(store.last_status_by_webhook(acct)) == {wh}
    assert store.purge_older_than(cutoff).messages == 0  # nothing left to do
    # Re-reading the purged attempts (a topic replay) brings them back; the sink skips expired ones.
    assert store.insert_attempts([delivery_result(acct, wh, "old", 1, attempted_at=now - 40 * day)]) == 1


def test_purge_in_bounded_steps(store: LogStore) -> None:
    acct, wh = ids()
    old = now_ms() - 90 * 86_400_000
    _fill(store, acct, wh, 1200, old)
    store.insert_attempts([delivery_result(acct, wh, "fresh", 1)])
    cutoff = datetime.now(UTC) - timedelta(days=30)
    first = store.purge_older_than(cutoff, max_messages=700)
    assert (first.messages, first.attempts, first.complete) == (700, 700, False)
    rest = store.purge_older_than(cutoff, max_messages=700)
    assert (rest.messages, rest.complete) == (500, True)
    assert page_all(store, acct, wh, 100) == ["fresh"]
    with pytest.raises(ValueError):
        store.purge_older_than(datetime(2020, 1, 1))  # naive: refused


# ----------------------------------------------------------------------------------- isolation


def test_another_accounts_or_webhooks_rows_are_never_returned(store: LogStore) -> None:
    a, wa = ids()
    b, wb = ids()
    _, wa2 = ids()
    store.insert_attempts([
        delivery_result(a, wa, "a-1", 1), delivery_result(a, wa2, "a2-1", 1, outcome="failed"),
        delivery_result(b, wb, "b-1", 1),
        # the same message id under another account (ids are derived, but the store must not trust that)
        delivery_result(b, wa, "a-1", 1, attempt_id="b-copy", outcome="failed"),
    ])
    assert page_all(store, a, wa, 10) == ["a-1"]
    assert store.list_messages(a, wa).items[0].status == "delivered"
    assert page_all(store, b, wa, 10) == ["a-1"] and store.list_messages(b, wa).items[0].status == "retrying"
    assert page_all(store, a, wb, 10) == []  # B's webhook seen from A
    assert page_all(store, b, wa2, 10) == []  # A's other webhook seen from B
    assert page_all(store, a, wa2, 10) == ["a2-1"]
    assert store.get_message(a, wb, "b-1") is None
    assert store.get_message(b, wa2, "a2-1") is None
    assert store.get_message(a, wa, "a2-1") is None  # right account, wrong webhook
    detail = store.get_message(b, wa, "a-1")
    assert detail is not None and [x.attempt_id for x in detail.attempts] == ["b-copy"]
    assert set(store.last_status_by_webhook(a)) == {wa, wa2}
    assert set(store.last_status_by_webhook(b)) == {wb, wa}
    assert store.last_status_by_webhook("nobody") == {}


def test_last_status_by_webhook_is_each_webhooks_latest_attempt(store: LogStore) -> None:
    acct, w1 = ids()
    _, w2 = ids()
    t0 = now_ms()
    store.insert_attempts([
        delivery_result(acct, w1, "x", 1, attempted_at=t0, outcome="delivered"),
        delivery_result(acct, w1, "y", 1, attempted_at=t0 + 10, outcome="failed", final=False, status=500),
        delivery_result(acct, w2, "z", 1, attempted_at=t0 + 5, outcome="skipped"),
    ])
    store.insert_attempts([delivery_result(acct, w1, "x", 2, attempted_at=t0 + 5)])  # older than y's
    last = store.last_status_by_webhook(acct)
    assert (last[w1].message_id, last[w1].status, last[w1].response_status) == ("y", "retrying", 500)
    assert last[w1].attempted_at == from_ms(t0 + 10)
    assert (last[w2].message_id, last[w2].status, last[w2].response_status) == ("z", "skipped", None)


# ----------------------------------------------------------------------------------- lifecycle


def test_reopening_keeps_rows_and_schema(opener: Opener) -> None:
    acct, wh = ids()
    first = opener()
    first.insert_attempts([delivery_result(acct, wh, "m", 1)])
    first.close()
    stores: list[LogStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(opener())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # concurrent opens migrate once
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for s in stores:
        assert [m.message_id for m in s.list_messages(acct, wh).items] == ["m"]


def test_a_closed_store_is_unavailable(opener: Opener) -> None:
    store = opener()
    store.close()
    with pytest.raises(StoreUnavailable):
        store.insert_attempts([delivery_result("a", "w", "m", 1)])
    assert store.ping() is False


# ----------------------------------------------------------------------------------- opening


def test_open_store_follows_the_database_url(tmp_path: Path, postgres_url: str) -> None:
    default = load_settings({}, home=tmp_path / "home")
    store = open_store(default)
    try:
        assert isinstance(store, SqliteStore) and store.path == tmp_path / "home" / "logs.sqlite3"
    finally:
        store.close()
    absolute = load_settings({"HOOKLINE_DATABASE_URL": f"sqlite:///{tmp_path}/x/logs.db"})
    store = open_store(absolute)
    try:
        assert isinstance(store, SqliteStore) and store.path == tmp_path / "x" / "logs.db"
    finally:
        store.close()
    relative = load_settings({"HOOKLINE_DATABASE_URL": "sqlite:///rel/logs.db"})
    assert describe_url(relative) == "sqlite file rel/logs.db"
    pg = load_settings({}, database_url=Secret(postgres_url))
    store = open_store(pg)
    try:
        assert isinstance(store, PostgresStore) and store.ping()
    finally:
        store.close()
    for bad in ("mysql://x/y", "sqlite:///:memory:", "sqlite://relative"):
        with pytest.raises(SettingsError):
            open_store(load_settings({}, database_url=Secret(bad)))
    secret = load_settings({}, database_url=Secret("postgresql://user:hunter2@db.internal:5432/logs?sslmode=require"))
    assert describe_url(secret) == "postgresql://db.internal:5432/logs"


def test_an_unreachable_postgres_is_reported_as_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        PostgresStore(f"postgresql://nobody@127.0.0.1:{free_port()}/none", timeout=1)


def test_times_convert_exactly() -> None:
    for ms in (0, 1, 1_700_000_000_123, 253_402_300_799_999):
        assert to_ms(from_ms(ms)) == ms
    with pytest.raises(ValueError):
        to_ms(datetime(2026, 1, 1))


# ----------------------------------------------------------------------------------- recover


def test_failed_since_lists_failed_messages_in_order_of_first_attempt(store: LogStore) -> None:
    acct, wh = ids()
    other_acct, other_wh = ids()
    t0 = now_ms() - 600_000
    rows = [
        # stored out of order: "late" first, though its first attempt is the latest
        delivery_result(acct, wh, "late", 1, attempted_at=t0 + 3000, outcome="dead_lettered"),
        delivery_result(acct, wh, "early", 1, attempted_at=t0 + 1000, outcome="failed", final=False),
        delivery_result(acct, wh, "early", 2, attempted_at=t0 + 1500, outcome="deferred", final=False),
        delivery_result(acct, wh, "early", 3, attempted_at=t0 + 2500, outcome="dead_lettered"),
        delivery_result(acct, wh, "mid", 1, attempted_at=t0 + 2000, outcome="dead_lettered"),
        delivery_result(acct, wh, "old", 1, attempted_at=t0 - 1000, outcome="dead_lettered"),
        delivery_result(acct, wh, "ok", 1, attempted_at=t0 + 1200, outcome="delivered"),
        delivery_result(acct, wh, "again", 1, attempted_at=t0 + 1300, outcome="failed", final=False),
        delivery_result(acct, wh, "sample", 1, attempted_at=t0 + 1400, outcome="failed", final=True,
                        trigger="test"),
        delivery_result(other_acct, wh, "theirs", 1, attempted_at=t0 + 1100, outcome="dead_lettered"),
        delivery_result(acct, other_wh, "elsewhere", 1, attempted_at=t0 + 1100, outcome="dead_lettered"),
    ]
    store.insert_attempts(rows)
    since = from_ms(t0)
    got = store.failed_since(acct, wh, since, limit=10)
    assert [f.message.message_id for f in got] == ["early", "mid", "late"]
    early = got[0]
    assert early.last_attempt == 3 and early.message.status == "failed"
    assert early.body == rows[1].request_body and early.body
    assert [f.message.message_id for f in store.failed_since(acct, wh, since, limit=2)] == ["early", "mid"]
    assert store.failed_since(acct, wh, from_ms(t0 + 2001), limit=10)[0].message.message_id == "late"
    assert store.failed_since(other_acct, wh, since, limit=10)[0].message.message_id == "theirs"
    # A message whose latest attempt is deferred is still retrying, not failed.
    store.insert_attempts([delivery_result(acct, wh, "mid", 2, attempted_at=t0 + 4000, outcome="deferred",
                                           final=False)])
    assert [f.message.message_id for f in store.failed_since(acct, wh, since, limit=10)] == ["early", "late"]
