"""EventPublisher against the real broker: everything sent arrives intact and in order per key;
failures surface (futures, flush, close) within a bounded time; a full local queue is waited out."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from hookline.settings import Settings, load_settings
from producers import EventPublisher, PublishError, Receipt
from producers.events import EventType
from producers.samples import SampleGenerator

T0 = 1_717_243_200_000


@pytest.mark.kafka
def test_ten_thousand_events_arrive_intact_and_in_order_per_account(
    settings: Settings, consume: Callable[..., list[Any]]
) -> None:
    events = SampleGenerator(seed=42, accounts=25, start=T0).take(10_000)
    assert {e.type for e in events} == set(EventType)

    started = time.monotonic()
    with EventPublisher(settings) as publisher:
        futures = [publisher.publish(e) for e in events[:5000]]
        futures += publisher.publish_many(events[5000:])
        publisher.flush(timeout=60)
        assert publisher.pending == 0
    elapsed = time.monotonic() - started
    assert (publisher.delivered, publisher.failed) == (10_000, 0)
    receipts = [f.result(timeout=0) for f in futures]
    print(f"published 10,000 events in {elapsed:.2f}s ({10_000 / elapsed:,.0f}/s)")

    consumed = consume(settings, 10_000)

    # Same records, each exactly once, at the position its receipt named.
    sent = {e.event_id: e for e in events}
    by_position = {(c.topic, c.partition, c.offset): c for c in consumed}
    assert len({c.record["eventId"] for c in consumed}) == 10_000
    for event, receipt in zip(events, receipts, strict=True):
        assert isinstance(receipt, Receipt) and receipt.event_id == event.event_id
        got = by_position[(receipt.topic, receipt.partition, receipt.offset)]
        assert got.record == event.to_avro()
        assert got.key == event.account_id
        assert receipt.topic == settings.topic(event.topic)

    # Per account (the key) and topic, the order of publication is kept.
    published: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in events:
        published[(settings.topic(e.topic), e.account_id)].append(e.event_id)
    arrived: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in sorted(consumed, key=lambda c: (c.topic, c.partition, c.offset)):
        arrived[(c.topic, c.key)].append(c.record["eventId"])
    assert arrived == published
    assert sent.keys() == {c.record["eventId"] for c in consumed}


@pytest.mark.kafka
def test_a_full_local_queue_is_waited_out_not_dropped(
    settings: Settings, consume: Callable[..., list[Any]]
) -> None:
    events = SampleGenerator(seed=9, accounts=3, start=T0).take(2000)
    publisher = EventPublisher(settings, producer_overrides={"queue.buffering.max.messages": 50})
    counting = _CountBufferErrors(publisher._producer)
    publisher._producer = counting  # type: ignore[assignment]
    futures = [publisher.publish(e) for e in events]
    publisher.close()
    assert counting.full > 0, "the queue never filled up: the test proves nothing"
    assert all(f.result(timeout=0).offset >= 0 for f in futures)
    assert len(consume(settings, 2000)) == 2000


class _CountBufferErrors:
    """Wraps the real producer to count how often its local queue was full."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.full = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.inner.produce(*args, **kwargs)
        except BufferError:
            self.full += 1
            raise

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_unreachable_broker_fails_fast_and_loud(closed_port: int) -> None:
    settings = load_settings({}, kafka_bootstrap=f"127.0.0.1:{closed_port}", topic_prefix="t.")
    events = SampleGenerator(seed=1, accounts=2, start=T0).take(3)
    started = time.monotonic()
    publisher = EventPublisher(settings, delivery_timeout=1.5)
    futures = publisher.publish_many(events)
    with pytest.raises(PublishError) as info:
        publisher.flush()
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"took {elapsed:.1f}s to notice"

    error = info.value
    assert [f.event_id for f in error.failures] == [e.event_id for e in events]
    assert all(f.code == "_MSG_TIMED_OUT" for f in error.failures)
    assert f"is Kafka reachable at 127.0.0.1:{closed_port}?" in str(error)
    assert events[0].event_id in str(error)
    for future in futures:
        assert isinstance(future.exception(timeout=0), PublishError)
    assert publisher.failed == 3 and publisher.delivered == 0
    publisher.close()  # the failures were reported by flush; nothing is left
    with pytest.raises(RuntimeError):
        publisher.publish(events[0])


def test_closing_raises_when_events_failed(closed_port: int) -> None:
    settings = load_settings({}, kafka_bootstrap=f"127.0.0.1:{closed_port}")
    event = SampleGenerator(seed=1, accounts=1, start=T0).take(1)[0]
    started = time.monotonic()
    future: Future[Receipt] | None = None
    with pytest.raises(PublishError) as info, EventPublisher(settings, delivery_timeout=1.0) as publisher:
        future = publisher.publish(event)
    assert time.monotonic() - started < 8
    assert info.value.failures[0].event_id == event.event_id
    assert future is not None and future.done()


def test_flush_is_bounded_even_with_a_long_delivery_timeout(closed_port: int) -> None:
    settings = load_settings({}, kafka_bootstrap=f"127.0.0.1:{closed_port}")
    event = SampleGenerator(seed=1, accounts=1, start=T0).take(1)[0]
    publisher = EventPublisher(settings, delivery_timeout=300)
    future = publisher.publish(event)
    assert not future.cancel()  # only the delivery report settles a future
    started = time.monotonic()
    with pytest.raises(PublishError) as info:
        publisher.flush(timeout=0.5)
    assert time.monotonic() - started < 3
    assert info.value.undelivered == 1 and not info.value.failures
    assert "1 event(s) still unconfirmed" in str(info.value)
    with pytest.raises(PublishError):
        publisher.close(timeout=0.2)  # purges what is left, so no future stays pending
    assert isinstance(future.exception(timeout=5), PublishError)
    with pytest.raises(RuntimeError):
        publisher.flush()


def test_an_error_in_the_block_is_kept_and_the_failures_noted(closed_port: int) -> None:
    settings = load_settings({}, kafka_bootstrap=f"127.0.0.1:{closed_port}")
    event = SampleGenerator(seed=1, accounts=1, start=T0).take(1)[0]
    with pytest.raises(KeyError) as info, EventPublisher(settings, delivery_timeout=0.5) as publisher:
        publisher.publish(event)
        raise KeyError("boom")
    assert any(event.event_id in note for note in info.value.__notes__)


def test_only_events_are_published(closed_port: int) -> None:
    settings = load_settings({}, kafka_bootstrap=f"127.0.0.1:{closed_port}")
    publisher = EventPublisher(settings, delivery_timeout=1.0)
    with pytest.raises(TypeError):
        publisher.publish({"eventId": "x"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        publisher.publish_many([*SampleGenerator(seed=1, start=T0).take(2), "not an event"])  # type: ignore[list-item]
    assert publisher.pending == 0  # all or nothing: the valid events were not sent either
    publisher.close()
    with pytest.raises(ValueError):
        EventPublisher(settings, delivery_timeout=0)
