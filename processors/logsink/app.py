"""The log sink role: ``webhook-results`` -> the delivery log store, in batches.

At least once: a batch is written in one database transaction, and only then are its offsets
stored (and committed by the consumer). A crash re-reads at most the batches after the last
commit; rows are idempotent on (message id, attempt id), so re-reading never duplicates.

Nothing is dropped silently: a record that cannot be decoded (or that the database refuses)
goes to ``webhook-dlq`` with stage ``logsink``, a log line and a metric, and the sink keeps going.
When the store is unavailable the batch is not acknowledged: the consumer seeks back to its
first record and retries with backoff, and ``/readyz`` says not ready until a write succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import CollectorRegistry

from hookline.clients import consumer_marks, new_consumer, new_producer, records_behind
from hookline.logstore import LogStore, StoreRejected, describe_url, open_store
from hookline.metrics import LogSinkMetrics
from hookline.records import DeadLetters, DeliveryResult, Source
from hookline.settings import Settings
from hookline.topics import DLQ, RESULTS
from schemas.codec import CodecError

__all__ = ["GROUP", "LogSink"]

log = logging.getLogger("hookline.logsink")

#: Consumer group (after the topic prefix).
GROUP = "hookline-logsink"
_DeadLetter = tuple[Message, str, str]  # record, reason, detail
_LAG_EVERY = 2.0
_PING_EVERY = 5.0
_MAX_BACKOFF = 5.0
_PURGE_STEP = 10_000  # messages one purge pass deletes at most, so consuming never stalls for long


class LogSink:
    """Composition root of the log sink: consumer, DLQ producer, store, metrics, purge schedule."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        store: LogStore | None = None,
        from_beginning: bool = False,
        purge_interval: float = 300.0,
        batch_size: int = 500,
        batch_wait: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = LogSinkMetrics(self.registry)
        self.lag = self.metrics.consumer_lag.labels("logsink")
        self.store = store
        self._own_store = store is None
        self.topic = settings.topic(RESULTS)
        self.dead_letters = DeadLetters(
            "logsink", settings.topic(DLQ), self.metrics.dead_lettered, log, clock=clock
        )
        self.from_beginning = from_beginning
        self.purge_interval = purge_interval
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.clock = clock
        self.assigned = False
        self.store_ok = False
        self.failed = False
        self._rewound: set[int] = set()  # partitions already sent back to the beginning
        self._dlq_errors: list[str] = []
        self._backoff = 0.0
        self._next_purge = 0.0
        self._next_lag = 0.0
        self._next_ping = 0.0

    # -- probes -------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Joined the consumer group (an assignment was received) and the store answers."""
        return self.assigned and self.store_ok and not self.failed

    def healthy(self) -> bool:
        return not self.failed

    # -- main loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and its offsets committed."""
        try:
            store = self._open_store(stop)
            if store is None:
                return
            consumer = new_consumer(
                self.settings,
                GROUP,
                **{
                    "enable.auto.offset.store": False,
                    "client.id": "hookline-logsink",
                    # The log is read by people, not by the delivery path: let the broker gather up to
                    # half a second of results per fetch instead of answering once per result (at
                    # 100 deliveries/s that is ~2 fetches/s instead of ~100; docs/architecture.md §6).
                    "fetch.min.bytes": 1 << 20,
                    "fetch.wait.max.ms": 500,
                },
            )
            producer = new_producer(self.settings, **{"client.id": "hookline-logsink"})
            try:
                consumer.subscribe(
                    [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
                )
                log.info("log sink consuming %s into %s", self.topic, describe_url(self.settings))
                while not stop.is_set():
                    msgs = consumer.consume(self.batch_size, self.batch_wait)
                    if msgs and not self._handle(consumer, producer, store, msgs):
                        stop.wait(self._next_backoff())
                    self._maintain(consumer, store)
            finally:
                self._close(consumer, producer)
        except BaseException:
            self.failed = True
            raise
        finally:
            if self._own_store and self.store is not None:
                self.store.close()

    def _open_store(self, stop: threading.Event) -> LogStore | None:
        while self.store is None and not stop.is_set():
            try:
                self.store = open_store(self.settings)
            except Exception as exc:  # StoreUnavailable, or a driver error while migrating
                self.metrics.store_errors.inc()
                log.warning("log store %s not available yet: %s", describe_url(self.settings), exc)
                stop.wait(self._next_backoff())
        if self.store is not None:
            self._backoff = 0.0
            self._set_store_ok(True)
        return self.store

    def _close(self, consumer: Consumer, producer: Producer) -> None:
        remaining = producer.flush(10)
        if remaining:
            log.error("log sink: %d DLQ records not delivered at shutdown", remaining)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("log sink: final commit failed: %s", exc)
        consumer.close()
        self.assigned = False

    def _next_backoff(self) -> float:
        self._backoff = min(_MAX_BACKOFF, max(0.25, self._backoff * 2))
        return self._backoff

    def _set_store_ok(self, ok: bool) -> None:
        self.store_ok = ok
        self.metrics.store_up.set(1 if ok else 0)

    # -- one batch ----------------------------------------------------------------------------

    def _handle(self, consumer: Consumer, producer: Producer, store: LogStore, msgs: list[Message]) -> bool:
        """Decode, write and acknowledge one batch; False (nothing acknowledged) when it must be retried."""
        first: dict[tuple[str, int], int] = {}
        after: dict[tuple[str, int], int] = {}
        decoded: list[tuple[Message, DeliveryResult]] = []
        # Dead letters are produced only once the batch is written: a batch that is read again
        # after a failed write must not dead-letter its poison records twice.
        dead: list[_DeadLetter] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("log sink: consumer error: %s", err)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            first.setdefault((topic, partition), offset)
            after[(topic, partition)] = offset + 1
            value = msg.value()
            if value is None:
                dead.append((msg, "tombstone", "the results topic carries no tombstones"))
                continue
            try:
                decoded.append((msg, DeliveryResult.decode(value)))
            except CodecError as exc:
                dead.append((msg, exc.reason, str(exc)))
        if decoded and not self._write(store, decoded, dead):
            self._rewind(consumer, first)
            return False
        for msg, reason, detail in dead:
            self._dead_letter(producer, msg, reason, detail)
        if (dead and producer.flush(30)) or self._dlq_errors:
            log.warning(
                "log sink: DLQ writes failed (%s); the batch will be read again",
                "; ".join(self._dlq_errors[:3]) or "timeout",
            )
            self._dlq_errors.clear()
            self._rewind(consumer, first)
            return False
        if after:
            try:
                consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in after.items()])
            except KafkaException as exc:  # the partition was revoked meanwhile: its new owner re-reads
                log.info("log sink: offsets not stored (%s)", exc)
        self._backoff = 0.0
        return True

    def _write(
        self, store: LogStore, decoded: list[tuple[Message, DeliveryResult]], dead: list[_DeadLetter]
    ) -> bool:
        started = time.perf_counter()
        try:
            try:
                new = store.insert_attempts([r for _, r in decoded])
            except StoreRejected:
                # Find the records the database refuses; store the rest one by one.
                new = 0
                refused: list[_DeadLetter] = []
                for msg, record in decoded:
                    try:
                        new += store.insert_attempts([record])
                    except StoreRejected as exc:
                        refused.append((msg, "store_rejected", str(exc)))
                dead.extend(refused)
        except Exception as exc:  # StoreUnavailable, or anything else the driver raises: retry later
            self.metrics.store_errors.inc()
            self._set_store_ok(False)
            log.warning("log sink: writing %d results failed, will retry: %s", len(decoded), exc)
            return False
        self.metrics.batch_write_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_records.observe(len(decoded))
        self.metrics.results_stored.inc(new)
        self.metrics.results_duplicate.inc(len(decoded) - new)
        self._set_store_ok(True)
        return True

    def _rewind(self, consumer: Consumer, first: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in first.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # revoked meanwhile: the committed offset still covers it
                log.info("log sink: cannot seek %s[%d] back to %d: %s", topic, partition, offset, exc)

    def _dead_letter(self, producer: Producer, msg: Message, reason: str, detail: str) -> None:
        partition, offset = msg.partition(), msg.offset()
        source = Source(
            msg.topic() or "",
            partition if partition is not None else -1,
            offset if offset is not None else -1,
            msg.key(),
            msg.value(),
        )
        topic, key, value = self.dead_letters.letter(source, reason, detail)
        producer.produce(topic, key=key, value=value, on_delivery=self._dlq_delivered)
        producer.poll(0)

    def _dlq_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._dlq_errors.append(str(err))

    # -- rebalance ----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.from_beginning:
            fresh = [tp for tp in partitions if tp.partition not in self._rewound]
            if fresh:
                for tp in fresh:
                    tp.offset = OFFSET_BEGINNING
                    self._rewound.add(tp.partition)
                consumer.assign(partitions)
                log.info("log sink: reading %d partitions again from the beginning", len(fresh))
        self.assigned = True
        self._next_lag = 0.0
        log.info("log sink: assigned %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are handled between polls, so every finished batch has its offsets stored.
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("log sink: commit on revoke failed: %s", exc)
        self.assigned = False
        log.info("log sink: revoked %s", sorted(tp.partition for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = False
        log.warning("log sink: lost %s", sorted(tp.partition for tp in partitions))

    # -- housekeeping -------------------------------------------------------------------------

    def _maintain(self, consumer: Consumer, store: LogStore) -> None:
        now = time.monotonic()
        if now >= self._next_lag:
            self._next_lag = now + _LAG_EVERY
            self._update_lag(consumer)
        if now >= self._next_ping:
            self._next_ping = now + _PING_EVERY
            self._set_store_ok(store.ping())
        if now >= self._next_purge:
            self._next_purge = now + self._purge(store)

    def _purge(self, store: LogStore) -> float:
        """Run one purge pass (messages, then bodies: docs/data-retention.md); return the seconds
        until the next one."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        days, body_days = self.settings.log_retention_days, self.settings.log_body_retention_days
        complete = True
        try:
            if days > 0:
                cutoff = now - timedelta(days=days)
                purged = store.purge_older_than(cutoff, max_messages=_PURGE_STEP)
                self.metrics.purged_messages.inc(purged.messages)
                complete = purged.complete
                if purged.messages:
                    log.info(
                        "log sink: purged %d messages (%d attempts) last attempted before %s",
                        purged.messages,
                        purged.attempts,
                        cutoff.isoformat(timespec="seconds"),
                    )
            if body_days > 0:
                cutoff = now - timedelta(days=body_days)
                expired = store.expire_bodies_older_than(cutoff, max_attempts=_PURGE_STEP)
                self.metrics.expired_bodies.inc(expired.attempts)
                complete = complete and expired.complete
                if expired.attempts:
                    log.info(
                        "log sink: removed the bodies of %d attempts made before %s",
                        expired.attempts,
                        cutoff.isoformat(timespec="seconds"),
                    )
        except Exception as exc:
            self._set_store_ok(False)
            log.warning("log sink: retention purge failed, will retry: %s", exc)
            return min(self.purge_interval, 30.0)
        return self.purge_interval if complete else 1.0

    def _update_lag(self, consumer: Consumer) -> None:
        try:
            marks = consumer_marks(consumer)
            if any(high < 0 for high, _pos in marks.values()):
                self._next_lag = 0.0  # no fetch response yet for some partition: try again next round
            if any(pos < 0 for _high, pos in marks.values()):
                # Nothing consumed since the assignment: count from the committed offset.
                parts = [TopicPartition(t, p) for t, p in marks]
                committed = {(c.topic, c.partition): c.offset for c in consumer.committed(parts, timeout=2)}
                marks = {
                    k: (high, pos if pos >= 0 else max(0, committed.get(k, 0)))
                    for k, (high, pos) in marks.items()
                }
            self.lag.set(records_behind(marks.values()))
        except KafkaException as exc:
            log.debug("log sink: lag not measured: %s", exc)
