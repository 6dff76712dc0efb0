"""Replays in the router role: a webhook's events re-read from the event topics and routed again.

The API writes a :class:`~hookline.replays.Replay` to the compacted ``webhook-replays`` topic (key =
webhook id) with the offsets to read; this runner (threads and plain confluent-kafka clients beside
the Faust app, like the config view) runs it:

- *Ownership.* A consumer in the group ``hookline-replays`` reads ``webhook-replays``: a partition's
  replays are run by the router instance that has it. On assignment it reads the partition from the
  beginning (nothing is committed) up to the end seen then, and only then starts the replays whose
  latest state is ``running``; so a restarted or new owner resumes from the last stored position.
  On revocation it stops their jobs, which store what they have acknowledged before the next owner
  can read it.
- *A job* reads each span ``[position, end)`` of the event topics (a consumer without a group), keeps
  the events of the webhook's account published in the window whose type it asked for and the
  webhook still wants, builds each one's task with the router's own join (``tasks_for``: the same
  body, the same message id as the routing gave it; trigger ``replay``) and produces it to
  ``webhook-deliveries`` (idempotent, ``acks=all``). After a batch (at most a second, or
  ``checkpoint_tasks`` tasks) it waits until every task is acknowledged, then writes the new
  positions and counters and waits for that too. A crash re-sends at most the tasks produced after
  the last stored position (same message ids: receivers deduplicate).
- *Bounds.* At most ``concurrency`` replays run at once per router instance (the others wait), each
  at most ``rate`` tasks a second, so a replay never floods the delivery topic ahead of live traffic.
  A webhook deleted or switched off while its replay runs ends it as ``canceled``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from hookline.clients import new_consumer, new_producer
from hookline.metrics import RouterMetrics
from hookline.replays import Replay
from hookline.settings import Settings
from hookline.topics import DELIVERIES, REPLAYS
from hookline.webhooks import Webhook
from processors.router.routing import tasks_for
from schemas.codec import CodecError, decode

__all__ = ["ReplayRunner"]

log = logging.getLogger("hookline.router.replay")

#: The consumer group whose assignment decides which router instance runs which replays.
GROUP = "hookline-replays"
#: Seconds before a job that failed (a write not acknowledged) starts again from its stored position.
_RETRY_AFTER = 5.0


class Webhooks(Protocol):
    """What the runner needs of the router's config view (:class:`hookline.configview.ConfigView`)."""

    @property
    def ready(self) -> bool: ...

    def get(self, webhook_id: str) -> Webhook | None: ...

    def catch_up(self, timeout: float = ...) -> bool: ...


class _Stopped(Exception):
    """The job was asked to stop (revocation, shutdown)."""


@dataclass
class _Partition:
    """An owned partition of ``webhook-replays`` while it is read."""

    target: int  # the end when it was assigned: jobs start once it is read that far
    position: int = 0
    latest: dict[str, Replay] = field(default_factory=dict)

    @property
    def caught_up(self) -> bool:
        return self.position >= self.target


class ReplayRunner:
    """Run the replays of the ``webhook-replays`` partitions this instance owns (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        webhooks: Webhooks,
        *,
        rate: float = 500.0,
        concurrency: int = 2,
        checkpoint_tasks: int = 200,
        clock: Callable[[], float] = time.time,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.metrics = metrics
        self._webhooks = webhooks
        self.rate = rate
        self._slots = threading.Semaphore(concurrency)
        self._checkpoint_tasks = checkpoint_tasks
        self._clock = clock
        self._topic = settings.topic(REPLAYS)
        self._owned: dict[int, _Partition] = {}
        self._jobs: dict[str, _Job] = {}  # by webhook id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ReplayRunner:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="replay-owner", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def running(self) -> list[str]:
        """The webhook ids whose replays run (or wait for a slot) here."""
        with self._lock:
            return [w for w, j in self._jobs.items() if j.alive]

    # -- the owner thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._own()
            except Exception as exc:  # never let the router lose its replays silently: log, retry
                self.error = exc
                log.exception("replay runner: failed; starting again in 2 s")
                self._stop.wait(2.0)
        self._stop_jobs(list(self._owned))

    def _own(self) -> None:
        consumer = new_consumer(
            self._settings,
            GROUP,
            **{"enable.auto.commit": False, "client.id": "hookline-router-replays"},
        )

        def assigned(c: Consumer, partitions: list[TopicPartition]) -> None:
            for tp in partitions:
                _low, high = c.get_watermark_offsets(tp, timeout=10)
                self._owned[tp.partition] = _Partition(target=high)
                tp.offset = OFFSET_BEGINNING  # the state of the partition's replays: read all of it
            c.assign(partitions)
            log.info("replay runner: owns partitions %s", sorted(p.partition for p in partitions))

        def revoked(c: Consumer, partitions: list[TopicPartition]) -> None:
            self._stop_jobs([tp.partition for tp in partitions])
            for tp in partitions:
                self._owned.pop(tp.partition, None)
            c.unassign()

        consumer.subscribe([self._topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("replay runner: consume error %s", err)
                        continue
                    self._apply(int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value())
                self._start_due()
        finally:
            self._stop_jobs(list(self._owned))
            self._owned.clear()
            consumer.close()

    def _apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        owned = self._owned.get(partition)
        if owned is None:
            return
        owned.position = offset + 1
        if not key:
            return
        webhook_id = key.decode("utf-8", "replace")
        if value is None:
            owned.latest.pop(webhook_id, None)
            return
        try:
            replay = Replay.decode(value)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("replay runner: undecodable replay at %s/%d: %s", partition, offset, exc)
            return
        job = self._jobs.get(webhook_id)
        if job is not None and job.alive and job.replay_id != replay.id:
            # Two API instances accepted a replay of one webhook at the same moment: the one that
            # runs goes on; the other is overwritten by its progress.
            log.warning(
                "replay runner: replay %s of webhook %s arrived while %s runs",
                replay.id,
                webhook_id,
                job.replay_id,
            )
        owned.latest[webhook_id] = replay

    def _start_due(self) -> None:
        if not self._webhooks.ready:  # a job must not take a webhook not loaded yet for a deleted one
            return
        for partition, owned in list(self._owned.items()):
            if not owned.caught_up:
                continue
            for webhook_id, replay in owned.latest.items():
                if replay.done:
                    continue
                with self._lock:
                    job = self._jobs.get(webhook_id)
                    if job is not None and job.replay_id == replay.id:
                        if job.alive or job.replay.done or time.monotonic() - job.ended_at < _RETRY_AFTER:
                            continue
                        # It failed: again, from the last state it stored (this thread may not have
                        # read that far back yet).
                        replay = job.replay
                    elif job is not None and job.alive:
                        continue
                    job = _Job(self, replay, partition)
                    self._jobs[webhook_id] = job
                job.start()

    def _stop_jobs(self, partitions: list[int]) -> None:
        with self._lock:
            doomed = [j for j in self._jobs.values() if j.partition in partitions]
        for job in doomed:
            job.stop.set()
        for job in doomed:
            job.join()
        with self._lock:
            for job in doomed:
                if self._jobs.get(job.webhook_id) is job:
                    del self._jobs[job.webhook_id]


class _Job:
    """One replay, run in a thread of its own once a slot is free."""

    def __init__(self, runner: ReplayRunner, replay: Replay, partition: int) -> None:
        self.runner = runner
        self.replay = replay
        self.replay_id = replay.id
        self.webhook_id = replay.webhook_id
        self.partition = partition
        self.stop = threading.Event()
        self.ended = False
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"replay-{replay.id[-8:]}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or (not self.ended and self._thread.ident is None)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        runner, metrics = self.runner, self.runner.metrics
        outcome = "stopped"
        try:
            while not self.stop.is_set():
                if runner._slots.acquire(timeout=0.2):
                    if metrics is not None:
                        metrics.replays_running.inc()
                    try:
                        outcome = self._replay()
                    finally:
                        runner._slots.release()
                        if metrics is not None:
                            metrics.replays_running.dec()
                    return
        except _Stopped:
            log.info(
                "replay %s of webhook %s stopped at %d events scanned",
                self.replay_id,
                self.webhook_id,
                self.replay.events_scanned,
            )
        except Exception:
            outcome = "failed"
            # A write the broker did not acknowledge, or a broken client: end this attempt; the
            # replay is still `running` on the topic, so it starts again from the stored position
            # when this partition is next assigned (or this runner restarts).
            log.exception(
                "replay %s of webhook %s failed; it resumes from its stored position later",
                self.replay_id,
                self.webhook_id,
            )
        finally:
            if metrics is not None:
                metrics.replays_ended.labels(outcome).inc()
            self.ended_at = time.monotonic()
            self.ended = True

    def _replay(self) -> str:
        """Run the replay to its end: ``done`` or ``canceled`` (raises :class:`_Stopped` when stopped)."""
        runner, settings, metrics = self.runner, self.runner._settings, self.runner.metrics
        producer = new_producer(settings, **{"client.id": "hookline-router-replay", "linger.ms": 20})
        consumer = new_consumer(
            settings,
            None,
            **{
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "client.id": "hookline-router-replay",
            },
        )
        failures: list[str] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        def write(replay: Replay) -> None:
            producer.produce(
                settings.topic(REPLAYS), key=replay.key, value=replay.encode(), on_delivery=delivered
            )
            flush()
            self.replay = replay

        def flush() -> None:
            left = producer.flush(60)
            if left or failures:
                raise RuntimeError(f"replay {self.replay_id}: not acknowledged ({left} left, {failures[:1]})")

        try:
            replay = self.replay
            pending = {(settings.topic(s.topic), s.partition): s for s in replay.spans if not s.finished}
            log.info(
                "replay %s of webhook %s: %d spans left, %d events scanned so far",
                replay.id,
                replay.webhook_id,
                len(pending),
                replay.events_scanned,
            )
            if pending:
                consumer.assign([TopicPartition(t, p, s.position) for (t, p), s in pending.items()])
            delivery_topic = settings.topic(DELIVERIES)
            wanted = set(replay.events)
            started, produced_total = time.monotonic(), 0
            while pending:
                hook = self._webhook()
                if hook is None or not hook.active:
                    reason = "webhook deleted" if hook is None else "webhook inactive"
                    ended = replay.finished("canceled", self._now(), reason)
                    if hook is None:
                        # Its replay goes with it: the compacted topic keeps only live webhooks' replays.
                        producer.produce(
                            settings.topic(REPLAYS), key=replay.key, value=None, on_delivery=delivered
                        )
                        flush()
                        self.replay = ended
                    else:
                        write(ended)
                    log.info("replay %s of webhook %s canceled: %s", replay.id, replay.webhook_id, reason)
                    return "canceled"
                positions: dict[tuple[str, int], int] = {}
                scanned = produced = 0
                batch_started = time.monotonic()
                while (
                    pending and time.monotonic() - batch_started < 1.0 and produced < runner._checkpoint_tasks
                ):
                    if self.stop.is_set():
                        break
                    for msg in consumer.consume(100, 0.2):
                        tp = (str(msg.topic()), int(msg.partition() or 0))
                        span = pending.get(tp)
                        if span is None:
                            continue
                        err = msg.error()
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                # At the partition's end, which is at or past the span's end.
                                positions[(span.topic, span.partition)] = span.end
                                self._drop(consumer, pending, tp)
                            else:
                                log.warning("replay %s: consume error %s", replay.id, err)
                            continue
                        offset = int(msg.offset() or 0)
                        if offset >= span.end:
                            positions[(span.topic, span.partition)] = span.end
                            self._drop(consumer, pending, tp)
                            continue
                        scanned += 1
                        positions[(span.topic, span.partition)] = offset + 1
                        if offset + 1 >= span.end:
                            self._drop(consumer, pending, tp)
                        for task in self._tasks(msg, hook, wanted):
                            producer.produce(
                                delivery_topic, key=task.key, value=task.encode(), on_delivery=delivered
                            )
                            produced += 1
                            produced_total += 1
                            self._pace(started, produced_total)
                    producer.poll(0)
                # Every task of the batch is acknowledged before the position behind it is stored.
                flush()
                if metrics is not None:
                    metrics.replay_events_scanned.inc(scanned)
                    metrics.replay_tasks.inc(produced)
                write(replay.advanced(positions, scanned, produced, self._now()))
                replay = self.replay
                if self.stop.is_set():
                    raise _Stopped
            write(replay.finished("done", self._now()))
            log.info(
                "replay %s of webhook %s done: %d events scanned, %d tasks",
                replay.id,
                replay.webhook_id,
                self.replay.events_scanned,
                self.replay.tasks_produced,
            )
            return "done"
        finally:
            consumer.close()
            producer.flush(10)

    def _webhook(self) -> Webhook | None:
        """The webhook as the router's view holds it; before a missing or inactive one ends the replay,
        the view catches up with the config topic (it may not have read the change that made it)."""
        webhooks = self.runner._webhooks
        hook = webhooks.get(self.webhook_id)
        if hook is None or not hook.active:
            while not webhooks.catch_up(5.0):
                if self.stop.wait(1.0):
                    raise _Stopped
            hook = webhooks.get(self.webhook_id)
        return hook

    def _tasks(self, msg: Any, hook: Webhook, wanted: set[str]) -> list[Any]:
        replay = self.replay
        _kind, ts = msg.timestamp()
        if ts < replay.from_ms or (replay.to_ms is not None and ts >= replay.to_ms):
            return []
        value = msg.value()
        if value is None:
            return []
        try:
            event = decode(value, "Event")
        except CodecError:
            return []  # the router dead-lettered it when it first read it
        if event["accountId"] != replay.account_id or event["type"] not in wanted:
            return []
        return tasks_for(event, [hook], int(self.runner._clock() * 1000), trigger="replay")

    @staticmethod
    def _drop(consumer: Consumer, pending: dict[tuple[str, int], Any], tp: tuple[str, int]) -> None:
        if pending.pop(tp, None) is not None:
            with contextlib.suppress(KafkaException):  # only stops the fetching early
                consumer.pause([TopicPartition(tp[0], tp[1])])

    def _pace(self, started: float, produced: int) -> None:
        """Keep this job at most ``rate`` tasks a second."""
        rate = self.runner.rate
        if rate <= 0:
            return
        ahead = produced / rate - (time.monotonic() - started)
        if ahead > 0:
            self.stop.wait(ahead)

    def _now(self) -> int:
        return int(self.runner._clock() * 1000)
