"""The README's run command: `hookline up` brings the pipeline up and the demo deliveries arrive verified."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hookline.settings import Settings
from tests.support import REPO, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_up_runs_the_pipeline_and_prints_verified_demo_deliveries(settings: Settings, tmp_path: Path):
    env = {
        **os.environ,
        "HOOKLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "HOOKLINE_HOME": str(tmp_path / "home"),
        "HOOKLINE_API_PORT": str(free_port()),
        "HOOKLINE_ROUTER_METRICS_PORT": str(free_port()),
        "HOOKLINE_DELIVER_METRICS_PORT": str(free_port()),
        "HOOKLINE_LOGSINK_METRICS_PORT": str(free_port()),
    }
    env.pop("HOOKLINE_SECRET_KEY", None)
    env.pop("HOOKLINE_API_KEYS", None)
    args = [sys.executable, "-m", "hookline.cli", "up", "--exit-after-demo", "--events", "12",
            "--receiver-port", str(free_port()), "--timeout", "90"]
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    verified = set(re.findall(r"VERIFIED \S+\s+(msg_\S+) \d+ bytes, both signatures valid", out))
    assert len(verified) >= 12, out[-4000:]
    assert "all 12 demo deliveries arrived with valid signatures" in out
    assert "REJECTED" not in out
    # The demo credentials stay on disk only, readable by the owner alone.
    up_env = tmp_path / "home" / "up.env"
    assert up_env.stat().st_mode & 0o077 == 0
    # Nothing secret in the output apart from the demo API key the banner shows on purpose.
    secrets = dict(line.split("=", 1) for line in up_env.read_text().splitlines())
    assert secrets["HOOKLINE_RECEIVER_SECRET"] not in out
    assert secrets["HOOKLINE_SECRET_KEY"] not in out
