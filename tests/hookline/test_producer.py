"""hookline.producer: sends resolved by delivery reports from the poll thread, and the typed errors."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from confluent_kafka import KafkaError

from hookline.producer import (
    AckTimeout,
    AsyncProducer,
    ProduceError,
    ProducerClosed,
    QueueFull,
    RecordRejected,
    Written,
)

T = TypeVar("T")

REFUSED = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
TIMED_OUT = KafkaError(KafkaError._MSG_TIMED_OUT)  # the producer gave up (not "retriable", yet transient)
TRANSPORT = KafkaError(KafkaError._TRANSPORT, retriable=True)


class _Msg:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeProducer:
    """A ProducerPort: poll() reports queued records, each with the next scripted error or else an ack."""

    def __init__(self, *errors: KafkaError, queue_full: int = 0, hold: bool = False) -> None:
        self.errors = list(errors)
        self.queue_full = queue_full  # how many produce() calls raise BufferError
        self.hold = hold  # leave records unacknowledged
        self.poll_failures = 0  # how many poll() calls raise
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self._pending: list[Callable[[Any, Any], None]] = []
        self._next_offset = 0
        self._lock = threading.Lock()

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        with self._lock:
            if self.queue_full:
                self.queue_full -= 1
                raise BufferError("Local: Queue full")
            self.produced.append((topic, key, value))
            self._pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        time.sleep(0.001)  # the poll thread calls this in a loop
        with self._lock:
            if self.poll_failures:
                self.poll_failures -= 1
                raise RuntimeError("poll failed (test)")
            if self.hold:
                return 0
            served, self._pending = self._pending, []
        for report in served:
            if self.errors:
                report(self.errors.pop(0), None)
            else:
                report(None, _Msg(3, self._next_offset))
                self._next_offset += 1
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        with self._lock:
            return len(self._pending)


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def started(fake: FakeProducer, **kwargs: Any) -> AsyncProducer:
    return AsyncProducer(fake, name="test-producer", **kwargs).start()


def test_send_returns_once_acknowledged_with_where_the_record_was_stored() -> None:
    fake = FakeProducer()
    producer = started(fake)

    async def scenario() -> list[Written]:
        return [await producer.send("t", b"k", b"v"), await producer.send("t", None, None)]

    try:
        assert run(scenario) == [Written(3, 0), Written(3, 1)]
        assert fake.produced == [("t", b"k", b"v"), ("t", None, None)]
    finally:
        assert producer.close(1.0) == 0


def test_a_refusal_raises_record_rejected_at_once_even_when_retrying_transient_errors() -> None:
    fake = FakeProducer(REFUSED)
    producer = started(fake, retry_backoff=0.01)
    try:
        with pytest.raises(RecordRejected, match=r"^t refused a record: ") as caught:
            run(lambda: producer.send("t", b"k", b"v", retry_transient=True))
        assert isinstance(caught.value, ProduceError)
        assert caught.value.topic == "t" and caught.value.error.name() == "MSG_SIZE_TOO_LARGE"
        assert len(fake.produced) == 1
    finally:
        producer.close(1.0)


def test_without_retry_transient_a_transient_error_is_a_refusal() -> None:
    fake = FakeProducer(TIMED_OUT)
    producer = started(fake)
    try:
        with pytest.raises(RecordRejected) as caught:
            run(lambda: producer.send("t", b"k", b"v"))
        assert caught.value.error.name() == "_MSG_TIMED_OUT" and len(fake.produced) == 1
    finally:
        producer.close(1.0)


def test_with_retry_transient_transient_errors_are_produced_again_until_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeProducer(TRANSPORT, TIMED_OUT)
    producer = started(fake, retry_backoff=0.01, logger=logging.getLogger("hookline.test"))
    try:
        assert run(lambda: producer.send("t", b"k", b"v", retry_transient=True)) == Written(3, 0)
        assert fake.produced == [("t", b"k", b"v")] * 3
        assert caplog.text.count("producing to t failed") == 2
        assert {r.name for r in caplog.records} == {"hookline.test"}
    finally:
        producer.close(1.0)


def test_a_full_queue_raises_queue_full_or_is_waited_out_with_retry_transient() -> None:
    fake = FakeProducer(queue_full=1)
    producer = started(fake)
    try:
        with pytest.raises(QueueFull, match="not written to t"):
            run(lambda: producer.send("t", b"k", b"v"))
        assert fake.produced == []
        fake.queue_full = 3
        assert run(lambda: producer.send("t", b"k", b"v", retry_transient=True)) == Written(3, 0)
        assert fake.queue_full == 0 and fake.produced == [("t", b"k", b"v")]
    finally:
        producer.close(1.0)


def test_no_acknowledgement_within_the_timeout_raises_ack_timeout_and_a_late_one_is_harmless() -> None:
    fake = FakeProducer(hold=True)
    producer = started(fake)

    async def scenario() -> Written:
        with pytest.raises(AckTimeout, match=r"t did not acknowledge a record within 0\.05 s"):
            await producer.send("t", b"k", b"v", timeout=0.05)
        fake.hold = False  # the late report for the first record must not disturb the next send
        return await producer.send("t", b"k2", b"v2", timeout=5.0)

    try:
        assert run(scenario) == Written(3, 1)
        assert len(fake.produced) == 2
    finally:
        producer.close(1.0)


def test_the_timeout_bounds_transient_retries_too() -> None:
    fake = FakeProducer(*[TIMED_OUT] * 1000)
    producer = started(fake, retry_backoff=0.01)
    try:
        with pytest.raises(AckTimeout):
            run(lambda: producer.send("t", b"k", b"v", retry_transient=True, timeout=0.2))
        assert len(fake.produced) > 1
    finally:
        producer.close(1.0)


def test_close_returns_the_records_left_unacknowledged_then_sends_raise_producer_closed() -> None:
    fake = FakeProducer(hold=True)
    producer = started(fake)

    async def scenario() -> int:
        pending = asyncio.create_task(producer.send("t", b"k", b"v"))
        deadline = time.monotonic() + 5.0
        while not fake.produced:
            assert time.monotonic() < deadline, "the record was never produced"
            await asyncio.sleep(0.001)
        left = await asyncio.get_running_loop().run_in_executor(None, producer.close, 0.05)
        with pytest.raises(ProducerClosed, match="not written to t: shutting down"):
            await producer.send("t", b"k", b"v")
        pending.cancel()
        return left

    assert run(scenario) == 1
    assert producer.closing and len(fake.produced) == 1
    assert not [t for t in threading.enumerate() if t.name == "test-producer"]


def test_start_after_close_sends_again_and_send_before_start_is_a_bug() -> None:
    fake = FakeProducer()
    producer = AsyncProducer(fake)
    with pytest.raises(RuntimeError, match=r"start\(\) first"):
        run(lambda: producer.send("t", b"k", b"v"))
    producer.start()
    producer.close(1.0)
    producer.start()
    try:
        assert not producer.closing
        assert run(lambda: producer.send("t", b"k", b"v")) == Written(3, 0)
    finally:
        producer.close(1.0)


def test_a_failing_poll_is_logged_and_polling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeProducer()
    fake.poll_failures = 1
    producer = started(fake)
    try:
        assert run(lambda: producer.send("t", b"k", b"v", timeout=5.0)) == Written(3, 0)
        assert "test-producer: poll failed: RuntimeError" in caplog.text
    finally:
        producer.close(1.0)
