"""A throwaway PostgreSQL server for the test session, and a fresh database per test.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it): ``initdb`` and ``pg_ctl``
from ``/usr/lib/postgresql/<version>/bin`` run a cluster in a temporary directory on a free port,
with fsync off. As root they run as the ``postgres`` user (initdb refuses root).
``HOOKLINE_TEST_POSTGRES_URL`` names an existing server instead (a database is created per test in it).

Without PostgreSQL the tests that need it fail (never skip): a check that did not run is not done.
Only a developer may opt out, with ``HOOKLINE_TEST_POSTGRES=skip``, and never in CI
(``tests.support.in_ci``: ``CI`` is true, 1 or yes).

Use it from a ``conftest.py``: ``from tests.postgres import postgres_server, postgres_url  # noqa: F401``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookline.local.ports import free_port
from tests.support import in_ci

__all__ = ["PostgresServer", "postgres_server", "postgres_url"]


def _bin_dir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    return Path(found[-1]).parent if found else None


def _unavailable(reason: str) -> None:
    if os.environ.get("HOOKLINE_TEST_POSTGRES") == "skip" and not in_ci():
        pytest.skip(f"PostgreSQL: {reason} (HOOKLINE_TEST_POSTGRES=skip)")
    pytest.fail(f"PostgreSQL is needed for these tests: {reason}. Install Debian's `postgresql` package "
                "(.ci/run does) or set HOOKLINE_TEST_POSTGRES_URL.", pytrace=False)


class PostgresServer:
    """One cluster in a temporary directory, stopped and removed by :meth:`stop`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="hookline-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "hookline"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, cwd=self.root, timeout=120)
        if proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{tail}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "postgres.log"), "-w", "-t", "60", "start")
        return self

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    base, _, _db = url.rpartition("/")
    query = ""
    if "?" in _db:
        query = "?" + _db.split("?", 1)[1]
    return f"{base}/{name}{query}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server for the session (its ``postgres`` database is the admin one)."""
    existing = os.environ.get("HOOKLINE_TEST_POSTGRES_URL")
    if existing:
        yield existing
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb")
        raise AssertionError("unreachable")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        _unavailable(f"the test server did not start: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty database for one test (dropped afterwards)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_server, name)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
