"""The whole single-broker pipeline stopped and started again mid-load (issue 16, point 2).

``hookline kafka start`` (the real CLI) runs the single local broker in a temporary ``HOOKLINE_HOME``
on free ports and ``hookline topics create`` makes the topics; the router, the delivery worker, the
log sink (SQLite) and the health processor run as processes; a receiver on 127.0.0.1 answers 500 to
the first request of ``FAIL_SHARE`` of the messages, and the fault suite's paced publisher keeps
publishing throughout (its records wait in the producer while the broker is down). After 10 s of
steady state every role gets SIGTERM and ``hookline kafka stop`` stops the broker; ``DOWN`` seconds
after the stop began, ``hookline kafka start`` and the roles start again.

The ledger: lost = 0 (every acknowledged event times each subscribed webhook answered 200), the
duplicates, every result record with its row in the log store; and the seconds from the stop until
the events published while it was down were all delivered (``outage_backlog_delivered_s``), until
three whole seconds in a row each delivered 90 % of the offered deliveries/s (``throughput_back_s``)
and until every message kept within twice the steady p99 again (``settled_s``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline.local.kafka import LocalKafka
from hookline.settings import Settings
from tests.faults.cluster import cluster_env, single_broker_settings
from tests.faults.load import (
    HOOKS_PER_ACCOUNT,
    RATE,
    Load,
    caught_up,
    drained_seconds,
    expected_messages,
    ledger,
    recovery_seconds,
    report,
    settled_seconds,
    steady_p99,
)
from tests.faults.pipeline import Pipeline, logged_messages, running_pipeline, sqlite_attempts
from tests.support import REPO, role_env, scaled, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

DOWN = 10.0
FAIL_SHARE = 0.05
ROLES = ("router", "deliver", "logsink", "health")


def hookline(env: dict[str, str], *args: str) -> float:
    """Run ``hookline <args>`` as a user would; fail with its output unless it exits 0; its seconds."""
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hookline.cli", *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )
    assert proc.returncode == 0, (
        f"hookline {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return time.monotonic() - began


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """The single local broker started with ``hookline kafka start``, the topics with ``hookline topics
    create``; its settings and the environment of those commands."""
    settings = single_broker_settings(
        tmp_path / "home", topic_prefix="faults.", retry_schedule=(0.5, 1.0, 1.5), topic_partitions=3
    )
    env = {**role_env(settings), **cluster_env(settings)}
    try:
        hookline(env, "kafka", "start")
        hookline(env, "topics", "create")
        yield settings, env
    finally:
        LocalKafka(settings).stop()


@pytest.fixture
def world(broker: tuple[Settings, dict[str, str]], tmp_path: Path) -> Iterator[Pipeline]:
    settings, _env = broker
    with running_pipeline(
        settings,
        tmp_path,
        ROLES,
        fail_share=FAIL_SHARE,
        HOOKLINE_DATABASE_URL=f"sqlite:///{tmp_path / 'logs.sqlite3'}",
    ) as pipeline:
        yield pipeline


def test_the_whole_pipeline_stopped_and_started_again_mid_load_loses_nothing(
    world: Pipeline, broker: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    w = world
    _settings, env = broker
    db = tmp_path / "logs.sqlite3"
    per_second = RATE * HOOKS_PER_ACCOUNT
    figures: dict[str, Any] = {"rate_events_per_s": RATE, "deliveries_per_s": per_second, "down_s": DOWN}
    began = time.monotonic()
    load = Load(w.settings, sorted(w.hooks), RATE).start()

    def keeps_up(threshold: float) -> bool:
        return caught_up(load, w.hooks, w.answers.first(), threshold)

    try:
        time.sleep(10)
        wait_until(lambda: keeps_up(10.0), 120, "the steady state", interval=1.0)
        threshold = max(2.0, 2 * steady_p99(load, w.hooks, w.answers.first(), 8))
        stop_at = time.time()
        figures["roles_exit_codes_on_sigterm"] = w.roles.stop()
        figures["roles_stopped_in_s"] = round(time.time() - stop_at, 1)
        figures["kafka_stop_s"] = round(hookline(env, "kafka", "stop"), 1)
        time.sleep(max(0.0, stop_at + DOWN - time.time()))
        start_at = time.time()
        figures["kafka_start_s"] = round(hookline(env, "kafka", "start"), 1)
        w.roles.start()
        ready_at = time.time()
        figures["roles_ready_after_start_s"] = round(ready_at - start_at, 1)
        wait_until(lambda: keeps_up(threshold), 180, "keeping up after the restart", interval=1.0)
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
        wait_until(lambda: w.results.attempts() <= sqlite_attempts(db), 120, "every result logged", 1.0)
        wait_until(lambda: set(expected) <= logged_messages(db), 60, "every message logged delivered", 1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nroles {w.roles.alive()}\n{w.roles.logs()}") from None
    first = w.answers.first()
    attempts = w.results.attempts()
    figures.update(ledger(expected, w.answers.delivered()))
    figures.update(
        {
            "events_published": len(load.events),
            "published_while_down": sum(1 for e in load.events if stop_at <= e.sent_at < ready_at),
            "settled_threshold_s": round(threshold, 2),
            "outage_backlog_delivered_s": round(drained_seconds(expected, first, stop_at, ready_at) or 0, 1),
            "throughput_back_s": recovery_seconds(first.values(), stop_at, per_second),
            "settled_s": round(settled_seconds(expected, first, stop_at, time.time(), threshold), 1),
            "results": len(attempts),
            "results_not_logged": len(attempts - sqlite_attempts(db)),
            "roles_alive": w.roles.alive(),
        }
    )
    report("pipeline_restart", figures, load, tmp_path)

    assert figures["lost"] == 0 and figures["results_not_logged"] == 0
    assert set(figures["roles_exit_codes_on_sigterm"].values()) == {0}, figures  # each stopped cleanly
    assert all(figures["roles_alive"].values()), w.roles.logs()
