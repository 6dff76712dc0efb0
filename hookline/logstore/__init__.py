"""The delivery log store: what the log sink writes and the logs API and web page read.

``open_store(settings)`` picks the implementation from ``HOOKLINE_DATABASE_URL``:
``sqlite:///relative/path``, ``sqlite:////absolute/path``, or ``postgresql://user:pass@host:port/db``;
unset means the SQLite file ``<HOOKLINE_HOME>/logs.sqlite3``. See :mod:`hookline.logstore.base` for
the listing order and the cursor semantics.
"""

from __future__ import annotations

from pathlib import Path

from hookline.logstore.base import (
    MAX_CONTACT_ID,
    MAX_PAGE,
    STATUSES,
    AttemptRecord,
    Erasure,
    FailedMessage,
    LastDelivery,
    LogStore,
    LogStoreError,
    MessageDetail,
    MessagePage,
    MessageSummary,
    Purged,
    StoreRejected,
    StoreUnavailable,
    UnknownCursor,
    contact_id_problem,
    message_status,
)
from hookline.settings import Settings, SettingsError

__all__ = [
    "MAX_CONTACT_ID",
    "MAX_PAGE",
    "STATUSES",
    "AttemptRecord",
    "Erasure",
    "FailedMessage",
    "LastDelivery",
    "LogStore",
    "LogStoreError",
    "MessageDetail",
    "MessagePage",
    "MessageSummary",
    "Purged",
    "StoreRejected",
    "StoreUnavailable",
    "UnknownCursor",
    "contact_id_problem",
    "describe_url",
    "message_status",
    "open_store",
]

_SQLITE = "sqlite://"
_POSTGRES = ("postgresql://", "postgres://")


def _sqlite_path(url: str) -> Path:
    rest = url[len(_SQLITE) :]
    if not rest.startswith("/") or rest == "/":
        raise SettingsError(
            "HOOKLINE_DATABASE_URL: write sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = rest[1:]  # sqlite:///x -> x (relative), sqlite:////x -> /x (absolute), as SQLAlchemy reads them
    if path == ":memory:":
        raise SettingsError("HOOKLINE_DATABASE_URL: an in-memory SQLite store is not shared; name a file")
    return Path(path)


def _url(settings: Settings) -> str:
    return settings.database_url.get().strip() or f"{_SQLITE}/{settings.home / 'logs.sqlite3'}"


def describe_url(settings: Settings) -> str:
    """Where the store is, safe to log: a SQLite path, or a PostgreSQL URL without credentials."""
    url = _url(settings)
    if url.startswith(_SQLITE):
        return f"sqlite file {_sqlite_path(url)}"
    scheme, _, rest = url.partition("://")
    host = rest.rpartition("@")[2].split("?", 1)[0]
    return f"{scheme}://{host}"


def open_store(settings: Settings) -> LogStore:
    """Open (and migrate) the store the settings name; raise StoreUnavailable when it cannot be reached."""
    url = _url(settings)
    if url.startswith(_SQLITE):
        from hookline.logstore.sqlite import SqliteStore

        return SqliteStore(_sqlite_path(url))
    if url.startswith(_POSTGRES):
        from hookline.logstore.postgres import PostgresStore  # psycopg is imported only when used

        return PostgresStore(url)
    raise SettingsError("HOOKLINE_DATABASE_URL: must start with sqlite:/// or postgresql://")
