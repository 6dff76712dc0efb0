"""The PostgreSQL log store stopped for 30 s under load, then started again (issue 16, point 2).

The session's broker; the router, the delivery worker and the log sink as processes, the log sink
writing to a PostgreSQL server of this test's own (Debian's ``initdb``/``pg_ctl``, as
``tests/postgres.py`` runs the session's); a receiver on 127.0.0.1 (500 to the first request of
``FAIL_SHARE`` of the messages, so retries write results too) and the paced publisher of the fault
suite. After 10 s of steady state the server is stopped with ``pg_ctl stop -m fast`` (clients are
disconnected) and started again on the same port ``OUTAGE`` seconds later.

Checked: the log sink process keeps running (same pid, ``/healthz`` 200 throughout, ``/readyz`` not
ready during the outage); deliveries go on (lost 0, duplicates counted); once the server is back, every
result record on ``webhook-results`` has its row in the store (none lost), and the seconds the log sink
took to catch up are reported, with the results it had to hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hookline.local.ports import free_port_block
from hookline.settings import Settings
from tests.faults.load import (
    HOOKS_PER_ACCOUNT,
    RATE,
    Load,
    caught_up,
    expected_messages,
    ledger,
    recovery_seconds,
    report,
)
from tests.faults.pipeline import Pipeline, running_pipeline
from tests.postgres import PostgresServer, _bin_dir, _unavailable
from tests.support import scaled, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

OUTAGE = 30.0
FAIL_SHARE = 0.05


class RestartablePostgres(PostgresServer):
    """A throwaway server (``tests.postgres``) on a port below the ephemeral range (nothing takes it as
    a source port while the server is down), stopped and started again on it."""

    def __init__(self, bin_dir: Path) -> None:
        super().__init__(bin_dir)
        self.port = free_port_block(1)

    def halt(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        # restart on a stopped server starts it with the options of its last start (postmaster.opts)
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "restart")  # fmt: skip


def stored_attempts(url: str) -> set[tuple[str, str]]:
    """(message id, attempt id) of every attempt row in the store; empty while it is unreachable or
    not migrated yet."""
    try:
        with psycopg.connect(url, connect_timeout=5) as db:
            rows = db.execute("SELECT message_id, attempt_id FROM hookline_attempts").fetchall()
    except psycopg.Error:
        return set()
    return {(r[0], r[1]) for r in rows}


@pytest.fixture
def postgres() -> Iterator[RestartablePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("no /usr/lib/postgresql/*/bin/initdb")
        raise AssertionError("unreachable")
    server = RestartablePostgres(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(settings: Settings, tmp_path: Path, postgres: RestartablePostgres) -> Iterator[Pipeline]:
    with running_pipeline(
        settings,
        tmp_path,
        ("router", "deliver", "logsink"),
        fail_share=FAIL_SHARE,
        HOOKLINE_DATABASE_URL=postgres.url,
    ) as pipeline:
        yield pipeline


def test_a_log_store_down_for_30_s_loses_no_result_and_the_log_sink_catches_up(
    world: Pipeline, postgres: RestartablePostgres, tmp_path: Path
) -> None:
    w = world
    per_second = RATE * HOOKS_PER_ACCOUNT
    sink_pid = w.roles.pid("logsink")
    began = time.monotonic()
    load = Load(w.settings, sorted(w.hooks), RATE).start()
    figures: dict[str, Any] = {"rate_events_per_s": RATE, "deliveries_per_s": per_second, "outage_s": OUTAGE}
    probes: list[tuple[float, int, int]] = []  # (time, /healthz, /readyz) of the log sink

    def probe() -> None:
        probes.append((time.time(), w.roles.get("logsink", "/healthz"), w.roles.get("logsink", "/readyz")))

    try:
        time.sleep(10)
        wait_until(lambda: caught_up(load, w.hooks, w.answers.first(), 10.0), 120, "the steady state", 1.0)
        wait_until(lambda: stored_attempts(postgres.url), 60, "results in the store", 1.0)
        down_at = time.time()
        postgres.halt()
        while time.time() < down_at + OUTAGE:
            probe()
            time.sleep(1.0)
        held = w.results.attempts()
        up_at = time.time()
        postgres.resume()
        figures["server_back_s"] = round(time.time() - up_at, 1)
        missing_at_restart = len(held - stored_attempts(postgres.url))

        def caught_up_store() -> bool:
            probe()
            return held <= stored_attempts(postgres.url)

        wait_until(caught_up_store, 120, "the log sink to store what it held", interval=0.5)
        figures["catch_up_s"] = round(time.time() - up_at, 1)
        figures["results_held_at_restart"] = missing_at_restart
        time.sleep(5)
    finally:
        unacked = load.stop(flush_timeout=120)
    figures["load_seconds"] = round(time.monotonic() - began, 1)

    # -- the ledger -------------------------------------------------------------------------------
    failed = {e.error for e in load.events if e.error is not None}
    assert unacked == 0 and not failed, f"publisher: {unacked} unacknowledged, errors {failed}"
    expected = expected_messages(load.events, w.hooks)
    try:
        wait_until(lambda: set(expected) <= set(w.answers.first()), 120, "every message delivered", 1.0)
        wait_until(
            lambda: w.results.attempts() <= stored_attempts(postgres.url), 120, "every result stored", 1.0
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nroles {w.roles.alive()}\n{w.roles.logs()}") from None
    attempts = w.results.attempts()
    during = [p for p in probes if down_at <= p[0] < up_at]
    figures.update(ledger(expected, w.answers.delivered()))
    figures.update(
        {
            "events_published": len(load.events),
            "throughput_back_s": recovery_seconds(w.answers.first().values(), down_at, per_second),
            "results": len(attempts),
            "results_not_stored": len(attempts - stored_attempts(postgres.url)),
            "logsink_same_process": w.roles.pid("logsink") == sink_pid and w.roles.alive()["logsink"],
            "logsink_healthz_during_outage": sorted({p[1] for p in during}),
            "logsink_readyz_during_outage": sorted({p[2] for p in during}),
            "logsink_store_errors_logged": w.roles.roles["logsink"][0]
            .log_path.read_text()
            .count("will retry"),
        }
    )
    report("logstore_outage", figures, load, tmp_path, probes=probes)

    assert figures["lost"] == 0
    assert figures["results_not_stored"] == 0
    assert figures["logsink_same_process"], w.roles.logs()
    assert figures["logsink_healthz_during_outage"] == [200]
    assert 503 in figures["logsink_readyz_during_outage"], figures
    assert figures["results_held_at_restart"] > 0  # the outage did hold results back
    # The store's pool once waited 1, 2, 4, 8, 16 ... s between reconnects: 27 s to catch up after this
    # outage (hookline/logstore/postgres.py); now a few seconds.
    assert figures["catch_up_s"] <= scaled(20), figures
    assert w.roles.get("logsink", "/readyz") == 200
