"""The bench's per-thread CPU sampler and its wake-up figure, on real processes."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.processes import ThreadSample, cpu_seconds, thread_cpu_seconds, wakeup_round_trip_us

# A child whose second thread burns CPU until stdin closes; the main thread only waits.
_BURNER = """
import sys, threading
def burn():
    while True:
        sum(range(10_000))
threading.Thread(target=burn, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def test_thread_sample_finds_the_busy_thread_and_adds_up_to_the_process() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            pids = {"burner": child.pid, "gone": None}
            before, total_before = ThreadSample.take(pids), cpu_seconds(child.pid)
            threads = thread_cpu_seconds(child.pid)
            assert threads is not None and len(threads) == 2, threads
            while (cpu_seconds(child.pid) or 0.0) - (total_before or 0.0) < 0.5:
                pass  # the burner runs on another CPU, or shares this one
            after, total_after = ThreadSample.take(pids), cpu_seconds(child.pid)
            spent = after.since(before)
        finally:
            child.kill()
            child.wait()
    assert set(spent) == {"burner"}  # a process without a pid is left out
    # Both threads carry the executable's name (Python 3.11 names no thread), digits as "*".
    [(kind, seconds)] = spent["burner"].items()
    assert kind in ("python", "python*"), kind
    assert total_before is not None and total_after is not None
    assert seconds >= 0.45
    assert abs(seconds - (total_after - total_before)) <= 0.05
    assert thread_cpu_seconds(child.pid) is None  # gone


def test_a_thread_round_trip_costs_a_positive_number_of_microseconds() -> None:
    us = wakeup_round_trip_us(rounds=500)
    assert 0 < us < 100_000
