"""``hookline bench``: throughput, latency and memory of the pipeline beside raw baselines (issue 7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter runs: a few minutes in all")
    mode.add_argument("--smoke", action="store_true", help="tiny runs that only prove the harness works")
    p.add_argument("--out", type=Path, required=True, help="directory for results.json, results.md, plots")
    p.add_argument("--bootstrap", help="use this broker instead of starting one in a temporary home")
    p.add_argument("--log-level", default="INFO", help="HOOKLINE_LOG_LEVEL of the roles (default INFO)")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of worker and router")
    p.add_argument("--keep", action="store_true", help="keep logs, arrivals and bench topics")
    p.add_argument("--broker-pid", type=int, help="pid of the --bootstrap broker, to count its CPU too")
    p.add_argument(
        "--broker-requests",
        action="store_true",
        help="log every broker request (costs broker CPU) and report requests/s per client in the CPU runs",
    )
    p.add_argument(
        "--only",
        choices=["cpu", "curve", "ordering"],
        help="cpu: only the baselines and the main pipeline's CPU curve, maximum and latency runs; "
        "curve: only the idle and fixed-rate CPU runs (and their profile), no baselines; "
        "ordering: only the baselines and unordered webhooks saturated alone and beside an ordered one",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from benchmarks.harness import PLANS, Bench, say
    from benchmarks.processes import install_cleanup, raise_nofile
    from benchmarks.report import write_all

    raise_nofile()
    install_cleanup()
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    bench = Bench(
        plan,
        args.out,
        bootstrap=args.bootstrap,
        log_level=args.log_level,
        profile=not args.no_profile,
        keep=args.keep,
        only=args.only,
        broker_requests=args.broker_requests,
        broker_pid=args.broker_pid,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    say(f"hookline bench, {plan.name} mode, results in {args.out}")
    results = bench.run()
    paths = write_all(args.out, results, bench.series, bench.latencies)
    for path in paths:
        say(f"wrote {path}")
    met, total = results["targets_met"], results["targets_total"]
    say(
        f"{met}/{total} targets met; ledger "
        + ("balanced" if results["ledger_balanced"] else "DOES NOT BALANCE")
    )
    if results.get("ordering_in_order") is False:
        say("ordering: an ordered webhook's deliveries were NOT in per-contact order (or none arrived)")
    print((args.out / "results.md").read_text(), file=sys.stdout)
    return 0 if results["ledger_balanced"] and results.get("ordering_in_order") is not False else 1
