"""Contact erasure and body retention in the log store (issue 13), on SQLite and a real PostgreSQL.

Whether a contact's e-mail is gone is judged on the raw database: the SQLite files' bytes, every
column of every PostgreSQL table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookline.logstore import LogStore, _sql
from hookline.logstore.base import from_ms
from hookline.logstore.postgres import PostgresStore
from hookline.logstore.sqlite import SqliteStore
from hookline.records import DeliveryResult
from tests.logrecords import delivery_result, now_ms
from tests.logscan import in_postgres, in_sqlite_files

DAY = 86_400_000
ANN_MAIL = "ann@example.org"


@dataclass
class Backend:
    open: Callable[[], LogStore]
    scan: Callable[[str], list[str]]  # where the raw database holds a string


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened: list[LogStore] = []
    if request.param == "sqlite":
        path = tmp_path / "logs.sqlite3"

        def make() -> LogStore:
            return SqliteStore(path)

        def scan(needle: str) -> list[str]:
            return in_sqlite_files(path, needle)
    else:
        url = request.getfixturevalue("postgres_url")

        def make() -> LogStore:
            return PostgresStore(url)

        def scan(needle: str) -> list[str]:
            return in_postgres(url, needle)

    def tracked() -> LogStore:
        opened.append(make())
        return opened[-1]

    yield Backend(tracked, scan)
    for s in opened:
        s.close()


def contact_body(contact_id: str, email: str) -> bytes:
    return orjson.dumps(
        {"contact": {"id": contact_id, "email": email, "fields": [{"slug": "first_name", "value": "Ann"}]}}
    )


def sale_body(customer_id: str, email: str) -> bytes:
    return orjson.dumps({"customer": {"id": customer_id, "email": email}, "order": {"id": 7}})


def attempt(acct: str, wh: str, msg: str, n: int, body: bytes, email: str, **kw: Any) -> DeliveryResult:
    """An attempt whose receiver echoed the e-mail everywhere it could."""
    fields: dict[str, Any] = {
        "event_type": "CONTACT_CREATED",
        "outcome": "failed",
        "final": False,
        "requestBody": body,
        "errorMessage": f"HTTP 503 for {email}",
        "responseBodyExcerpt": f"unknown {email}".encode(),
        "responseHeaders": {"x-echo": email},
    }
    fields.update(kw)
    return delivery_result(acct, wh, msg, n, **fields)


def fill(store: LogStore, acct: str, wh: str, wh2: str) -> None:
    store.insert_attempts([
        attempt(acct, wh, "ann-1", 1, contact_body("c-ann", "ann@example.org"), "ann@example.org"),
        attempt(acct, wh, "ann-1", 2, contact_body("c-ann", "ann@example.org"), "ann@example.org"),
        attempt(acct, wh2, "ann-2", 1, contact_body("c-ann", "ann@example.org"), "ann@example.org"),
        attempt(acct, wh, "bob-1", 1, contact_body("c-bob", "bob@example.org"), "bob@example.org"),
        attempt(acct, wh, "sale-1", 1, sale_body("cu-ann", "ann.buyer@example.org"), "ann.buyer@example.org"),
        # The same contact id under another account is another person: never touched.
        attempt("other-acct", wh, "x-1", 1, contact_body("c-ann", "ann.other@example.org"),
                "ann.other@example.org"),
    ])  # fmt: skip


def test_erasing_a_contact_leaves_no_trace_of_its_email_in_the_raw_database(backend: Backend) -> None:
    store = backend.open()
    acct, wh, wh2 = "acct-a", f"wh-{uuid.uuid4().hex[:6]}", f"wh-{uuid.uuid4().hex[:6]}"
    fill(store, acct, wh, wh2)
    assert backend.scan("ann@example.org"), (
        "the e-mail must be stored before the erasure (else this proves nothing)"
    )

    erasure = store.erase_contact(acct, "c-ann", requested_by="operator")
    assert (erasure.account_id, erasure.messages, erasure.attempts) == (acct, 2, 3)
    assert erasure.requested_by == "operator"
    assert abs(erasure.erased_at - datetime.now(UTC)) < timedelta(minutes=1)

    assert backend.scan("ann@example.org") == []
    assert backend.scan("c-ann") != []  # still there: the other account's row (and nothing of A's)
    for who in ("bob@example.org", "ann.buyer@example.org", "ann.other@example.org"):
        assert backend.scan(who), f"{who} must be untouched"

    for webhook, msg in ((wh, "ann-1"), (wh2, "ann-2")):
        detail = store.get_message(acct, webhook, msg)
        assert detail is not None and detail.message.erased_at == erasure.erased_at
        assert detail.message.status == "retrying" and detail.message.attempt_count == len(detail.attempts)
        for a in detail.attempts:
            assert a.erased and a.request_body == b"" and a.response_excerpt == b""
            assert a.request_headers == {} and a.response_headers == {} and a.error_message is None
            assert a.response_status == 503 and a.error_class == "http_5xx"  # the metadata stays
    bob = store.get_message(acct, wh, "bob-1")
    assert bob is not None and bob.message.erased_at is None
    assert not bob.attempts[0].erased and b"bob@example.org" in bob.attempts[0].request_body
    listed = {m.message_id: m.erased_at for m in store.list_messages(acct, wh).items}
    assert listed["ann-1"] is not None and listed["bob-1"] is None

    # The erasure is recorded without the contact: when, who asked, how many rows.
    [recorded] = store.erasures(acct)
    assert recorded == erasure
    assert store.erasures("other-acct") == []

    # A sale's buyer is erased by the customer id the sale carries.
    assert store.erase_contact(acct, "cu-ann", requested_by="api").messages == 1
    assert backend.scan("ann.buyer@example.org") == []
    assert [e.requested_by for e in store.erasures()] == ["api", "operator"]


def test_an_unknown_contact_or_another_account_erases_nothing(backend: Backend) -> None:
    store = backend.open()
    acct, wh, wh2 = "acct-a", "wh-1", "wh-2"
    fill(store, acct, wh, wh2)
    nothing = store.erase_contact(acct, "c-nobody", requested_by="api")
    assert (nothing.messages, nothing.attempts) == (0, 0)
    wrong = store.erase_contact("acct-b", "c-ann", requested_by="api")  # B knows A's contact id
    assert (wrong.messages, wrong.attempts) == (0, 0)
    assert backend.scan("ann@example.org")
    detail = store.get_message(acct, wh, "ann-1")
    assert detail is not None and detail.message.erased_at is None
    assert [e.messages for e in store.erasures()] == [0, 0]  # recorded all the same
    again = store.erase_contact(acct, "c-ann", requested_by="api")
    assert (again.messages, store.erase_contact(acct, "c-ann", requested_by="api").messages) == (2, 0)


def test_an_attempt_logged_after_the_erasure_is_stored_without_personal_data(backend: Backend) -> None:
    store = backend.open()
    fill(store, "acct-a", "wh-1", "wh-2")
    store.erase_contact("acct-a", "c-ann", requested_by="operator")
    body = contact_body("c-ann", "ann@example.org")
    # A retry that was in flight, and a re-read of the results topic (logsink --from-beginning).
    late = attempt("acct-a", "wh-1", "ann-1", 3, body, "ann@example.org", outcome="delivered", final=True)
    reread = attempt("acct-a", "wh-1", "ann-1", 1, body, "ann@example.org", attempt_id="ann-1.1")
    assert store.insert_attempts([late, reread]) == 1
    assert backend.scan("ann@example.org") == []
    detail = store.get_message("acct-a", "wh-1", "ann-1")
    assert detail is not None and detail.message.status == "delivered" and detail.message.erased_at
    assert [a.erased for a in detail.attempts] == [True, True, True]


def test_bodies_expire_before_the_attempts_metadata(backend: Backend) -> None:
    store = backend.open()
    acct, wh = "acct-a", "wh-1"
    now = now_ms()
    body = contact_body("c-ann", "ann@example.org")
    store.insert_attempts([
        attempt(acct, wh, "old", 1, body, "ann@example.org", attempted_at=now - 2 * DAY),
        attempt(acct, wh, "old", 2, body, "ann@example.org", attempted_at=now - 2 * DAY + 5000),
        attempt(acct, wh, "new", 1, contact_body("c-bob", "bob@example.org"), "bob@example.org",
                attempted_at=now - 3600_000),
    ])  # fmt: skip
    cutoff = from_ms(now - DAY)
    expired = store.expire_bodies_older_than(cutoff)
    assert (expired.attempts, expired.complete) == (2, True)
    old = store.get_message(acct, wh, "old")
    assert old is not None and old.message.attempt_count == 2 and old.message.status == "retrying"
    for a in old.attempts:
        assert a.body_expired and not a.erased
        assert a.request_body == b"" and a.response_excerpt == b"" and a.response_headers == {}
        assert a.response_status == 503 and a.latency_seconds == pytest.approx(0.042)
        assert a.error_class == "http_5xx" and a.request_headers["X-Webhook-Event"] == "CONTACT_CREATED"
    new = store.get_message(acct, wh, "new")
    assert new is not None and not new.attempts[0].body_expired and new.attempts[0].request_body
    assert b'"bob@example.org"' not in b"".join(a.request_body for a in old.attempts)
    assert store.expire_bodies_older_than(cutoff).attempts == 0  # nothing left to do
    # The contact is still known for an erasure (its id stays with the attempt, not in the body).
    assert store.erase_contact(acct, "c-ann", requested_by="api").messages == 1


def test_body_expiry_runs_in_bounded_steps(backend: Backend) -> None:
    store = backend.open()
    old = now_ms() - 10 * DAY
    store.insert_attempts([delivery_result("a", "w", f"m{i}", 1, attempted_at=old + i) for i in range(1200)])
    cutoff = datetime.now(UTC) - timedelta(days=1)
    first = store.expire_bodies_older_than(cutoff, max_attempts=700)
    assert (first.attempts, first.complete) == (700, False)
    rest = store.expire_bodies_older_than(cutoff, max_attempts=700)
    assert (rest.attempts, rest.complete) == (500, True)


def test_a_version_1_store_migrates_and_learns_its_rows_contacts(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sql, "MIGRATIONS", _sql.MIGRATIONS[:1])
    v1 = backend.open()
    assert isinstance(v1, _sql.SqlStore)
    rows = [
        attempt("acct-a", "wh-1", "ann-1", 1, contact_body("c-ann", "ann@example.org"), "ann@example.org"),
        attempt("acct-a", "wh-1", "bob-1", 1, contact_body("c-bob", "bob@example.org"), "bob@example.org"),
    ]
    d = v1.dialect
    columns = _sql._ATTEMPT_COLUMNS[:-1]  # the version 1 columns: everything but contact_id
    marks = ", ".join("?" for _ in columns)
    insert = f"INSERT INTO hookline_attempts ({', '.join(columns)}) VALUES ({marks})"
    with v1._write() as cur:
        for r in rows:
            row = _sql._attempt_row(r, now_ms())
            cur.execute(
                d.sql(insert),
                row[: len(columns)],
            )
            cur.execute(d.sql(_sql._upsert_message(d)), _sql._message_row(row, row, 1))
    v1.close()
    monkeypatch.undo()

    store = backend.open()  # migrates to the current version
    assert store.erase_contact("acct-a", "c-ann", requested_by="operator").attempts == 1
    assert backend.scan("ann@example.org") == [] and backend.scan("bob@example.org")


def test_an_attempt_being_stored_while_its_contact_is_erased_is_erased_too(postgres_url: str) -> None:
    """PostgreSQL, two writers: a log sink's transaction that stored an attempt of the message (and holds
    the message's row lock) commits while the erasure waits for that lock; its attempt is blanked too."""
    import threading

    import psycopg

    store = PostgresStore(postgres_url)
    try:
        store.insert_attempts(
            [attempt("acct-a", "wh-1", "ann-1", 1, contact_body("c-ann", ANN_MAIL), ANN_MAIL)]
        )
        late = attempt("acct-a", "wh-1", "ann-1", 2, contact_body("c-ann", ANN_MAIL), ANN_MAIL)
        row = _sql._attempt_row(late, now_ms())
        d = store.dialect
        with psycopg.connect(postgres_url) as sink:  # one transaction, like insert_attempts
            sink.execute(d.sql(_sql.INSERT_ATTEMPT), row)
            sink.execute(d.sql(_sql._upsert_message(d)), _sql._message_row(row, row, 1))
            done: list[Any] = []
            eraser = threading.Thread(
                target=lambda: done.append(store.erase_contact("acct-a", "c-ann", requested_by="operator"))
            )
            eraser.start()
            eraser.join(1.0)
            assert eraser.is_alive(), "the erasure must wait for the message's row lock"
            sink.commit()
        eraser.join(30)
        assert done and (done[0].messages, done[0].attempts) == (1, 2)
        assert in_postgres(postgres_url, ANN_MAIL) == []
    finally:
        store.close()
