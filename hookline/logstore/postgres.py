"""The log store on PostgreSQL (psycopg 3 with a connection pool).

Writers may run in several processes (one log sink per partition set): every message update is an
``ON CONFLICT DO UPDATE`` increment under the row lock, and a purge locks the rows it deletes with
``FOR UPDATE SKIP LOCKED``. Reads run in ``REPEATABLE READ, READ ONLY`` transactions so a message
and its attempts come from one snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from hookline.logstore._sql import Cursor, Dialect, SqlStore
from hookline.logstore.base import LogStoreError, StoreRejected, StoreUnavailable

__all__ = ["PostgresStore"]

log = logging.getLogger("hookline.logstore")

_DIALECT = Dialect(
    name="postgresql",
    seq_column="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    bytes_type="BYTEA",
    least="LEAST",
    lock_rows="FOR UPDATE SKIP LOCKED",
    param="%s",
)
# Serialises schema migrations of concurrently starting processes (an arbitrary constant).
_MIGRATION_LOCK = 0x686F6F6B6C696E65


def _translate(exc: Exception) -> LogStoreError:
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return StoreRejected(f"postgresql refused the data: {exc}")
    return StoreUnavailable(f"postgresql: {type(exc).__name__}: {exc}")


class PostgresStore(SqlStore):
    """A LogStore in the PostgreSQL database at ``url`` (``postgresql://user:pass@host:port/db``)."""

    dialect = _DIALECT

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 10.0) -> None:
        super().__init__()
        self._timeout = timeout
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": False, "connect_timeout": max(1, int(timeout))},
            check=ConnectionPool.check_connection,  # a restarted server leaves dead connections behind
            # The pool retries a lost connection after 1, 2, 4, 8, 16 ... s until reconnect_timeout
            # (5 min by default): a server back after a 30 s outage was reached 27 s later, and one back
            # after minutes would be reached minutes later. Give an attempt up after ``timeout``: the
            # next request starts a new one at once (docs/architecture.md §6, log sink).
            reconnect_timeout=timeout,
            open=False,
            name="hookline-logstore",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            with self._write() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                self._migrate(cur)
        except BaseException as exc:
            self._pool.close()
            if isinstance(exc, PoolTimeout | psycopg.Error):
                raise StoreUnavailable(f"cannot open the log store: {type(exc).__name__}: {exc}") from exc
            raise

    def __repr__(self) -> str:
        return "PostgresStore(...)"  # the URL may hold a password

    @contextmanager
    def _transaction(self, read_only: bool) -> Iterator[Cursor]:
        try:
            with self._pool.connection(timeout=self._timeout) as conn, conn.cursor() as cur:
                if read_only:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield cast(Cursor, cur)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _translate(exc) from exc

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._transaction(read_only=False)

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._transaction(read_only=True)

    def _insert_rows(self, cur: Cursor, sql: str, rows: list[tuple[Any, ...]]) -> list[bool]:
        pg = cast(psycopg.Cursor[Any], cur)
        pg.executemany(sql + " RETURNING 1", rows, returning=True)
        out = []
        while True:
            out.append(pg.fetchone() is not None)
            if not pg.nextset():
                break
        return out

    def _scrub(self) -> None:
        # An UPDATE leaves the old row versions (bodies included) in the table's files until VACUUM
        # reclaims them; do it now rather than when autovacuum gets round to it. Best effort: a
        # transaction that still sees the old versions keeps them until it ends.
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                conn.autocommit = True
                try:
                    conn.execute("VACUUM hookline_attempts, hookline_messages")
                finally:
                    conn.autocommit = False
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("log store: VACUUM after an erasure failed (autovacuum will do it): %s", exc)

    def ping(self) -> bool:
        try:
            with self._read() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() is not None
        except LogStoreError:
            return False

    def close(self) -> None:
        self._pool.close()
