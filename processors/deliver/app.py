"""The delivery role: composition root of the worker (``hookline deliver``).

Wires the config view, the secret sealer, the HTTP sender, the Kafka sink and consumer, the
concurrency limits and the metrics into one :class:`~processors.deliver.worker.Worker`.
"""

from __future__ import annotations

import asyncio
import logging
import random

from prometheus_client import CollectorRegistry

from hookline.addresses import AddressPolicy
from hookline.clients import consumer_config, new_producer
from hookline.configview import ConfigView
from hookline.metrics import DeliveryMetrics
from hookline.sealing import Sealer
from hookline.settings import Settings, SettingsError
from hookline.topics import CONFIG, DELIVERIES, DLQ, LANES, RESULTS, retry_topic
from processors.deliver.breaker import Breakers
from processors.deliver.handler import (
    RATE_WAIT_MAX,
    DeliveryTopics,
    SignerCache,
    TaskHandler,
    webhook_backlog,
)
from processors.deliver.lanes import Lanes, LaneView
from processors.deliver.limits import ConcurrencyLimits
from processors.deliver.ratelimit import RateLimits
from processors.deliver.sender import HttpSender
from processors.deliver.sink import KafkaSink
from processors.deliver.worker import Worker

__all__ = ["GROUP", "Deliver"]

log = logging.getLogger("hookline.deliver")

#: Consumer group of the delivery workers (before the topic prefix).
GROUP = "hookline-deliver"


def _check(settings: Settings) -> None:
    for name in ("deliver_concurrency", "deliver_webhook_concurrency", "deliver_max_buffered"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"HOOKLINE_{name.upper()}: must be at least 1")
    for name in ("connect_timeout", "attempt_timeout", "deliver_drain_timeout"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"HOOKLINE_{name.upper()}: must be positive")
    if not settings.retry_schedule:
        raise SettingsError("HOOKLINE_RETRY_SCHEDULE: needs at least one delay")


class Deliver:
    """The delivery worker of one process: build it, serve its probes, ``await run(stop)``."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        _check(settings)
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = DeliveryMetrics(self.registry, attempt_timeout=settings.attempt_timeout)
        self.sealer = Sealer.from_settings(settings)  # fails now, not at the first delivery, without a key
        self.view = ConfigView(settings, client_id="hookline-deliver-configs")
        self.lanes = LaneView(settings)  # ordered webhooks' lanes (processors/deliver/lanes.py)
        self.metrics.lanes_blocked.set_function(lambda: float(self.lanes.blocked()))
        self.worker: Worker | None = None

    def topics(self) -> list[str]:
        """Every topic the worker reads: new tasks and each retry tier."""
        s = self.settings
        return [s.topic(DELIVERIES), *(s.topic(retry_topic(d)) for d in sorted(set(s.retry_schedule)))]

    def ready(self) -> bool:
        return self.view.ready and self.lanes.ready and self.worker is not None and self.worker.joined

    def healthy(self) -> bool:
        views = self.view.error is None and self.lanes.error is None
        return views and (self.worker is None or self.worker.fatal is None)

    def _breakers(self, s: Settings) -> Breakers | None:
        if not s.breaker_failures:
            return None
        breakers = Breakers(s.breaker_failures, s.breaker_probe_interval, probe_timeout=s.attempt_timeout + 5)
        self.metrics.breakers_open.set_function(lambda: float(breakers.open_count))
        return breakers

    def _rates(self, backlog: int) -> RateLimits:
        # A webhook's tasks wait for its rate limit in memory up to its share of the buffer.
        rates = RateLimits(share=backlog, max_wait=RATE_WAIT_MAX)
        self.metrics.rate_limited_webhooks.set_function(lambda: float(rates.throttled()))
        return rates

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.view.start()
        self.lanes.start()
        try:
            for view, what in ((self.view, "config"), (self.lanes, "lane")):
                while not await view.wait_ready_async(timeout=5.0):
                    if stop.is_set():
                        return
                    if view.error is not None:
                        raise RuntimeError(f"the {what} view failed") from view.error
                    log.info("waiting for the %s view to catch up (%d records behind)", what, view.lag())
            await self._run(s, stop)
        finally:
            self.lanes.stop()
            self.view.stop()

    async def _run(self, s: Settings, stop: asyncio.Event) -> None:
        # Results, retries and dead letters are off the delivery path (the receiver already has the
        # request): a 20 ms linger gathers them into fewer produce requests at everyday rates.
        sink = KafkaSink(new_producer(s, **{"client.id": "hookline-deliver", "linger.ms": 20})).start()
        topics = DeliveryTopics(
            results=s.topic(RESULTS),
            dlq=s.topic(DLQ),
            config=s.topic(CONFIG),
            retry={d: s.topic(retry_topic(d)) for d in set(s.retry_schedule)},
        )
        overrides: dict[str, object] = {
            # Stored offsets are committed every 100 ms: after a crash, about that much work repeats
            # (3 SIGKILLs at 100 deliveries/s re-sent 0.83-1.29 % with 250 ms; README: Reliability).
            # librdkafka sends no commit while nothing new was stored, so an idle worker pays nothing.
            "auto.commit.interval.ms": 100,
            # A resumed partition is fetched with the next fetch request, after the current long
            # poll returns: keep that wait short, since partitions pause and resume all the time.
            "fetch.wait.max.ms": 100,
            "client.id": "hookline-deliver",
        }
        if s.deliver_instance_id:
            overrides["group.instance.id"] = s.deliver_instance_id
        try:
            async with HttpSender(
                policy=AddressPolicy(s.allow_networks),
                connect_timeout=s.connect_timeout,
                attempt_timeout=s.attempt_timeout,
            ) as sender:
                backlog = webhook_backlog(s.deliver_webhook_concurrency, s.deliver_max_buffered)
                handler = TaskHandler(
                    configs=self.view,
                    signers=SignerCache(self.sealer),
                    sender=sender,
                    sink=sink,
                    limits=ConcurrencyLimits(s.deliver_concurrency, s.deliver_webhook_concurrency),
                    metrics=self.metrics,
                    topics=topics,
                    schedule=s.retry_schedule,
                    jitter=s.retry_jitter,
                    rng=random.Random(),
                    backlog=backlog,
                    breakers=self._breakers(s),
                    rates=self._rates(backlog),
                    lanes=Lanes(
                        self.lanes,
                        sink,
                        lanes_topic=s.topic(LANES),
                        deliveries_topic=s.topic(DELIVERIES),
                        metrics=self.metrics,
                    ),
                )
                self.worker = Worker(
                    consumer_config(s, GROUP, **overrides),
                    self.topics(),
                    handler,
                    max_buffered=s.deliver_max_buffered,
                    drain_timeout=s.deliver_drain_timeout,
                    metrics=self.metrics,
                )
                await self.worker.run(stop)
        finally:
            await sink.close()
