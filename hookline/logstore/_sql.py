"""The SQL both implementations share: schema, statements, row mapping and the write algorithm.

Tables:

- ``hookline_attempts``: one row per DeliveryResult, unique on (message_id, attempt_id).
- ``hookline_messages``: one row per message, kept up to date by every insert. ``seq`` is assigned
  when the message is first stored and never changes (the list order and cursor, see ``base``).
  Updates are increments (``attempt_count + n``) and "newer wins" comparisons done by the database
  under the row lock of ``ON CONFLICT DO UPDATE``, so concurrent writers cannot lose an attempt.
- ``hookline_webhook_last``: each webhook's most recent attempt, for the web page's list.
- ``hookline_erasures``: one row per contact erasure (when, who asked, how many rows), without the
  contact id or anything else personal (docs/data-retention.md).

Version 2 adds ``contact_id`` to attempts (filled from the body when stored; existing rows are filled
when the store migrates), the ``body_expired`` and ``erased`` flags, and ``erased_at`` to messages.

Times are epoch milliseconds (BIGINT), headers JSON text, bodies BLOB / BYTEA.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from hookline.logstore.base import (
    MAX_PAGE,
    STATUSES,
    AttemptRecord,
    Erasure,
    FailedMessage,
    LastDelivery,
    MessageDetail,
    MessagePage,
    MessageSummary,
    Purged,
    StoreRejected,
    UnknownCursor,
    from_ms,
    message_status,
    to_ms,
)
from hookline.payloads import contact_of
from hookline.records import DeliveryResult

__all__ = ["Cursor", "Dialect", "SqlStore"]

_PURGE_CHUNK = 500


class Cursor(Protocol):
    """The part of a DB-API cursor the shared code uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: Any, params: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    seq_column: str  # an auto-increasing integer primary key
    bytes_type: str
    least: str  # two-argument minimum
    lock_rows: str  # suffix that locks the rows a purge selects ("" where writers are serialised)
    param: str  # placeholder: statements below are written with "?"

    def sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)


def _schema_v1(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE hookline_attempts (
            id {d.seq_column},
            account_id TEXT NOT NULL,
            webhook_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            attempt_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_occurred_at BIGINT NOT NULL,
            attempted_at BIGINT NOT NULL,
            url TEXT NOT NULL,
            request_headers TEXT NOT NULL,
            request_body {d.bytes_type} NOT NULL,
            response_status INTEGER,
            response_headers TEXT NOT NULL,
            response_excerpt {d.bytes_type} NOT NULL,
            response_truncated BOOLEAN NOT NULL,
            latency_seconds DOUBLE PRECISION NOT NULL,
            outcome TEXT NOT NULL,
            error_class TEXT,
            error_message TEXT,
            next_retry_at BIGINT,
            is_final BOOLEAN NOT NULL,
            trigger_kind TEXT NOT NULL,
            stored_at BIGINT NOT NULL,
            UNIQUE (message_id, attempt_id)
        )""",
        f"""CREATE TABLE hookline_messages (
            seq {d.seq_column},
            account_id TEXT NOT NULL,
            webhook_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            event_occurred_at BIGINT NOT NULL,
            trigger_kind TEXT NOT NULL,
            first_attempt_at BIGINT NOT NULL,
            last_attempt_at BIGINT NOT NULL,
            attempt_count INTEGER NOT NULL,
            last_attempt_id TEXT NOT NULL,
            last_attempt INTEGER NOT NULL,
            last_outcome TEXT NOT NULL,
            status TEXT NOT NULL,
            last_response_status INTEGER,
            last_error_class TEXT,
            next_retry_at BIGINT,
            url TEXT NOT NULL,
            UNIQUE (account_id, webhook_id, message_id)
        )""",
        "CREATE INDEX hookline_messages_by_seq ON hookline_messages (account_id, webhook_id, seq)",
        "CREATE INDEX hookline_messages_by_status ON hookline_messages (account_id, webhook_id, status, seq)",
        "CREATE INDEX hookline_messages_by_event"
        " ON hookline_messages (account_id, webhook_id, event_type, seq)",
        "CREATE INDEX hookline_messages_by_age ON hookline_messages (last_attempt_at)",
        """CREATE TABLE hookline_webhook_last (
            account_id TEXT NOT NULL,
            webhook_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            attempt_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            attempted_at BIGINT NOT NULL,
            status TEXT NOT NULL,
            outcome TEXT NOT NULL,
            response_status INTEGER,
            PRIMARY KEY (account_id, webhook_id)
        )""",
        "CREATE INDEX hookline_webhook_last_by_age ON hookline_webhook_last (attempted_at)",
    ]


def _schema_v2(d: Dialect) -> list[str]:
    return [
        "ALTER TABLE hookline_attempts ADD COLUMN contact_id TEXT",
        "ALTER TABLE hookline_attempts ADD COLUMN body_expired BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE hookline_attempts ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE hookline_messages ADD COLUMN erased_at BIGINT",
        "CREATE INDEX hookline_attempts_by_contact ON hookline_attempts (account_id, contact_id)"
        " WHERE contact_id IS NOT NULL",
        "CREATE INDEX hookline_attempts_bodies_by_age ON hookline_attempts (attempted_at)"
        " WHERE body_expired = FALSE",
        "CREATE INDEX hookline_messages_erased ON hookline_messages (message_id) WHERE erased_at IS NOT NULL",
        f"""CREATE TABLE hookline_erasures (
            id {d.seq_column},
            account_id TEXT NOT NULL,
            erased_at BIGINT NOT NULL,
            requested_by TEXT NOT NULL,
            messages INTEGER NOT NULL,
            attempts INTEGER NOT NULL
        )""",
        "CREATE INDEX hookline_erasures_by_account ON hookline_erasures (account_id, id)",
    ]


def _backfill_contacts(d: Dialect, cur: Cursor) -> None:
    """Fill ``contact_id`` of the attempts stored before version 2, from their bodies."""
    select = d.sql("SELECT id, request_body FROM hookline_attempts WHERE id > ? ORDER BY id LIMIT 1000")
    update = d.sql("UPDATE hookline_attempts SET contact_id = ? WHERE id = ?")
    last = 0
    while True:
        cur.execute(select, (last,))
        rows = cur.fetchall()
        if not rows:
            return
        found = [(c, i) for i, body in rows if (c := contact_of(bytes(body))) is not None]
        if found:
            cur.executemany(update, found)
        last = rows[-1][0]


#: Schema versions in order; a store applies the ones its database lacks when it opens.
MIGRATIONS = (_schema_v1, _schema_v2)
#: Data changes that follow a version's statements.
_BACKFILLS = {2: _backfill_contacts}

_ATTEMPT_COLUMNS = (
    "account_id",
    "webhook_id",
    "message_id",
    "attempt_id",
    "attempt",
    "event_id",
    "event_type",
    "event_occurred_at",
    "attempted_at",
    "url",
    "request_headers",
    "request_body",
    "response_status",
    "response_headers",
    "response_excerpt",
    "response_truncated",
    "latency_seconds",
    "outcome",
    "error_class",
    "error_message",
    "next_retry_at",
    "is_final",
    "trigger_kind",
    "stored_at",
    "contact_id",
)
INSERT_ATTEMPT = (
    f"INSERT INTO hookline_attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ATTEMPT_COLUMNS)}) ON CONFLICT (message_id, attempt_id) DO NOTHING"
)

_MESSAGE_COLUMNS = (
    "account_id",
    "webhook_id",
    "message_id",
    "event_id",
    "event_type",
    "event_occurred_at",
    "trigger_kind",
    "first_attempt_at",
    "last_attempt_at",
    "attempt_count",
    "last_attempt_id",
    "last_attempt",
    "last_outcome",
    "status",
    "last_response_status",
    "last_error_class",
    "next_retry_at",
    "url",
)
# Columns that follow the latest attempt.
_LATEST = (
    "last_attempt_at",
    "last_attempt_id",
    "last_attempt",
    "last_outcome",
    "status",
    "last_response_status",
    "last_error_class",
    "next_retry_at",
    "url",
)
_NEWER = (
    "(excluded.last_attempt_at > m.last_attempt_at OR (excluded.last_attempt_at = m.last_attempt_at"
    " AND excluded.last_attempt >= m.last_attempt))"
)


def _upsert_message(d: Dialect) -> str:
    sets = [
        "attempt_count = m.attempt_count + excluded.attempt_count",
        "trigger_kind = CASE WHEN excluded.first_attempt_at < m.first_attempt_at"
        " THEN excluded.trigger_kind ELSE m.trigger_kind END",
        f"first_attempt_at = {d.least}(m.first_attempt_at, excluded.first_attempt_at)",
        *(f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE m.{c} END" for c in _LATEST),
    ]
    return (
        f"INSERT INTO hookline_messages AS m ({', '.join(_MESSAGE_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _MESSAGE_COLUMNS)}) "
        f"ON CONFLICT (account_id, webhook_id, message_id) DO UPDATE SET {', '.join(sets)}"
    )


UPSERT_WEBHOOK_LAST = (
    "INSERT INTO hookline_webhook_last AS w (account_id, webhook_id, message_id, attempt_id, attempt,"
    " attempted_at, status, outcome, response_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (account_id, webhook_id) DO UPDATE SET message_id = excluded.message_id,"
    " attempt_id = excluded.attempt_id, attempt = excluded.attempt, attempted_at = excluded.attempted_at,"
    " status = excluded.status, outcome = excluded.outcome, response_status = excluded.response_status"
    " WHERE excluded.attempted_at > w.attempted_at"
    " OR (excluded.attempted_at = w.attempted_at AND excluded.attempt >= w.attempt)"
)

_SUMMARY_SELECT = f"SELECT seq, {', '.join(_MESSAGE_COLUMNS)}, erased_at FROM hookline_messages"
_ATTEMPT_SELECT = (
    "SELECT attempt_id, attempt, attempted_at, url, request_headers, request_body, response_status,"
    " response_headers, response_excerpt, response_truncated, latency_seconds, outcome, error_class,"
    " error_message, next_retry_at, is_final, trigger_kind, body_expired, erased FROM hookline_attempts"
)
# What an erasure removes from an attempt (parameters: two empty bodies, then the message's scope).
_BLANK_ATTEMPTS = (
    "UPDATE hookline_attempts SET request_body = ?, response_excerpt = ?, request_headers = '{}',"
    " response_headers = '{}', error_message = NULL, contact_id = NULL, erased = TRUE"
    " WHERE account_id = ? AND webhook_id = ? AND message_id = ?"
)
_ERASED_AMONG = 500  # message ids one "which of these are erased" query names at most


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    # PostgreSQL text cannot hold NUL; both stores replace it so they answer alike.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{value} does not fit 64 bits")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _headers(value: Any) -> str:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a map of headers, got {type(value).__name__}")
    return orjson.dumps({_text(k): _text(v) for k, v in value.items()}).decode()


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _attempt_row(r: DeliveryResult, stored_at: int) -> tuple[Any, ...]:
    return (
        _text(r.account_id),
        _text(r.webhook_id),
        _text(r.message_id),
        _text(r.attempt_id),
        _int(r.attempt),
        _text(r.event_id),
        _text(r.event_type),
        _int(r.event_occurred_at),
        _int(r.attempted_at),
        _text(r.url),
        _headers(r.request_headers),
        _bytes(r.request_body),
        _opt_int(r.response_status),
        _headers(r.response_headers),
        _bytes(r.response_body_excerpt),
        bool(r.response_body_truncated),
        float(r.latency_seconds),
        _text(r.outcome),
        _opt_text(r.error_class),
        _opt_text(r.error_message),
        _opt_int(r.next_retry_at),
        bool(r.final),
        _text(r.trigger),
        stored_at,
        contact_of(_bytes(r.request_body)),
    )


# Positions in _attempt_row.
_ACC, _WH, _MSG, _AID, _ATT, _EID, _ETYPE, _EAT, _AT, _URL = range(10)
_RSTATUS, _OUTCOME, _ECLASS, _NEXT, _FINAL, _TRIGGER = 12, 17, 18, 20, 21, 22


def _later(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Is attempt row ``a`` at least as recent as ``b`` (time, then attempt number)?"""
    return (a[_AT], a[_ATT]) >= (b[_AT], b[_ATT])


def _message_row(first: tuple[Any, ...], last: tuple[Any, ...], count: int) -> tuple[Any, ...]:
    return (
        first[_ACC],
        first[_WH],
        first[_MSG],
        first[_EID],
        first[_ETYPE],
        first[_EAT],
        first[_TRIGGER],
        first[_AT],
        last[_AT],
        count,
        last[_AID],
        last[_ATT],
        last[_OUTCOME],
        message_status(last[_OUTCOME], last[_FINAL]),
        last[_RSTATUS],
        last[_ECLASS],
        last[_NEXT],
        last[_URL],
    )


def _opt_time(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


def _summary(row: Sequence[Any]) -> MessageSummary:
    (
        _seq,
        account_id,
        webhook_id,
        message_id,
        event_id,
        event_type,
        event_occurred_at,
        trigger,
        first_at,
        last_at,
        count,
        _last_id,
        last_attempt,
        last_outcome,
        status,
        last_response_status,
        last_error_class,
        next_retry_at,
        url,
        erased_at,
    ) = row
    return MessageSummary(
        account_id=account_id,
        webhook_id=webhook_id,
        message_id=message_id,
        event_id=event_id,
        event_type=event_type,
        event_occurred_at=from_ms(event_occurred_at),
        trigger=trigger,
        status=status,
        last_outcome=last_outcome,
        attempt_count=int(count),
        last_attempt=int(last_attempt),
        last_response_status=last_response_status,
        last_error_class=last_error_class,
        first_attempt_at=from_ms(first_at),
        last_attempt_at=from_ms(last_at),
        next_retry_at=_opt_time(next_retry_at),
        url=url,
        erased_at=_opt_time(erased_at),
    )


def _attempt(row: Sequence[Any]) -> AttemptRecord:
    (
        attempt_id,
        attempt,
        attempted_at,
        url,
        request_headers,
        request_body,
        response_status,
        response_headers,
        excerpt,
        truncated,
        latency,
        outcome,
        error_class,
        error_message,
        next_retry_at,
        final,
        trigger,
        body_expired,
        erased,
    ) = row
    return AttemptRecord(
        attempt_id=attempt_id,
        attempt=int(attempt),
        attempted_at=from_ms(attempted_at),
        url=url,
        request_headers=orjson.loads(request_headers),
        request_body=bytes(request_body),
        response_status=response_status,
        response_headers=orjson.loads(response_headers),
        response_excerpt=bytes(excerpt),
        response_truncated=bool(truncated),
        latency_seconds=float(latency),
        outcome=outcome,
        error_class=error_class,
        error_message=error_message,
        next_retry_at=_opt_time(next_retry_at),
        final=bool(final),
        trigger=trigger,
        body_expired=bool(body_expired),
        erased=bool(erased),
    )


class SqlStore:
    """A LogStore over a DB-API database; subclasses supply connections, transactions and errors."""

    dialect: Dialect

    def __init__(self) -> None:
        d = self.dialect
        self._insert_attempt = d.sql(INSERT_ATTEMPT)
        self._upsert_message = d.sql(_upsert_message(d))
        self._upsert_last = d.sql(UPSERT_WEBHOOK_LAST)

    # -- hooks --------------------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction: committed when the block ends, rolled back when it raises."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        """A read-only transaction that sees one snapshot."""
        raise NotImplementedError

    def _insert_rows(self, cur: Cursor, sql: str, rows: list[tuple[Any, ...]]) -> list[bool]:
        """Run the insert for every row; say for each whether it added a row."""
        raise NotImplementedError

    def _scrub(self) -> None:
        """After an erasure: push the old versions of the rows it changed out of the database's files."""

    def ping(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self, cur: Cursor) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS hookline_logstore_version (version INTEGER NOT NULL)")
        cur.execute("SELECT MAX(version) FROM hookline_logstore_version")
        row = cur.fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the log store's schema is version {current}, newer than this hookline knows"
                f" ({len(MIGRATIONS)})"
            )
        for version, build in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in build(self.dialect):
                cur.execute(statement)
            if version in _BACKFILLS:
                _BACKFILLS[version](self.dialect, cur)
            record = self.dialect.sql("INSERT INTO hookline_logstore_version (version) VALUES (?)")
            cur.execute(record, (version,))

    # -- writes -------------------------------------------------------------------------------

    def insert_attempts(self, results: Sequence[DeliveryResult]) -> int:
        now = int(time.time() * 1000)
        rows: list[tuple[Any, ...]] = []
        for i, r in enumerate(results):
            try:
                rows.append(_attempt_row(r, now))
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreRejected(f"result {i}: {type(exc).__name__}: {exc}") from exc
        if not rows:
            return 0
        with self._write() as cur:
            inserted = self._insert_rows(cur, self._insert_attempt, rows)
            new = [row for row, added in zip(rows, inserted, strict=True) if added]
            if not new:
                return 0
            messages: dict[tuple[str, str, str], tuple[tuple[Any, ...], tuple[Any, ...], int]] = {}
            webhooks: dict[tuple[str, str], tuple[Any, ...]] = {}
            for row in new:
                key = (row[_ACC], row[_WH], row[_MSG])
                seen = messages.get(key)
                if seen is None:
                    messages[key] = (row, row, 1)
                else:
                    first, last, count = seen
                    messages[key] = (
                        row if (row[_AT], row[_ATT]) < (first[_AT], first[_ATT]) else first,
                        row if _later(row, last) else last,
                        count + 1,
                    )
                wkey = (row[_ACC], row[_WH])
                if wkey not in webhooks or _later(row, webhooks[wkey]):
                    webhooks[wkey] = row
            cur.executemany(
                self._upsert_message, [_message_row(first, last, n) for first, last, n in messages.values()]
            )
            cur.executemany(
                self._upsert_last,
                [
                    (
                        r[_ACC],
                        r[_WH],
                        r[_MSG],
                        r[_AID],
                        r[_ATT],
                        r[_AT],
                        message_status(r[_OUTCOME], r[_FINAL]),
                        r[_OUTCOME],
                        r[_RSTATUS],
                    )
                    for r in webhooks.values()
                ],
            )
            self._blank_erased(cur, list(messages))
        return len(new)

    def _blank_erased(self, cur: Cursor, keys: list[tuple[str, str, str]]) -> None:
        """Attempts just stored for a message erased before (a retry in flight, a re-read of the
        results topic) lose their personal data in the same transaction."""
        d = self.dialect
        wanted = set(keys)
        for i in range(0, len(keys), _ERASED_AMONG):
            chunk = keys[i : i + _ERASED_AMONG]
            marks = ", ".join("?" for _ in chunk)
            cur.execute(
                d.sql(
                    "SELECT account_id, webhook_id, message_id FROM hookline_messages"
                    f" WHERE erased_at IS NOT NULL AND message_id IN ({marks})"
                ),
                [k[2] for k in chunk],
            )
            erased = [tuple(r) for r in cur.fetchall() if tuple(r) in wanted]
            if erased:
                cur.executemany(d.sql(_BLANK_ATTEMPTS), [(b"", b"", *k) for k in erased])

    def erase_contact(self, account_id: str, contact_id: str, *, requested_by: str) -> Erasure:
        d = self.dialect
        now = int(time.time() * 1000)
        with self._write() as cur:
            cur.execute(
                d.sql(
                    "SELECT DISTINCT webhook_id, message_id FROM hookline_attempts"
                    " WHERE account_id = ? AND contact_id = ?"
                ),
                (account_id, contact_id),
            )
            found = sorted((account_id, wh, msg) for wh, msg in cur.fetchall())
            # Mark the messages first: that takes their row locks, which a log sink storing another
            # attempt of one of them holds until it commits (PostgreSQL). The attempts are blanked
            # after, so they include such an attempt; one stored after this commits sees the mark and
            # is blanked by its own transaction (_blank_erased).
            cur.executemany(
                d.sql(
                    "UPDATE hookline_messages SET erased_at = ?"
                    " WHERE account_id = ? AND webhook_id = ? AND message_id = ?"
                ),
                [(now, *key) for key in found],
            )
            attempts = 0
            for key in found:
                cur.execute(d.sql(_BLANK_ATTEMPTS), (b"", b"", *key))
                attempts += max(cur.rowcount, 0)
            cur.execute(
                d.sql(
                    "INSERT INTO hookline_erasures (account_id, erased_at, requested_by, messages,"
                    " attempts) VALUES (?, ?, ?, ?, ?) RETURNING id"
                ),
                (account_id, now, requested_by, len(found), attempts),
            )
            erasure_id = int(cur.fetchone()[0])
        if found:
            self._scrub()
        return Erasure(erasure_id, account_id, from_ms(now), requested_by, len(found), attempts)

    def erasures(self, account_id: str | None = None, *, limit: int = 100) -> list[Erasure]:
        where, params = ("WHERE account_id = ?", [account_id]) if account_id is not None else ("", [])
        with self._read() as cur:
            cur.execute(
                self.dialect.sql(
                    "SELECT id, account_id, erased_at, requested_by, messages, attempts"
                    f" FROM hookline_erasures {where} ORDER BY id DESC LIMIT ?"
                ),
                (*params, limit),
            )
            rows = cur.fetchall()
        return [Erasure(int(r[0]), r[1], from_ms(r[2]), r[3], int(r[4]), int(r[5])) for r in rows]

    def expire_bodies_older_than(self, cutoff: datetime, *, max_attempts: int | None = None) -> Purged:
        d = self.dialect
        update = d.sql(
            "UPDATE hookline_attempts SET request_body = ?, response_excerpt = ?, response_headers = '{}',"
            " body_expired = TRUE"
            " WHERE id IN (SELECT id FROM hookline_attempts WHERE body_expired = FALSE AND attempted_at < ?"
            f" ORDER BY attempted_at LIMIT ? {d.lock_rows})"
        )
        expired = 0
        while True:
            chunk = _PURGE_CHUNK if max_attempts is None else min(_PURGE_CHUNK, max_attempts - expired)
            if chunk <= 0:
                return Purged(0, expired, complete=False)
            with self._write() as cur:
                cur.execute(update, (b"", b"", to_ms(cutoff), chunk))
                done = max(cur.rowcount, 0)
            expired += done
            if done < chunk:
                return Purged(0, expired, complete=True)

    def purge_older_than(self, cutoff: datetime, *, max_messages: int | None = None) -> Purged:
        limit_ms = to_ms(cutoff)
        d = self.dialect
        select = d.sql(
            "SELECT seq, account_id, webhook_id, message_id FROM hookline_messages WHERE last_attempt_at < ?"
            f" ORDER BY last_attempt_at LIMIT ? {d.lock_rows}"
        )
        delete_attempts = d.sql(
            "DELETE FROM hookline_attempts WHERE message_id = ? AND account_id = ? AND webhook_id = ?"
        )
        delete_message = d.sql("DELETE FROM hookline_messages WHERE seq = ?")
        messages = attempts = 0
        while True:
            chunk = _PURGE_CHUNK if max_messages is None else min(_PURGE_CHUNK, max_messages - messages)
            if chunk <= 0:
                return Purged(messages, attempts, complete=False)
            with self._write() as cur:
                cur.execute(select, (limit_ms, chunk))
                found = cur.fetchall()
                for seq, account_id, webhook_id, message_id in found:
                    cur.execute(delete_attempts, (message_id, account_id, webhook_id))
                    attempts += max(cur.rowcount, 0)
                    cur.execute(delete_message, (seq,))
                    messages += max(cur.rowcount, 0)
                if len(found) < chunk:
                    cur.execute(
                        d.sql("DELETE FROM hookline_webhook_last WHERE attempted_at < ?"), (limit_ms,)
                    )
                    return Purged(messages, attempts, complete=True)

    # -- reads --------------------------------------------------------------------------------

    def list_messages(
        self,
        account_id: str,
        webhook_id: str,
        *,
        status: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> MessagePage:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be in 1..{MAX_PAGE}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        d = self.dialect
        where = ["account_id = ?", "webhook_id = ?"]
        params: list[Any] = [account_id, webhook_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if event_type is not None:
            where.append("event_type = ?")
            params.append(event_type)
        with self._read() as cur:
            if starting_after is not None:
                cur.execute(
                    d.sql(
                        "SELECT seq FROM hookline_messages"
                        " WHERE account_id = ? AND webhook_id = ? AND message_id = ?"
                    ),
                    (account_id, webhook_id, starting_after),
                )
                found = cur.fetchone()
                if found is None:
                    raise UnknownCursor(f"no message {starting_after!r} in this webhook's log")
                where.append("seq < ?")
                params.append(found[0])
            cur.execute(
                d.sql(f"{_SUMMARY_SELECT} WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"),
                (*params, limit + 1),
            )
            rows = cur.fetchall()
        return MessagePage([_summary(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def get_message(self, account_id: str, webhook_id: str, message_id: str) -> MessageDetail | None:
        d = self.dialect
        scope = (account_id, webhook_id, message_id)
        with self._read() as cur:
            cur.execute(
                d.sql(f"{_SUMMARY_SELECT} WHERE account_id = ? AND webhook_id = ? AND message_id = ?"), scope
            )
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                d.sql(
                    f"{_ATTEMPT_SELECT} WHERE account_id = ? AND webhook_id = ? AND message_id = ?"
                    " ORDER BY attempted_at, attempt, id"
                ),
                scope,
            )
            attempts = [_attempt(a) for a in cur.fetchall()]
        return MessageDetail(_summary(row), attempts)

    def failed_since(
        self, account_id: str, webhook_id: str, since: datetime, *, limit: int
    ) -> list[FailedMessage]:
        d = self.dialect
        # The body of the earliest attempt that logged one, and the highest attempt number logged.
        scope = "a.account_id = m.account_id AND a.webhook_id = m.webhook_id AND a.message_id = m.message_id"
        columns = ", ".join(f"m.{c}" for c in ("seq", *_MESSAGE_COLUMNS, "erased_at"))
        sql = (
            f"SELECT {columns},"
            f" (SELECT a.request_body FROM hookline_attempts a WHERE {scope} AND length(a.request_body) > 0"
            "  ORDER BY a.attempted_at, a.attempt, a.id LIMIT 1),"
            f" (SELECT MAX(a.attempt) FROM hookline_attempts a WHERE {scope})"
            " FROM hookline_messages m"
            " WHERE m.account_id = ? AND m.webhook_id = ? AND m.status = 'failed'"
            " AND m.trigger_kind <> 'test' AND m.first_attempt_at >= ?"
            " ORDER BY m.first_attempt_at, m.seq LIMIT ?"
        )
        with self._read() as cur:
            cur.execute(d.sql(sql), (account_id, webhook_id, to_ms(since), limit))
            rows = cur.fetchall()
        return [FailedMessage(_summary(r[:-2]), bytes(r[-2] or b""), int(r[-1])) for r in rows]

    def last_status_by_webhook(self, account_id: str) -> dict[str, LastDelivery]:
        with self._read() as cur:
            cur.execute(
                self.dialect.sql(
                    "SELECT webhook_id, message_id, attempt_id, attempted_at, status, outcome,"
                    " response_status FROM hookline_webhook_last WHERE account_id = ?"
                ),
                (account_id,),
            )
            rows = cur.fetchall()
        return {
            r[0]: LastDelivery(
                webhook_id=r[0],
                message_id=r[1],
                attempt_id=r[2],
                attempted_at=from_ms(r[3]),
                status=r[4],
                outcome=r[5],
                response_status=r[6],
            )
            for r in rows
        }
