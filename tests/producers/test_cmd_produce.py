"""``hookline produce`` end to end: sample events reach the broker and make a consistent history."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from hookline.cli import build_parser, main
from hookline.settings import Settings
from producers.events import EventType


def _env(monkeypatch: pytest.MonkeyPatch, bootstrap: str, prefix: str) -> None:
    monkeypatch.setenv("HOOKLINE_KAFKA_BOOTSTRAP", bootstrap)
    monkeypatch.setenv("HOOKLINE_TOPIC_PREFIX", prefix)


@pytest.mark.kafka
def test_produce_publishes_a_consistent_sample_history(
    settings: Settings,
    consume: Callable[..., list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _env(monkeypatch, settings.kafka_bootstrap, settings.topic_prefix)
    assert main(["produce", "--count", "200", "--accounts", "3", "--seed", "11", "--rate", "2000"]) == 0
    out = capsys.readouterr().out
    assert "published 200 events" in out and "200 delivered, 0 failed" in out

    consumed = consume(settings, 200)
    assert {EventType(c.record["type"]) for c in consumed} == set(EventType)
    assert len({c.key for c in consumed}) == 3
    assert all(c.key == c.record["accountId"] for c in consumed)

    # Every cancel refers to an earlier, not yet canceled sale of the same account.
    sales = sorted(
        (c for c in consumed if c.topic == settings.topic("sale-events")),
        key=lambda c: (c.partition, c.offset),
    )
    open_orders: dict[str, dict[int, str]] = {}
    cancels = 0
    for c in sales:
        p = c.record["payload"]
        orders = open_orders.setdefault(c.key, {})
        if c.record["type"] == "SALE_NEW":
            orders[p["order"]["id"]] = p["pricePlan"]["type"]
            continue
        cancels += 1
        original = p["cancellation"]["originalOrderId"]
        assert original in orders, f"cancel of unknown order {original} in account {c.key}"
        plan_type = orders.pop(original)
        reason = p["cancellation"]["reason"]
        assert reason == ("subscription_canceled" if plan_type == "subscription" else "refunded")
    assert cancels > 0


@pytest.mark.kafka
def test_named_accounts_and_chosen_kinds(
    settings: Settings,
    consume: Callable[..., list[Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _env(monkeypatch, settings.kafka_bootstrap, settings.topic_prefix)
    argv = [
        "produce",
        "--count",
        "60",
        "--account",
        "shop-a",
        "shop-b",
        "--events",
        "contact_created",
        "SALE_NEW",
    ]
    assert main(argv) == 0
    consumed = consume(settings, 60)
    assert {c.key for c in consumed} == {"shop-a", "shop-b"}
    assert {c.record["type"] for c in consumed} == {"CONTACT_CREATED", "SALE_NEW"}
    assert "CONTACT_CREATED" in capsys.readouterr().out


def test_unreachable_broker_exits_non_zero_quickly(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, f"127.0.0.1:{closed_port}", "t.")
    started = time.monotonic()
    assert main(["produce", "--count", "5", "--timeout", "1"]) == 1
    assert time.monotonic() - started < 8
    assert f"127.0.0.1:{closed_port} did not answer" in capsys.readouterr().err


@pytest.mark.kafka
def test_missing_topics_are_reported(
    kafka_bootstrap: str,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _env(monkeypatch, kafka_bootstrap, topic_prefix)
    assert main(["produce", "--count", "5"]) == 1
    err = capsys.readouterr().err
    assert f"{topic_prefix}contact-events" in err and "hookline topics create" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "NOPE"],
        ["--count", "0"],
        ["--rate", "-1"],
        ["--accounts", "2", "--account", "a"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser("produce").parse_args(["produce", *argv])
    assert info.value.code == 2


def test_every_event_type_is_offered() -> None:
    args = build_parser("produce").parse_args(["produce", "--events", *[t.value.lower() for t in EventType]])
    assert args.events == [t.value for t in EventType]


def test_progress_bar_draws_at_most_ten_times_a_second() -> None:
    import io

    from producers._cmd_produce import _Progress

    stream = io.StringIO()
    bar = _Progress(200, stream, enabled=True)
    bar.update(100, 0, force=True)
    for done in range(101, 150):
        bar.update(done, 0)  # within 0.1 s of the forced draw: skipped
    bar.finish(200, 1)
    lines = stream.getvalue().split("\r")[1:]
    assert len(lines) == 2
    assert lines[0].startswith("[" + "#" * 15 + "-" * 15 + "] 100/200  50%")
    assert "200/200 100%" in lines[1] and "1 failed" in lines[1] and lines[1].endswith("\n")
    quiet = io.StringIO()
    _Progress(10, quiet, enabled=False).finish(10, 0)
    assert quiet.getvalue() == ""
