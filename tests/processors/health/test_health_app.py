"""The health processor's Faust app: its consumer waits for results instead of fetching per result."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hookline.settings import load_settings
from processors.health.app import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, HealthApp


def test_its_consumer_lets_the_broker_gather_results(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path, kafka_bootstrap="127.0.0.1:1")
    health = HealthApp(settings)

    async def build() -> tuple[int, int]:
        consumer = health.app.consumer  # the Faust consumer; its thread builds the aiokafka one
        worker = consumer._thread._create_worker_consumer(health.app.transport)
        try:
            return worker._fetch_min_bytes, worker._fetch_max_wait_ms
        finally:
            await worker.stop()

    assert asyncio.run(build()) == (FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS) == (1 << 20, 500)
