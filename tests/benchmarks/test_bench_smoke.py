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
from typing import Any

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
    "wakeup_round_trip_us",
)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_smoke_mode_writes_every_figure_a_balanced_ledger_and_the_plots(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    results = _smoke(kafka_bootstrap, tmp_path, [], KEYS, timeout=200)
    out = tmp_path / "bench"
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
    # Each process's CPU by thread name: the Python roles' own threads and librdkafka's beside them.
    assert results["wakeup_round_trip_us"] > 0
    worker_kinds: set[str] = set()
    for run in ("idle", "cpu_at_20", "cpu_at_100"):
        threads = results["runs"][run]["cpu_threads_s"]
        assert set(threads) >= roles, (run, threads)
        worker_kinds |= set(threads["worker"])  # a thread that used less than a clock tick is left out
    assert any(kind.startswith("rdk:") for kind in worker_kinds), worker_kinds
    assert "## Threads" in table and "`python" in table
    for plot in ("latency.png", "throughput.png", "cpu.png"):
        data = (out / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, plot
    # Nothing the bench started is left running: no process carries its tag (argv or environment).
    tag = results["environment"]["bench_tag"].encode()
    assert not _processes_with(tag)


ORDERING_KEYS = (
    "raw_aiohttp_rps",
    "ordering_unordered_alone_per_s",
    "ordering_unordered_beside_ordered_per_s",
    "ordering_unordered_ratio",
    "ordering_ordered_per_s",
    "ordering_unordered_beside_unordered_per_s",
    "ordering_worker_cpu_us_per_delivery_alone",
    "ordering_worker_cpu_us_per_delivery_beside_ordered",
    "ordering_unordered_alone_vs_aiohttp",
)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_smoke_ordering_mode_measures_unordered_beside_ordered_in_order_and_balanced(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--only ordering`` (issue 12): alone / beside ordered / beside the control alternate twice."""
    results = _smoke(kafka_bootstrap, tmp_path, ["--only", "ordering"], ORDERING_KEYS, timeout=120)
    kinds = [r["kind"] for r in results["ordering_runs"]]
    assert kinds == ["alone", "beside_ordered", "beside_unordered"] * 2, kinds
    assert results["ordering_in_order"] is True and results["ordering_out_of_order"] == 0
    for r in results["ordering_runs"]:
        arrived = r["ordered_order"]["arrivals"]
        assert (arrived > 0) == (r["kind"] == "beside_ordered"), r
        if arrived:  # each of the 20 contacts got several messages, so the order was put to the test
            assert r["ordered_order"]["contacts"] == 20 and r["ordered_order"]["most_per_contact"] >= 3, r
    assert "| unordered beside ordered ÷ alone |" in (tmp_path / "bench" / "results.md").read_text()
    assert not _processes_with(results["environment"]["bench_tag"].encode())


def _smoke(
    kafka_bootstrap: str, tmp_path: Path, extra: list[str], keys: tuple[str, ...], *, timeout: float
) -> dict[str, Any]:
    """Run ``hookline bench --smoke`` (plus ``extra``) into ``tmp_path/bench``; check its keys, that every
    ledger balances and that the sink found no bad signature."""
    out = tmp_path / "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    argv = [sys.executable, "-m", "hookline.cli", "bench", "--smoke", "--out", str(out)]
    proc = subprocess.Popen(
        [*argv, "--bootstrap", kafka_bootstrap, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the bench then stops every process it started before exiting.
        proc.terminate()
        _stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(
            f"hookline bench --smoke {' '.join(extra)} took more than {timeout:g} s:\n{stderr[-4000:]}"
        )
    assert proc.returncode == 0, stderr[-4000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    missing = [k for k in keys if results.get(k) is None]
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
    return results


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
