"""The embedded log store: one SQLite file in WAL mode.

One writer connection behind a lock (SQLite allows one writer at a time anyway; ``BEGIN IMMEDIATE``
makes a second process wait up to the busy timeout instead of failing mid-transaction), and a small
pool of reader connections, which WAL lets read a consistent snapshot while the writer works.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from hookline.logstore._sql import Cursor, Dialect, SqlStore
from hookline.logstore.base import LogStoreError, StoreRejected, StoreUnavailable

__all__ = ["SqliteStore"]

log = logging.getLogger("hookline.logstore")

_DIALECT = Dialect(
    name="sqlite",
    seq_column="INTEGER PRIMARY KEY AUTOINCREMENT",
    bytes_type="BLOB",
    least="min",
    lock_rows="",
    param="?",
)
_IDLE_READERS = 8


def _translate(exc: Exception) -> LogStoreError:
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError):
        return StoreRejected(f"sqlite refused the data: {exc}")
    return StoreUnavailable(f"sqlite: {type(exc).__name__}: {exc}")


class SqliteStore(SqlStore):
    """A LogStore in the SQLite file at ``path`` (created, with its directory, when missing)."""

    dialect = _DIALECT

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        super().__init__()
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives a power cut, so an offset stored after it never skips rows.
            self._writer.execute("PRAGMA synchronous=FULL")
            # Deleted and overwritten content is zeroed, so an erased body is not left in free space.
            self._writer.execute("PRAGMA secure_delete=ON")
            with self._write() as cur:
                self._migrate(cur)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open the log store at {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        return conn

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        if self._closed:
            raise StoreUnavailable("the log store is closed")
        with self._lock:
            cur = self._writer.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
            try:
                yield cast(Cursor, cur)
                self._writer.execute("COMMIT")
            except BaseException as exc:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | OverflowError):
                    raise _translate(exc) from exc
                raise
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        if self._closed:
            raise StoreUnavailable("the log store is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
        cur = conn.cursor()
        try:
            cur.execute("BEGIN")  # deferred: the first SELECT fixes the snapshot
            yield cast(Cursor, cur)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {type(exc).__name__}: {exc}") from exc
        finally:
            cur.close()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._closed or self._readers.qsize() >= _IDLE_READERS:
                conn.close()
            else:
                self._readers.put(conn)

    def _insert_rows(self, cur: Cursor, sql: str, rows: list[tuple[Any, ...]]) -> list[bool]:
        out = []
        for row in rows:
            cur.execute(sql, row)
            out.append(cur.rowcount == 1)
        return out

    def _scrub(self) -> None:
        # The old page versions an erasure replaced sit in the write-ahead log until a checkpoint
        # copies the new ones into the file; TRUNCATE also empties the log. A reader holding an old
        # snapshot makes it give up early: try a few times, then leave it to SQLite's own checkpoints.
        for _ in range(5):
            with self._lock:
                busy, _log, _done = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
        log.warning("log store: the write-ahead log could not be emptied after an erasure (readers busy)")

    def ping(self) -> bool:
        try:
            with self._read() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() is not None
        except LogStoreError:
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break
