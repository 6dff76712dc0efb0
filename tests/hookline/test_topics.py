"""Topic retention settings (issue 13): each delete-policy topic keeps records for its own setting."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from hookline.clients import describe_topic_config
from hookline.settings import Settings, SettingsError, load_settings
from hookline.topics import (
    CONFIG,
    CONTACT_EVENTS,
    DELIVERIES,
    DLQ,
    HEALTH_EVENTS,
    LANES,
    RESULTS,
    SALE_EVENTS,
    all_topics,
    retry_topic,
)
from tests.conftest import REPO, drop_prefixed_topics
from tests.support import scaled

DAY_MS = 86_400_000
SETTING_OF = {
    CONTACT_EVENTS: "HOOKLINE_RETENTION_CONTACT_EVENTS_DAYS",
    SALE_EVENTS: "HOOKLINE_RETENTION_SALE_EVENTS_DAYS",
    DELIVERIES: "HOOKLINE_RETENTION_DELIVERIES_DAYS",
    RESULTS: "HOOKLINE_RETENTION_RESULTS_DAYS",
    DLQ: "HOOKLINE_RETENTION_DLQ_DAYS",
    HEALTH_EVENTS: "HOOKLINE_RETENTION_WEBHOOK_EVENTS_DAYS",
}


def retention_ms(settings: Settings) -> dict[str, int]:
    return {t.name: int(t.config["retention.ms"]) for t in all_topics(settings) if "retention.ms" in t.config}


def test_defaults_keep_events_tasks_and_results_a_week_and_dead_letters_a_month() -> None:
    kept = retention_ms(load_settings({}))
    assert {t: kept[t] // DAY_MS for t in SETTING_OF} == {
        CONTACT_EVENTS: 7, SALE_EVENTS: 7, DELIVERIES: 7, RESULTS: 7, DLQ: 30, HEALTH_EVENTS: 30,
    }  # fmt: skip
    assert kept[CONFIG] == kept[LANES] == -1  # compacted: the latest record per key stays
    assert kept[retry_topic(86400)] == 7 * DAY_MS  # as long as webhook-deliveries


def test_every_delete_policy_topic_follows_its_own_setting() -> None:
    env = {var: str(i + 1.5) for i, var in enumerate(SETTING_OF.values())}
    kept = retention_ms(load_settings(env))
    for i, (topic, _var) in enumerate(SETTING_OF.items()):
        assert kept[topic] == round((i + 1.5) * DAY_MS), topic
    # Retry tiers hold tasks too: at least as long as webhook-deliveries, or their delay and a day.
    tiers = retention_ms(load_settings({"HOOKLINE_RETENTION_DELIVERIES_DAYS": "3"}))
    assert tiers[retry_topic(5)] == 3 * DAY_MS and tiers[retry_topic(86400)] == 3 * DAY_MS
    short = retention_ms(load_settings({"HOOKLINE_RETENTION_DELIVERIES_DAYS": "0.5"}))
    assert short[retry_topic(5)] == DAY_MS + 5000 and short[retry_topic(86400)] == 2 * DAY_MS
    assert retention_ms(load_settings({"HOOKLINE_RETENTION_RESULTS_DAYS": "0.25"}))[RESULTS] == DAY_MS // 4


@pytest.mark.parametrize("value", ["0", "-1", "36501"])
def test_a_retention_without_a_limit_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(
        SettingsError, match="HOOKLINE_RETENTION_RESULTS_DAYS: must be a number of days above 0"
    ):
        load_settings({"HOOKLINE_RETENTION_RESULTS_DAYS": value})
    with pytest.raises(SettingsError, match="HOOKLINE_RETENTION_DLQ_DAYS: cannot read 'a week'"):
        load_settings({"HOOKLINE_RETENTION_DLQ_DAYS": "a week"})


def test_body_retention_is_a_number_of_days() -> None:
    assert load_settings({}).log_body_retention_days == 0
    assert load_settings({"HOOKLINE_LOG_BODY_RETENTION_DAYS": "7"}).log_body_retention_days == 7
    with pytest.raises(SettingsError, match="HOOKLINE_LOG_BODY_RETENTION_DAYS: must be >= 0"):
        load_settings({"HOOKLINE_LOG_BODY_RETENTION_DAYS": "-1"})


def topics(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli", "topics", action],
        env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=scaled(120),
    )  # fmt: skip


def test_topics_retention_changes_existing_topics_to_the_settings(kafka_bootstrap: str) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}."
    base = {"HOOKLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, "HOOKLINE_TOPIC_PREFIX": prefix,
            "HOOKLINE_TOPIC_PARTITIONS": "1"}  # fmt: skip
    settings = load_settings({}, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    try:
        assert topics("create", base).returncode == 0
        shorter = {**base, "HOOKLINE_RETENTION_RESULTS_DAYS": "1", "HOOKLINE_RETENTION_DLQ_DAYS": "2"}
        assert "retention.ms" in describe_topic_config(settings, settings.topic(CONFIG))  # compacted, -1
        done = topics("retention", shorter)
        assert done.returncode == 0, done.stderr
        assert f"changed  {settings.topic(RESULTS)} retention.ms={7 * DAY_MS} -> {DAY_MS}" in done.stdout
        assert "2 changed, 0 failed" in done.stdout, done.stdout
        assert settings.topic(CONFIG) not in done.stdout  # compacted topics are left alone

        def kept(topic: str) -> int:
            return int(describe_topic_config(settings, settings.topic(topic), scaled(30))["retention.ms"])

        assert (kept(RESULTS), kept(DLQ), kept(SALE_EVENTS)) == (DAY_MS, 2 * DAY_MS, 7 * DAY_MS)
        assert kept(CONFIG) == -1
        again = topics("retention", shorter)
        assert again.returncode == 0 and "0 changed, 0 failed" in again.stdout
    finally:
        drop_prefixed_topics(settings)


def test_topics_create_applies_the_retention_settings(kafka_bootstrap: str) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}."
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HOOKLINE_TOPIC_PREFIX": prefix,
        "HOOKLINE_TOPIC_PARTITIONS": "1",
        "HOOKLINE_RETENTION_CONTACT_EVENTS_DAYS": "2",
        "HOOKLINE_RETENTION_RESULTS_DAYS": "0.5",
        "HOOKLINE_RETENTION_DLQ_DAYS": "90",
    }
    settings = load_settings({}, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hookline.cli", "topics", "create"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=scaled(120),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        names = {t: settings.topic(t) for t in (CONTACT_EVENTS, SALE_EVENTS, RESULTS, DLQ)}
        got = {n: int(describe_topic_config(settings, n, scaled(30))["retention.ms"]) for n in names.values()}
        assert got == {
            names[CONTACT_EVENTS]: 2 * DAY_MS,
            names[SALE_EVENTS]: 7 * DAY_MS,  # its own setting, left at the default
            names[RESULTS]: DAY_MS // 2,
            names[DLQ]: 90 * DAY_MS,
        }
    finally:
        drop_prefixed_topics(settings)
