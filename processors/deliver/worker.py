"""The consume loop of the delivery worker: batches in, tasks out, offsets stored only behind finished work.

One thread owns the confluent-kafka consumer; every call to it (consume, store, pause, resume,
commit, close) runs there, one step at a time, so the asyncio loop never blocks on Kafka.

Offsets: each assigned partition has a :class:`~processors.deliver.offsets.PartitionOffsets`; a task's
offset counts only once its records are acknowledged, and the offset stored is the lowest one
still unfinished. librdkafka auto-commits what was stored every 100 ms; revocation and shutdown
commit synchronously.

Holding: a record that cannot start yet is held in memory with everything behind it in its
partition, and that partition is paused until the head can start — other partitions and topics go
on. A record waits for the time its port names (a retry tier's delay from when the record was
written, so records leave a tier in the order they entered it) or for room: at most
``max_buffered`` tasks run at once (queued for a concurrency slot or in flight). Each poll takes
no more records than there is room for, so when the worker is full only a record per partition is
read and held; held heads start round-robin over the partitions as room frees up. The consumer
keeps polling throughout, so it stays in the group.

Rebalance: on revocation the finished prefix of each revoked partition is committed and the
rest is dropped; tasks still running finish but no longer store offsets, so the next owner may
deliver them again (at least once, never lost). Every partition assigned is resumed first: one this
worker had paused before it was revoked and assigned back would otherwise stay paused. Shutdown:
stop reading, let running attempts end within the drain deadline, abandon tasks that had not
started, commit, close.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from hookline.clients import consumer_marks, records_behind
from hookline.metrics import DeliveryMetrics
from hookline.producer import ProducerClosed
from processors.deliver.handler import Abandoned, Record
from processors.deliver.offsets import PartitionOffsets

__all__ = ["TaskPort", "Worker"]

log = logging.getLogger("hookline.deliver")

T = TypeVar("T")
_Key = tuple[str, int]


class TaskPort(Protocol):
    stopping: bool

    def hold_until(self, rec: Record) -> int:
        """Epoch milliseconds until which ``rec`` waits at the head of its partition (0: go now)."""

    async def process(self, rec: Record) -> None:
        """Handle ``rec`` completely; its offset may be stored once this returns."""


@dataclass(eq=False)
class _Partition:
    topic: str
    partition: int
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    held: deque[Record] = field(default_factory=deque)
    next_seen: int | None = None
    # As last requested from the consumer. A new assignment starts as "paused" so that the next step
    # resumes it: librdkafka keeps a pause across a rebalance for a partition that is revoked and
    # assigned back to the same consumer (librdkafka issue 1849), and a partition paused when it was
    # revoked (a tier's head waiting for its due time) would never be fetched again (issue 12).
    paused: bool = True

    def tp(self, offset: int = -1001) -> TopicPartition:
        return TopicPartition(self.topic, self.partition, offset)


class Worker:
    """Run a consumer over ``topics`` and feed ``port``; see the module docstring."""

    def __init__(
        self,
        consumer_conf: dict[str, Any],
        topics: list[str],
        port: TaskPort,
        *,
        max_buffered: int,
        drain_timeout: float,
        metrics: DeliveryMetrics | None = None,
        batch_size: int = 500,
        poll_timeout: float = 0.1,
        lag_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conf = consumer_conf
        self._topics = topics
        self._port = port
        self._max_buffered = max_buffered
        self._drain_timeout = drain_timeout
        self._metrics = metrics
        self._batch = batch_size
        self._poll_timeout = poll_timeout
        self._lag_interval = lag_interval
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="deliver-consumer")
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parts: dict[_Key, _Partition] = {}
        self._dirty: set[_Partition] = set()
        self._tasks: dict[asyncio.Task[None], tuple[_Partition, Record]] = {}
        # One bound method and one context for every task's done callback (it reads no context
        # variable), instead of a new pair per task.
        self._on_finished = self._finished
        self._context = contextvars.copy_context()
        self._buffered = 0
        self._turn = 0  # round-robin start for releasing held records
        self._starved = False  # a due record is held for lack of room
        self._last_lag = 0.0
        self._joined = False
        self.fatal: BaseException | None = None

    # -- state for probes and tests -------------------------------------------------------------
    @property
    def joined(self) -> bool:
        """True once the group gave this worker an assignment (possibly empty) and has not taken it away."""
        return self._joined

    @property
    def buffered(self) -> int:
        return self._buffered

    # -- the loop -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (or a fatal error), then drain, commit and close."""
        self._loop = asyncio.get_running_loop()
        await self._call(self._open)
        try:
            while not stop.is_set() and self.fatal is None:
                await self._iterate()
        finally:
            await self._shutdown()
        if self.fatal is not None:
            raise RuntimeError("delivery worker stopped on an unexpected error") from self.fatal

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def _iterate(self) -> None:
        stores = self._take_stores()
        pause, resume = self._pause_changes()
        now = time.monotonic()
        want_lag = self._metrics is not None and now - self._last_lag >= self._lag_interval
        if want_lag:
            self._last_lag = now
        # Never take more than the buffer has room for (at least one, to keep polling the group).
        room = max(1, min(self._batch, self._max_buffered - self._buffered))
        # Poll briefly while due records wait for room, so that they start soon after it frees up.
        timeout = self._poll_timeout / 5 if self._starved else self._poll_timeout
        msgs, marks = await self._call(self._step, stores, pause, resume, want_lag, room, timeout)
        now_ms = int(self._clock() * 1000)
        for msg in msgs:
            self._accept(msg, now_ms)
        self._release(now_ms)
        if marks is not None:
            self._report_lag(marks)
        if self._metrics is not None:
            self._metrics.buffered.set(self._buffered)

    def _accept(self, msg: Message, now_ms: int) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        part = self._parts.get((topic, partition))
        if part is None:
            return  # no longer ours; the new owner reads it from the committed offset
        if part.next_seen is not None and offset < part.next_seen:
            return  # read before (a re-fetch)
        part.next_seen = offset + 1
        kind, stamp = msg.timestamp()
        written = stamp if kind != TIMESTAMP_NOT_AVAILABLE else now_ms
        rec = Record(topic, partition, offset, msg.key(), msg.value(), now_ms, written)
        if part.held or self._buffered >= self._max_buffered or self._port.hold_until(rec) > now_ms:
            part.held.append(rec)  # keeps partition order: nothing passes a waiting head
            return
        self._start(part, rec)

    def _release(self, now_ms: int) -> None:
        """Start held records that are due, one partition at a time in turn, while there is room."""
        self._starved = False
        waiting = [p for p in self._parts.values() if p.held]
        if not waiting:
            return
        self._turn = (self._turn + 1) % len(waiting)
        waiting = waiting[self._turn :] + waiting[: self._turn]
        while waiting and self._buffered < self._max_buffered:
            ready = []
            for part in waiting:
                if self._buffered >= self._max_buffered:
                    break
                if self._port.hold_until(part.held[0]) <= now_ms:
                    self._start(part, part.held.popleft())
                    if part.held:
                        ready.append(part)
            waiting = ready
        heads = (p.held[0] for p in self._parts.values() if p.held)
        self._starved = any(self._port.hold_until(rec) <= now_ms for rec in heads)

    def _start(self, part: _Partition, rec: Record) -> None:
        part.offsets.start(rec.offset)
        self._buffered += 1
        # The task runs the port's coroutine itself and its end is handled by a callback: a
        # wrapper coroutine per task would stay alive (a frame) for as long as the task runs.
        task = asyncio.create_task(self._port.process(rec), name="deliver")
        self._tasks[task] = (part, rec)
        task.add_done_callback(self._on_finished, context=self._context)

    def _finished(self, task: asyncio.Task[None]) -> None:
        part, rec = self._tasks.pop(task)
        self._buffered -= 1
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if not part.offsets.revoked and part.offsets.finish(rec.offset):
                self._dirty.add(part)
        elif isinstance(exc, (Abandoned, ProducerClosed)):
            pass  # stopping: the next owner processes it again
        elif isinstance(exc, Exception):  # a bug: stop rather than store past an unprocessed task
            log.error(
                "task at %s/%d:%d failed unexpectedly", rec.topic, rec.partition, rec.offset, exc_info=exc
            )
            if self.fatal is None:
                self.fatal = exc

    def _take_stores(self) -> list[TopicPartition]:
        out = []
        for part in self._dirty:
            offset = part.offsets.to_store()
            if offset is not None and not part.offsets.revoked:
                part.offsets.stored = offset
                out.append(part.tp(offset))
        self._dirty.clear()
        return out

    def _pause_changes(self) -> tuple[list[TopicPartition], list[TopicPartition]]:
        pause: list[TopicPartition] = []
        resume: list[TopicPartition] = []
        for part in self._parts.values():
            want = bool(part.held)
            if want != part.paused:
                part.paused = want
                (pause if want else resume).append(part.tp())
        return pause, resume

    def _report_lag(self, marks: dict[_Key, tuple[int, int]]) -> None:
        assert self._metrics is not None

        def base(key: _Key, high: int, position: int) -> int:
            # Records read but unfinished (held or in flight) still count: from the committable offset.
            part = self._parts.get(key)
            committable = part.offsets.committable if part is not None else None
            if committable is not None:
                return committable
            return position if position >= 0 else high

        lag = records_behind((high, base(key, high, pos)) for key, (high, pos) in marks.items())
        self._metrics.consumer_lag.labels("deliver").set(lag)

    # -- consumer thread ------------------------------------------------------------------------
    def _open(self) -> None:
        self._consumer = Consumer(self._conf)
        self._consumer.subscribe(
            self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _step(
        self,
        stores: list[TopicPartition],
        pause: list[TopicPartition],
        resume: list[TopicPartition],
        want_lag: bool,
        room: int,
        timeout: float,
    ) -> tuple[list[Message], dict[_Key, tuple[int, int]] | None]:
        c = self._consumer
        assert c is not None
        if stores:
            _quietly("store_offsets", lambda: c.store_offsets(offsets=stores))
        if pause:
            _quietly("pause", lambda: c.pause(pause))
        if resume:
            _quietly("resume", lambda: c.resume(resume))
        # consume(n, timeout) waits for n records or the whole timeout, which put a ~100 ms floor
        # under every delivery at low rates: wait for one, then take what is already fetched.
        msgs = c.consume(1, timeout)
        if msgs and room > 1:
            msgs += c.consume(room - 1, 0)
        return msgs, consumer_marks(c) if want_lag else None

    def _sync(self, fn: Callable[[list[_Key]], T], keys: list[_Key]) -> T:
        """Run ``fn(keys)`` on the loop and wait for it (called from rebalance callbacks)."""
        assert self._loop is not None
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn(keys))
            except BaseException as exc:  # reported to the consumer thread
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return fut.result(timeout=60)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._sync(self._assigned, [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        offsets = self._sync(self._revoked, [(tp.topic, tp.partition) for tp in partitions])
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revocation failed (the next owner may repeat deliveries): %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._sync(self._revoked, [(tp.topic, tp.partition) for tp in partitions])
        self._joined = False

    # -- rebalance, on the loop -----------------------------------------------------------------
    def _assigned(self, keys: list[_Key]) -> None:
        for key in keys:
            old = self._parts.get(key)
            if old is not None:
                old.offsets.revoked = True
            self._parts[key] = _Partition(*key)
        self._joined = True
        log.info("assigned %d partitions (%d in total)", len(keys), len(self._parts))

    def _revoked(self, keys: list[_Key]) -> list[TopicPartition]:
        offsets = []
        for key in keys:
            part = self._parts.pop(key, None)
            if part is None:
                continue
            part.offsets.revoked = True
            self._dirty.discard(part)
            if part.offsets.committable is not None:
                offsets.append(part.tp(part.offsets.committable))
            part.held.clear()
        for part, rec in self._tasks.values():
            if part.offsets.revoked:
                rec.revoked = True  # one still waiting for its webhook's rate limit gives up
        log.info("revoked %d partitions (%d left)", len(keys), len(self._parts))
        return offsets

    # -- shutdown -------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        self._port.stopping = True
        pending = set(self._tasks)
        if pending:
            log.info("draining %d tasks (up to %g s)", len(pending), self._drain_timeout)
            _done, pending = await asyncio.wait(pending, timeout=self._drain_timeout)
        if pending:
            log.warning("%d tasks did not finish in time; they will be delivered again", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        stores = self._take_stores()
        try:
            await self._call(self._close, stores)
        finally:
            self._executor.shutdown(wait=False)

    def _close(self, stores: list[TopicPartition]) -> None:
        c = self._consumer
        if c is None:
            return
        if stores:
            try:
                c.commit(offsets=stores, asynchronous=False)
            except KafkaException as exc:
                log.warning("final commit failed (some deliveries may repeat): %s", exc)
        c.close()
        self._consumer = None
        log.info("consumer closed")


def _quietly(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except KafkaException as exc:  # a partition was revoked meanwhile; nothing to do
        log.debug("consumer %s: %s", what, exc)
