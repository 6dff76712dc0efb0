"""``python -m benchmarks.floor`` against the session broker: a Faust agent and a plain loop are
measured and reported. Speed is never judged here; only that every figure is there and sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SHORT = ("--kinds", "faust-relay,plain-noop", "--rates", "50", "--seconds", "2", "--idle-seconds", "1")


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_floor_measures_a_faust_agent_and_a_plain_loop_per_event(kafka_bootstrap: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.floor", "--bootstrap", kafka_bootstrap, *_SHORT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["kind"], r["rate"]) for r in rows] == [("faust-relay", 50.0), ("plain-noop", 50.0)], rows
    for row in rows:
        assert row["events"] == 100, row
        assert 0 < row["cpu_us_per_event"] < 1_000_000, row
        assert row["idle_cores"] >= 0, row
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks.floor", "--bootstrap", kafka_bootstrap, "--kinds", "faust-x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown kinds: faust-x" in bad.stderr
