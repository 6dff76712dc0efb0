"""The kill matrix (issue 16, point 2): each role SIGKILLed three times under steady load.

The session's broker, the router, the delivery worker, the log sink (SQLite) and the health processor
as processes, a receiver on 127.0.0.1 and a paced publisher: ``RATE`` events/s round-robin over
``ACCOUNTS`` accounts with ``HOOKS_PER_ACCOUNT`` webhooks each (100 deliveries/s across 20 webhooks by
default: what stays steady on a shared 2-core machine next to the broker and four roles). Retries are
exercised: the receiver answers 500 to the first request of ``FAIL_SHARE`` of the messages (retry
schedule 0.5, 1, 1.5 s), and one more webhook, ``wh-dead``, always answers 500 (its messages run the
whole schedule, open its breaker and end in the DLQ; the health processor counts its streak, with
disabling switched off).

One test per role (all four run in each): after 10 s of steady state, three times, after a random
2-8 s (``random.Random(seed)``; the seed is printed, ``HOOKLINE_FAULTS_SEED`` replays it), the role is
SIGKILLed and started again at once; the phase ends when the pipeline keeps up again. The ledger of the
phase (the messages of the events published during it): lost = 0 (every acknowledged event times each
subscribed webhook answered 200 at least once), duplicates (200s after the first) at most 1 % of the
messages; per kill, the seconds
until three whole seconds in a row each delivered 90 % of the offered deliveries/s
(``throughput_back_s``) and until every message kept within twice the steady p99 again
(``settled_s``). At the end: every result record of every attempt on ``webhook-results`` has its row in
the log store, every delivered message is logged as delivered, and the health processor's streak of
``wh-dead`` is exactly the results applied once each (``hookline.health.observe`` folded over them).
Figures are printed (``-s``) and written to ``test-artifacts/faults/role_kills_<role>.json``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline.health import HealthPolicy, Observation, Streak, observe
from hookline.settings import Settings
from tests.faults.load import (
    ACCOUNTS,
    HOOKS_PER_ACCOUNT,
    RATE,
    Load,
    caught_up,
    expected_messages,
    ledger,
    recovery_seconds,
    report,
    settled_seconds,
    steady_p99,
)
from tests.faults.pipeline import Pipeline, Results, logged_messages, running_pipeline, sqlite_attempts
from tests.processors.deliver.deliver_harness import metric
from tests.processors.deliver.receivers import Reply
from tests.support import TopicReader, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

FAIL_SHARE = 0.05
KILLS = 3
ROLES = ("router", "deliver", "logsink", "health")
DEAD = "wh-dead"
DEAD_ACCOUNT = "acct-0"


def seed() -> int:
    raw = os.environ.get("HOOKLINE_FAULTS_SEED", "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1 << 31)


def dead_streak(settings: Settings, results: Results) -> tuple[Streak, Streak | None]:
    """``wh-dead``'s streak as its results make it (each applied once, in offset order), and as the
    health processor's table holds it (the last record of its changelog)."""
    policy = HealthPolicy(disable_after_failures=0, disable_after_ms=5 * 24 * 3600 * 1000)
    want = Streak()
    mine = sorted((m.offset(), r) for m, r in results.poll() if r.webhook_id == DEAD)
    for offset, r in mine:
        obs = Observation(offset, r.outcome, r.attempt, r.trigger, r.attempted_at, r.error_class)
        step = observe(want, obs, policy)
        if step.streak is not None:
            want = step.streak
    reader = TopicReader(settings, "hookline-health-webhook-health-changelog")
    try:
        reader.poll(1.0)
        held = [m for m in reader.records if m.key() == DEAD.encode()]
        return want, Streak.from_bytes(held[-1].value()) if held else None
    finally:
        reader.close()


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(
        settings,
        tmp_path,
        ROLES,
        fail_share=FAIL_SHARE,
        extra=[(DEAD_ACCOUNT, DEAD, "/dead")],
        HOOKLINE_DATABASE_URL=f"sqlite:///{tmp_path / 'logs.sqlite3'}",
        HOOKLINE_DISABLE_AFTER_FAILURES="0",  # wh-dead keeps failing: its streak must only grow
    ) as pipeline:
        pipeline.receiver.set("/dead", lambda n, got: Reply(500))
        yield pipeline


class DuplicatesAboveBar(AssertionError):
    """More duplicates than issue 16's bar for a kill scenario (1 % of the deliveries)."""


@pytest.mark.parametrize(
    "role",
    [
        # After a SIGKILL the router routes again the events of its last Faust commit interval (0.5 s) plus
        # those in hand; the worker drops those second routings (docs/architecture.md §6). Before it did,
        # three kills made 0.45 %, 2.6 % and 2.9 % duplicate deliveries in three runs.
        "router",
        # After a SIGKILL the worker sends again the tasks since its last offset commit (every 100 ms) plus
        # those in flight. With commits every 250 ms three kills made 0.83 %, 0.93 % and 1.29 %.
        "deliver",
        "logsink",
        "health",
    ],
)
def test_a_role_sigkilled_three_times_under_load_loses_nothing(
    role: str, world: Pipeline, tmp_path: Path
) -> None:
    w = world
    db = tmp_path / "logs.sqlite3"
    rng_seed = seed()
    rng = random.Random(rng_seed)
    print(
        f"\nkill matrix, {role}: seed {rng_seed} (HOOKLINE_FAULTS_SEED={rng_seed} replays the kill moments)"
    )
    per_second = RATE * HOOKS_PER_ACCOUNT
    figures: dict[str, Any] = {
        "role": role,
        "seed": rng_seed,
        "rate_events_per_s": RATE,
        "webhooks": ACCOUNTS * HOOKS_PER_ACCOUNT + 1,
        "deliveries_per_s": per_second,
        "first_attempt_500_share": FAIL_SHARE,
    }
    began = time.monotonic()
    load = Load(w.settings, sorted(w.hooks), RATE).start()

    def keeps_up(threshold: float) -> bool:
        return caught_up(load, w.hooks, w.answers.first(), threshold)

    phases: dict[str, dict[str, Any]] = {}
    try:
        time.sleep(10)
        wait_until(lambda: keeps_up(10.0), 120, "the steady state", interval=1.0)
        threshold = max(2.0, 2 * steady_p99(load, w.hooks, w.answers.first(), 8))
        figures["settled_threshold_s"] = round(threshold, 2)
        for name in (role,):
            phase: dict[str, Any] = {"began": time.time(), "kills": []}
            phases[name] = phase
            for _ in range(KILLS):
                time.sleep(rng.uniform(2.0, 8.0))
                at = time.time()
                w.roles.kill(name)
                w.roles.start(name)
                phase["kills"].append({"at": at, "ready_after_s": round(time.time() - at, 1)})
            wait_until(
                lambda: keeps_up(threshold),
                180,
                f"the pipeline to keep up after the {name} kills",
                interval=1.0,
            )
            phase["ended"] = time.time()
    finally:
        unacked = load.stop(flush_timeout=120)
    load_seconds = time.monotonic() - began

    # -- the ledger -------------------------------------------------------------------------------
    failed = {e.error for e in load.events if e.error is not None}
    assert unacked == 0 and not failed, f"publisher: {unacked} unacknowledged, errors {failed}"
    expected = expected_messages(load.events, w.hooks)
    dead_expected = expected_messages(load.events, {a: [DEAD] if a == DEAD_ACCOUNT else [] for a in w.hooks})

    def dead_final() -> bool:
        finals = {r.message_id for _m, r in w.results.poll() if r.webhook_id == DEAD and r.final}
        return set(dead_expected) <= finals

    try:
        wait_until(lambda: set(expected) <= set(w.answers.first()), 120, "every message delivered", 1.0)
        wait_until(dead_final, 120, f"every message of {DEAD} dead-lettered", 1.0)
        wait_until(lambda: w.results.attempts() <= sqlite_attempts(db), 120, "every result logged", 1.0)
        wait_until(lambda: set(expected) <= logged_messages(db), 60, "every message logged delivered", 1.0)
        wait_until(lambda: (s := dead_streak(w.settings, w.results))[0] == s[1], 120, "the health table", 1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nroles {w.roles.alive()}\n{w.roles.logs()}") from None
    alive = w.roles.alive()
    delivered = w.answers.delivered()
    first = w.answers.first()
    kill_times_of = {name: [k["at"] for k in phase["kills"]] for name, phase in phases.items()}
    for phase in phases.values():
        mine = [m for m, e in expected.items() if phase["began"] <= e.sent_at < phase["ended"]]
        phase.update(ledger(mine, delivered))
        kill_times = [k["at"] for k in phase["kills"]] + [phase["ended"]]
        for k, until in zip(phase["kills"], kill_times[1:], strict=True):
            k["throughput_back_s"] = recovery_seconds(first.values(), k["at"], per_second)
            k["settled_s"] = round(settled_seconds(expected, first, k["at"], until, threshold), 1)
            k["at"] = round(k["at"] - phase["began"], 1)
        phase["seconds"] = round(phase.pop("ended") - phase.pop("began"), 1)
    want_streak, held_streak = dead_streak(w.settings, w.results)
    attempts = w.results.attempts()
    figures.update(
        {
            "phases": phases,
            "load_seconds": round(load_seconds, 1),
            "events_published": len(load.events),
            "total": ledger(expected, delivered),
            "results": len(attempts),
            "results_not_logged": len(attempts - sqlite_attempts(db)),
            "messages_not_logged_delivered": len(set(expected) - logged_messages(db)),
            "dead_webhook": {
                "messages": len(dead_expected),
                "streak_from_results": [want_streak.failed_messages, want_streak.failed_attempts],
                "streak_in_health_table": [held_streak.failed_messages, held_streak.failed_attempts]
                if held_streak
                else None,
            },
            "roles_alive": alive,
        }
    )
    report(
        f"role_kills_{role}", figures, load, tmp_path, duplicated=w.answers.duplicated(), kills=kill_times_of
    )

    assert all(alive.values()), f"a role died: {alive}"
    assert figures["results_not_logged"] == 0 and figures["messages_not_logged_delivered"] == 0
    assert want_streak == held_streak
    phase = phases[role]
    assert phase["lost"] == 0, phase
    if role == "router":  # the kills did make second routings, and the worker dropped them
        dropped = metric(w.roles.metrics("deliver"), "hookline_delivery_duplicate_tasks_total")
        print(f"second routings dropped by the worker: {dropped:.0f}")
        assert dropped > 0
    if phase["duplicate_share"] > 0.01:  # issue 16's bar for kill scenarios
        raise DuplicatesAboveBar(f"{phase['duplicates']} duplicates of {phase['messages']} messages: {phase}")
