"""Kafka client adapters: waiting for a broker quietly, consumer lag from (high watermark, position) pairs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hookline.clients import records_behind, wait_for_broker
from hookline.settings import Settings
from tests.support import REPO, free_port, scaled

_WAIT = """
import sys
from hookline.clients import BrokerUnavailable, wait_for_broker
from hookline.settings import load_settings
try:
    wait_for_broker(load_settings({}, kafka_bootstrap=sys.argv[1]), timeout=2.0)
except BrokerUnavailable as exc:
    print("unavailable:", exc)
"""


def test_waiting_for_an_absent_broker_prints_no_client_noise() -> None:
    """No librdkafka client exists while nothing listens: no "Connection refused" lines on the screen."""
    bootstrap = f"127.0.0.1:{free_port()}"
    out = subprocess.run([sys.executable, "-c", _WAIT, bootstrap], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"unavailable: Kafka at {bootstrap} did not answer within 2s")
    assert out.stderr == ""


@pytest.mark.kafka
def test_waiting_for_a_running_broker_returns(settings: Settings) -> None:
    wait_for_broker(settings, timeout=scaled(60))


def test_records_behind_sums_known_partitions_only() -> None:
    assert records_behind([(10, 4), (7, 7), (5, 9)]) == 6  # a position past the mark counts 0
    assert records_behind([(-1, 3), (8, -1001), (None, 2), (4, None)]) == 0  # not known yet
    assert records_behind([]) == 0
