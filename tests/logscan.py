"""Look for a string in a log store's raw data: the SQLite files' bytes, every PostgreSQL column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["in_postgres", "in_sqlite_files"]


def in_sqlite_files(path: Path, needle: str) -> list[str]:
    """The files of the SQLite store at ``path`` (database, write-ahead log) whose bytes hold ``needle``.

    Checkpoints first from a connection of its own, as any later opener of the file would; the
    write-ahead log is read as it is left.
    """
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    raw = needle.encode()
    found = []
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        if f.exists() and raw in f.read_bytes():
            found.append(f.name)
    return found


def in_postgres(url: str, needle: str) -> list[str]:
    """``table.column`` of every column of every table in the database whose value holds ``needle``
    (text as it is, bytea by its bytes)."""
    import psycopg

    found = []
    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
        for table, column, kind in columns:
            if kind == "bytea":
                test = f"position(convert_to(%s, 'UTF8') in \"{column}\") > 0"
            else:
                test = f'position(%s in "{column}"::text) > 0'
            row = conn.execute(f'SELECT count(*) FROM "{table}" WHERE {test}', (needle,)).fetchone()
            if row and row[0]:
                found.append(f"{table}.{column}")
    return found
