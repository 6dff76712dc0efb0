"""The typed delivery records: one builder each, lossless round trips through the Avro codec."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from hookline.records import (
    REQUEST_BODY_BYTES,
    DeadLetter,
    DeadLetters,
    DeliveryResult,
    DeliveryTask,
    Exchange,
    Source,
)
from schemas.codec import CodecError, decode
from tests.logrecords import delivery_result, delivery_task


def test_a_task_round_trips_and_keys_by_webhook() -> None:
    task = delivery_task(attempt=3, due_at=5, trigger="manual", first_attempt_at=2)
    assert DeliveryTask.decode(task.encode()) == task
    assert DeliveryTask.from_record(task.to_record()) == task
    assert decode(task.encode(), "DeliveryTask")["firstAttemptAt"] == 2  # camelCase on the wire
    assert task.key == b"wh"


def test_a_task_below_attempt_one_is_not_a_task() -> None:
    with pytest.raises(CodecError, match="attempt"):
        DeliveryTask.decode(delivery_task(attempt=0).encode())
    with pytest.raises(CodecError):
        DeliveryTask.decode(None)


def test_a_retry_keeps_the_first_attempt_time_and_the_message_id() -> None:
    first = delivery_task().retry(attempt=2, due_at=100, first_attempt_at=10)
    second = first.retry(attempt=3, due_at=200, first_attempt_at=90)
    assert (second.attempt, second.due_at, second.first_attempt_at) == (3, 200, 10)
    assert second.message_id == delivery_task().message_id
    assert delivery_task().later(500) == dataclasses.replace(delivery_task(), due_at=500)


def test_a_result_is_cut_to_what_a_record_may_carry() -> None:
    task = delivery_task(payload=b"x" * (REQUEST_BODY_BYTES + 10), trigger="test", attempt=2)
    exchange = Exchange("att_1", 7, "https://h/x", {"a": "b"}, 0.25, status=500,
                        excerpt=b"y" * 40_000, error_message="e" * 5000)
    result = DeliveryResult.of(task, exchange, outcome="failed", final=False, next_retry_at=99)
    assert len(result.request_body) == REQUEST_BODY_BYTES
    # 16 KiB, the documented cap, as a number: the code's own constant would agree with any value.
    assert len(result.response_body_excerpt) == 16384 and result.response_body_truncated
    assert result.error_message is not None and len(result.error_message) == 1000
    assert (result.attempt, result.trigger, result.message_id) == (2, "test", task.message_id)
    assert DeliveryResult.decode(result.encode()) == result


def test_a_skip_is_final_and_says_why() -> None:
    task = delivery_task()
    result = DeliveryResult.skipped(task, attempt_id="att_2", now_ms=5, url="", reason="webhook deleted")
    assert (result.outcome, result.final, result.error_message) == ("skipped", True, "webhook deleted")
    assert result.response_status is None and DeliveryResult.decode(result.encode()) == result


def test_results_of_the_log_tests_are_real_records() -> None:
    r = delivery_result("acct", "wh", "m1", 2, outcome="failed", final=False)
    assert DeliveryResult.decode(r.encode()) == r and r.key == b"wh"


def test_one_dead_letter_writer_builds_logs_counts_and_encodes(caplog: pytest.LogCaptureFixture) -> None:
    counter = Counter("dead", "test", ["reason"], registry=CollectorRegistry())
    log = logging.getLogger("test.dlq")
    letters = DeadLetters("logsink", "pfx.webhook-dlq", counter, log, clock=lambda: 12.5)
    source = Source("pfx.webhook-results", 2, 41, b"wh", b"\x00junk")
    with caplog.at_level(logging.WARNING, "test.dlq"):
        topic, key, value = letters.letter(source, "truncated", "d" * 3000)
    assert (topic, key) == ("pfx.webhook-dlq", b"wh")
    letter = DeadLetter.decode(value)
    assert letter == DeadLetter(
        stage="logsink", reason="truncated", detail="d" * 1000, source_topic="pfx.webhook-results",
        source_partition=2, source_offset=41, key=b"wh", value=b"\x00junk", failed_at=12_500,
    )
    assert counter.labels("truncated")._value.get() == 1
    assert "pfx.webhook-results[2]@41" in caplog.text and "truncated" in caplog.text
