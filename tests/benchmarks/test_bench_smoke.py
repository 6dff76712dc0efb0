"""``hookline bench --smoke`` against the session broker: the harness works, its output is complete.

Speed is never judged here (the machine is shared and the runs are tiny); only that every figure
the issue asks for is present, every run's ledger balances, and the table and plots are written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

KEYS = (
    "raw_aiohttp_rps",
    "raw_httpx_rps",
    "raw_consume_msgs_per_s",
    "e2e_deliveries_per_s",
    "e2e_ratio_vs_aiohttp",
    "latency_p50_s_at_50pct",
    "latency_p99_s_at_50pct",
    "latency_p99_s_at_80pct",
    "bytes_per_inflight_delivery",
    "retention_c512_vs_c16",
    "router_events_per_s",
    "ledger_balanced",
    "cpu_us_per_delivery_at_20",
    "cpu_us_per_delivery_at_100",
    "cpu_us_per_delivery_at_max",
    "idle_cores",
)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_smoke_mode_writes_every_figure_a_balanced_ledger_and_the_plots(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hookline.cli",
            "bench",
            "--smoke",
            "--out",
            str(out),
            "--bootstrap",
            kafka_bootstrap,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _stdout, stderr = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the bench then stops every process it started before exiting.
        proc.terminate()
        _stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"hookline bench --smoke took more than 200 s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    missing = [k for k in KEYS if results.get(k) is None]
    assert not missing, f"results.json lacks {missing}"
    assert results["ledger_balanced"] is True, results["void_runs"]
    for name, run in results["runs"].items():
        ledger = run.get("ledger")
        if ledger is None:
            continue
        assert ledger["balanced"], (name, ledger)
        assert ledger["missing"] == 0 and ledger["unexpected"] == 0, (name, ledger)
        assert ledger["delivered"] + ledger["cut_off"] == ledger["expected_deliveries"], (name, ledger)
    assert results["sink"]["bad_signature"] == 0
    assert results["sink"]["standard_checked"] > 0 and results["sink"]["standard_bad"] == 0
    assert results["environment"]["versions"]["confluent-kafka"]
    assert set(results["targets"]) >= {"e2e_ratio_vs_aiohttp", "bytes_per_inflight_delivery"}
    table = (out / "results.md").read_text()
    assert "| target |" in table and "latency.png" in table
    # CPU per delivery per process, every role of the pipeline counted (the log sink and the API too).
    for rate in ("20", "100", "max"):
        per = results[f"cpu_us_per_delivery_at_{rate}_per_process"]
        assert set(per) == {"broker", "router", "worker", "logsink", "health", "api"}, per
        # The broker's CPU counts when the bench started it; the session broker here is not its own.
        external = results["environment"]["bootstrap"] == "external"
        assert all(per[p] is not None for p in per if not (external and p == "broker")), (rate, per)
        total = sum(v for v in per.values() if v is not None)
        assert results[f"cpu_us_per_delivery_at_{rate}"] == pytest.approx(total, abs=1), rate
    roles = {"router", "worker", "logsink", "health", "api"}
    assert set(results["idle_cores_per_process"]) == roles | (set() if external else {"broker"})
    for plot in ("latency.png", "throughput.png", "cpu.png"):
        data = (out / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, plot
    # Nothing the bench started is left running: no process carries its tag (argv or environment).
    tag = results["environment"]["bench_tag"].encode()
    assert not _processes_with(tag)


def _processes_with(tag: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if tag in text:
            found.append(int(entry.name))
    return found
