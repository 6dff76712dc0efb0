"""The streak rules, pure (hookline/health.py): thresholds, resets, replays, the event record."""

from __future__ import annotations

from dataclasses import replace

from hookline.health import (
    HealthPolicy,
    Observation,
    Streak,
    WebhookEvent,
    disabled_reason,
    observe,
    re_enabled,
)
from hookline.webhooks import SealedSecret, Webhook

POLICY = HealthPolicy(disable_after_failures=10, disable_after_ms=5 * 86_400_000)


def fail(offset: int, *, attempt: int = 1, at: int = 1_000, outcome: str = "failed") -> Observation:
    return Observation(offset, outcome, attempt, "automatic", at, "http_5xx")


def ok(offset: int, at: int = 1_000) -> Observation:
    return Observation(offset, "delivered", 1, "automatic", at, None)


def run(observations: list[Observation], state: Streak | None = None) -> tuple[Streak, list[int]]:
    state = state or Streak()
    crossed: list[int] = []
    for obs in observations:
        step = observe(state, obs, POLICY)
        if step.streak is not None:
            state = step.streak
        crossed.extend(step.crossed)
    return state, crossed


def test_thresholds_are_crossed_once_each_at_50_70_90_100_percent() -> None:
    seen: list[tuple[int, int]] = []
    state = Streak()
    for i in range(12):
        step = observe(state, fail(i), POLICY)
        assert step.streak is not None
        state = step.streak
        seen.extend((state.failed_messages, pct) for pct in step.crossed)
    assert seen == [(5, 50), (7, 70), (9, 90), (10, 100)]
    assert state.alerted == 100 and state.failed_attempts == 12


def test_retries_count_attempts_not_messages_and_a_success_resets() -> None:
    state, crossed = run([fail(0), fail(1, attempt=2), fail(2, attempt=3, outcome="dead_lettered")])
    assert (state.failed_messages, state.failed_attempts, crossed) == (1, 3, [])
    step = observe(state, ok(3, at=2_000), POLICY)
    assert step.streak == Streak(last_success_at=2_000, offset=3)


def test_a_replayed_result_changes_nothing() -> None:
    state, _ = run([fail(i) for i in range(6)])
    assert observe(state, fail(5), POLICY).streak is None
    assert observe(state, fail(3), POLICY).streak is None


def test_a_success_without_a_streak_writes_once_a_minute() -> None:
    state, _ = run([ok(0, at=1_000)])
    assert observe(state, ok(1, at=30_000), POLICY).streak is None
    assert observe(state, ok(2, at=62_000), POLICY).streak is not None


def test_skipped_results_and_flapping_never_reach_a_threshold() -> None:
    obs: list[Observation] = []
    for i in range(300):
        obs.append(ok(i) if i % 3 == 2 else fail(i))
    obs.append(Observation(1000, "skipped", 1, "automatic", 1, None))
    state, crossed = run(obs)
    assert crossed == [] and state.alerted == 0


def test_tasks_the_rate_limit_put_back_are_neither_failed_messages_nor_attempts() -> None:
    """Issue 12: a ``deferred`` result of the webhook's own rate limit says nothing about the endpoint;
    one of the circuit breaker still counts as a failed message."""
    limited = [Observation(i, "deferred", 1, "automatic", 1_000, "rate_limited") for i in range(50)]
    state, crossed = run(limited)
    assert (state, crossed) == (Streak(), [])
    state, _ = run([fail(100), *(Observation(101 + i, "deferred", 1, "automatic", 1, "rate_limited")
                                 for i in range(20))])  # fmt: skip
    assert (state.failed_messages, state.failed_attempts) == (1, 1)
    breaker = Observation(200, "deferred", 1, "automatic", 1_000, None)
    assert run([breaker])[0].failed_messages == 1


def test_an_old_streak_with_a_few_failures_disables() -> None:
    day = 86_400_000
    state, crossed = run([fail(0, at=0), fail(1, at=day)])
    assert crossed == []
    state, crossed = run([fail(2, at=6 * day)], state)
    assert crossed == [100]
    assert disabled_reason(state) == "failing since 1970-01-01T00:00:00.000Z: http_5xx"


def test_re_enabling_starts_a_new_streak_and_recovery_is_announced() -> None:
    state, _ = run([fail(i) for i in range(10)])
    step = observe(state, fail(10), POLICY, reenabled=True)
    assert step.streak is not None and step.streak.failed_messages == 1 and step.crossed == ()
    failing, _ = run([fail(i) for i in range(6)])
    assert observe(failing, ok(7), POLICY).recovered
    assert observe(state, ok(11), POLICY, reenabled=True).recovered


def test_a_skip_read_after_re_enabling_keeps_the_old_streak_so_recovery_is_still_announced() -> None:
    """The CI failure of 2026-12-05: the worker's skips of the disabled days were read a moment after the
    config view saw the owner re-enable; the skip reset the streak and the first success announced nothing."""
    state, _ = run([fail(i) for i in range(10)])
    skip = Observation(10, "skipped", 2, "automatic", 1_000, None)
    assert observe(state, skip, POLICY, reenabled=True).streak is None
    step = observe(state, ok(11), POLICY, reenabled=True)
    assert step.recovered and step.streak is not None and step.streak.alerted == 0


def _hook(*, active: bool, version: int, updated_at: int) -> Webhook:
    secret = SealedSecret("k1", b"\x01" * 12, b"sealed")
    return Webhook("wh", "a", "n", "https://r.example/", secret, (), active, 0, updated_at, version)


def test_only_an_attempt_after_the_owner_switched_it_back_on_counts_as_re_enabled() -> None:
    state = replace(run([fail(i) for i in range(10)])[0], disabled_version=4)
    on = _hook(active=True, version=5, updated_at=50_000)
    assert re_enabled(state, on, 50_000) and re_enabled(state, on, 60_000)
    assert not re_enabled(state, on, 49_999)  # attempted while it was off, read late
    assert not re_enabled(state, replace(on, active=False), 60_000)
    assert not re_enabled(state, replace(on, version=4), 60_000)  # still the version it disabled
    assert not re_enabled(state, None, 60_000)
    assert not re_enabled(replace(state, alerted=90), on, 60_000)


def test_streak_and_event_round_trip() -> None:
    state, _ = run([fail(i) for i in range(7)])
    assert Streak.from_bytes(state.to_bytes()) == state
    assert Streak.from_bytes(None) == Streak()
    event = WebhookEvent.of("webhook.failing", state, webhook_id="wh", account_id="a", now_ms=5, threshold=70)
    assert WebhookEvent.decode(event.encode()) == event
    again = WebhookEvent.of("webhook.failing", state, webhook_id="wh", account_id="a", now_ms=9, threshold=70)
    assert again.event_id == event.event_id
