"""The router role (faust-streaming): event topics ⋈ webhook configs -> delivery tasks.

Event records are read as raw bytes and decoded by our codec (Faust's typed topics drop bad
records silently, docs/architecture.md §9). Every failure inside the agent is caught and routed to the DLQ,
because an exception in a Faust agent acks the message and loses it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from hookline.clients import records_behind
from hookline.configview import ConfigView
from hookline.metrics import ConfigViewMetrics, RouterMetrics
from hookline.records import DeadLetters, Source
from hookline.settings import Settings
from hookline.topics import CONTACT_EVENTS, DELIVERIES, DLQ, SALE_EVENTS
from processors.router.replay import ReplayRunner
from processors.router.routing import tasks_for
from schemas.codec import CodecError, decode

__all__ = ["FAUST_OPTIONS", "Router"]

log = logging.getLogger("hookline.router")

#: The router's Faust settings besides its names and directories (``benchmarks.floor`` measures a bare
#: agent with the same ones).
FAUST_OPTIONS: dict[str, Any] = {
    "processing_guarantee": "at_least_once",
    "producer_acks": -1,
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 0.5,
    "broker_commit_interval": 0.5,
    "broker_rebalance_timeout": 20.0,
    "consumer_auto_offset_reset": "earliest",
    "stream_wait_empty": True,
    "web_enabled": False,
    "web_tables_enabled": False,
    "autodiscover": False,
    "store": "memory://",
    "topic_partitions": 1,
}


class Router:
    """Composition root of the router: the Faust app, the config view and the metrics."""

    def __init__(
        self, settings: Settings, registry: CollectorRegistry | None = None, *, replay_rate: float = 500.0
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = RouterMetrics(self.registry)
        self.view = ConfigView(
            settings, metrics=ConfigViewMetrics(self.registry), client_id="hookline-router-configs"
        )
        self.dead_letters = DeadLetters("router", settings.topic(DLQ), self.metrics.dead_lettered, log)
        # Replays of a webhook's events (issue 13): threads beside the Faust app, started by the command.
        self.replays = ReplayRunner(settings, self.view, rate=replay_rate, metrics=self.metrics)
        self.app = self._build_app()
        self.assigned = False

    def _build_app(self) -> faust.App:
        s = self.settings
        datadir = s.home / "faust" / s.topic("router")
        datadir.mkdir(parents=True, exist_ok=True)
        brokers = ";".join(f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(","))
        app = faust.App(
            s.topic("hookline-router"),
            broker=brokers,
            broker_client_id="hookline-router",
            env_prefix="HOOKLINE_FAUST_",
            datadir=str(datadir),
            **FAUST_OPTIONS,
        )
        events = app.topic(
            s.topic(CONTACT_EVENTS),
            s.topic(SALE_EVENTS),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )
        self.deliveries = app.topic(s.topic(DELIVERIES), key_serializer="raw", value_serializer="raw")
        self.dlq = app.topic(s.topic(DLQ), key_serializer="raw", value_serializer="raw")

        router = self

        @app.agent(events, name="route-events")
        async def route_events(stream: Any) -> None:
            if not await router.view.wait_ready_async(timeout=3600):
                raise RuntimeError("config view never became ready")
            async for event in stream.events():
                await router.handle(event.message)

        @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
        async def _report_lag() -> None:
            await router.report_lag()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stub wants `signal=`
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            router.assigned = True

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            router.assigned = False

        return app

    async def report_lag(self) -> None:
        """Set the consumer-lag gauge from the fetcher's high watermarks and our positions."""
        try:
            consumer = self.app.consumer
            marks = [(consumer.highwater(tp), await consumer.position(tp)) for tp in consumer.assignment()]
            self.metrics.consumer_lag.labels("router").set(records_behind(marks))
        except Exception:  # a metric must never take the router down
            log.debug("router: could not compute consumer lag", exc_info=True)

    def ready(self) -> bool:
        return self.view.ready and self.assigned

    async def handle(self, msg: Any) -> None:
        """Route one raw event record; never raise (a raised exception would lose the record)."""
        started = time.perf_counter()
        try:
            if msg.value is None:
                await self.dead_letter(msg, "tombstone", "event topics carry no tombstones")
                return
            try:
                event = decode(msg.value, "Event")
            except CodecError as exc:
                await self.dead_letter(msg, exc.reason, str(exc))
                return
            event_type = event["type"]
            self.metrics.events_consumed.labels(event_type).inc()
            # Config changes confirmed before the event was published must apply to it. When the broker
            # cannot say (a leader moving, a partition without quorum) the event is routed on the view as
            # it stands rather than held, and counted (docs/architecture.md §4).
            if msg.timestamp and not await self.view.catch_up_async(msg.timestamp * 1000):
                self.metrics.config_catch_up_failed.inc()
            tasks = tasks_for(
                event, self.view.subscribers(event["accountId"], event_type), int(time.time() * 1000)
            )
            if not tasks:
                self.metrics.events_unmatched.labels(event_type).inc()
                return
            for task in tasks:
                await self.deliveries.send(key=task.key, value=task.encode())
            self.metrics.tasks_routed.labels(event_type).inc(len(tasks))
        except Exception as exc:  # last line: keep the record, keep the agent
            log.exception("router: failed to route record at %s/%s:%s", msg.topic, msg.partition, msg.offset)
            await self.dead_letter(msg, "internal_error", type(exc).__name__)
        finally:
            self.metrics.route_seconds.observe(time.perf_counter() - started)

    async def dead_letter(self, msg: Any, reason: str, detail: str) -> None:
        source = Source(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        _dlq, key, value = self.dead_letters.letter(source, reason, detail)  # self.dlq is that topic
        await self.dlq.send(key=key, value=value)
