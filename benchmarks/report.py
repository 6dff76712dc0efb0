"""Write a bench's results: ``results.json``, ``results.md`` (targets, pass/fail, figures), PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

__all__ = ["write_all"]

PLOTS = ("latency.png", "throughput.png")


#: The CPU table's columns: the pipeline's processes, then the loopback sink (not counted in totals).
_TABLE_PROCESSES = ("broker", "router", "worker", "logsink", "health", "api", "sink")


def write_all(
    out: Path, results: dict[str, Any], series: dict[str, Any], latencies: dict[str, list[float]]
) -> list[Path]:
    """Write every output file into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    )
    plots = _plots(out, series, latencies)
    cpu_plot = _cpu_plot(out, results)
    if cpu_plot is not None:
        plots.append(cpu_plot)
    results_md = out / "results.md"
    results_md.write_text(markdown(results, [p.name for p in plots]))
    return [*written, results_md, *plots]


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "B":
        return f"{value / 1024:.1f} KiB"
    if unit == "x":
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


_UNITS = {
    "e2e_ratio_vs_aiohttp": "x",
    "latency_p99_s_at_50pct": "s",
    "latency_p99_s_at_80pct": "s",
    "bytes_per_inflight_delivery": "B",
    "retention_c512_vs_c16": "x",
    "router_ratio_vs_e2e": "x",
    "retention_10000_vs_10_webhooks": "x",
}

_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("raw_aiohttp_rps", "raw aiohttp POST loop (req/s)", ""),
    ("raw_httpx_rps", "raw httpx POST loop (req/s)", ""),
    ("raw_consume_msgs_per_s", "raw confluent-kafka batched consume (msgs/s)", ""),
    ("ping_p50_s", "produce → consume ping, p50", "s"),
    ("ping_p99_s", "produce → consume ping, p99", "s"),
    ("e2e_deliveries_per_s", "pipeline max, 1 webhook per event (deliveries/s)", ""),
    ("e2e_fanout10_deliveries_per_s", "pipeline max, fan-out to 10 (deliveries/s)", ""),
    ("e2e_ratio_vs_aiohttp", "pipeline max ÷ raw aiohttp", "x"),
    ("e2e_ratio_vs_httpx", "pipeline max ÷ raw httpx", "x"),
    ("latency_p50_s_at_50pct", "latency p50 at 50 %", "s"),
    ("latency_p99_s_at_50pct", "latency p99 at 50 %", "s"),
    ("latency_p999_s_at_50pct", "latency p99.9 at 50 %", "s"),
    ("latency_p50_s_at_80pct", "latency p50 at 80 %", "s"),
    ("latency_p99_s_at_80pct", "latency p99 at 80 %", "s"),
    ("latency_p999_s_at_80pct", "latency p99.9 at 80 %", "s"),
    ("bytes_per_inflight_delivery_1000", "worker memory per in-flight delivery, 1,000 held", "B"),
    ("bytes_per_inflight_delivery_10000", "worker memory per in-flight delivery, 10,000 held", "B"),
    ("throughput_c16", "max deliveries/s, 16 connections", ""),
    ("throughput_c512", "max deliveries/s, 512 connections", ""),
    ("retention_c512_vs_c16", "512 ÷ 16 connections", "x"),
    ("throughput_10_webhooks", "max deliveries/s, 10 webhooks configured", ""),
    ("throughput_10000_webhooks", "max deliveries/s, 10,000 webhooks configured", ""),
    ("retention_10000_vs_10_webhooks", "10,000 ÷ 10 webhooks", "x"),
    ("router_events_per_s", "router alone (events/s)", ""),
    ("relay_events_per_s", "plain consume → produce loop (events/s)", ""),
    ("router_ratio_vs_relay", "router ÷ plain loop", "x"),
    ("router_ratio_vs_e2e", "router ÷ pipeline max", "x"),
    ("ordering_unordered_alone_per_s", "unordered webhooks saturated alone (deliveries/s)", ""),
    ("ordering_unordered_beside_ordered_per_s", "the same beside an ordered webhook (deliveries/s)", ""),
    ("ordering_unordered_ratio", "unordered beside ordered ÷ alone", "x"),
    ("ordering_ordered_per_s", "the ordered webhook meanwhile (deliveries/s)", ""),
    ("ordering_total_ratio", "unordered + ordered ÷ unordered alone", "x"),
    ("ordering_unordered_beside_unordered_per_s", "unordered beside an unordered control (deliveries/s)", ""),
    ("ordering_unordered_ratio_vs_control", "unordered beside ordered ÷ beside the control", "x"),
    ("ordering_worker_cpu_us_per_delivery_alone", "worker CPU per delivery, unordered alone (µs)", ""),
    (
        "ordering_worker_cpu_us_per_delivery_beside_ordered",
        "worker CPU per delivery, beside ordered (µs)",
        "",
    ),
    ("ordering_unordered_alone_vs_aiohttp", "unordered alone ÷ raw aiohttp", "x"),
    ("ordering_in_order", "every contact's ordered deliveries in publish order", ""),
    ("wakeup_round_trip_us", "one thread-to-thread round trip on this machine (µs of CPU)", ""),
    ("ledger_balanced", "every run's ledger balances", ""),
)


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    env = results.get("environment", {})
    lines = [
        f"# hookline bench — {results.get('mode')} mode",
        "",
        f"{env.get('cpus')} CPUs ({env.get('cpu_model')}), Python {env.get('python')}, "
        f"Kafka {env.get('kafka_broker')}, commit `{(env.get('git_commit') or '')[:10]}`"
        + (" (with uncommitted changes)" if env.get("git_dirty_files") else "")
        + f"; {results.get('duration_s')} s. Broker, roles, sink and generator share the machine; "
        "ratios compare figures measured in the same run.",
        "",
    ]
    if not results.get("ledger_balanced"):
        lines += [f"**VOID: the ledger of these runs does not balance: {results.get('void_runs')}**", ""]
    lines += ["## Targets (issue 7)", "", "| target | measured | bound | |", "|---|---|---|---|"]
    for key, t in results.get("targets", {}).items():
        verdict = "n/a" if t["pass"] is None else ("pass" if t["pass"] else "**FAIL**")
        lines.append(
            f"| {t['meaning']} | {_fmt(t['value'], _UNITS.get(key, ''))} | {t['target']} | {verdict} |"
        )
    lines += ["", "## Figures", "", "| figure | value |", "|---|---|"]
    for key, label, unit in _FIGURES:
        if key in results:
            lines.append(f"| {label} | {_fmt(results[key], unit)} |")
    lines += _ordering_table(results)
    lines += ["", "## CPU per delivery (µs, in each run's window)", ""]
    lines += [
        "| run | offered/s | delivered/s | p99 | broker | router | worker | log sink | health | api "
        "| loopback sink | generator/event |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in results.get("runs", {}).items():
        if "cpu_us_per_delivery" not in run:
            continue
        c = run["cpu_us_per_delivery"]
        cells = [
            name,
            _fmt(run["offered_deliveries_per_s"]),
            _fmt(run["throughput_deliveries_per_s"]),
            _fmt(run["latency_s"]["p99"], "s"),
            *(_fmt(c.get(role)) for role in _TABLE_PROCESSES),
            _fmt(run.get("generator_cpu_us_per_event")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _threads_table(results)
    lines += ["", "## Ledgers (published deliveries = delivered + cut off + missing)", ""]
    lines += ["| run | events | owed | delivered | cut off | missing | duplicates | unexpected | balanced |"]
    lines += ["|---|---|---|---|---|---|---|---|---|"]
    for name, run in results.get("runs", {}).items():
        led = run.get("ledger")
        if led:
            lines.append(
                f"| {name} | {led['events_published']} | {led['expected_deliveries']} | {led['delivered']} "
                f"| {led['cut_off']} | {led['missing']} | {led['duplicates']} | {led['unexpected']} "
                f"| {_fmt(led['balanced'])} |"
            )
    if results.get("profiles"):
        lines += ["", "## Where the CPU goes (py-spy, self time by area, under overload)", ""]
        for role, shares in results["profiles"].items():
            top = ", ".join(f"{area} {share * 100:.0f} %" for area, share in list(shares.items())[:8])
            lines.append(f"- **{role}** ([profile-{role}.txt](profile-{role}.txt)): {top}")
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _threads_table(results: dict[str, Any]) -> list[str]:
    """Which threads of each process used its CPU, in the idle and fixed-rate runs (cores)."""
    runs = [
        (name, run)
        for name, run in results.get("runs", {}).items()
        if run.get("cpu_threads_s") and (name == "idle" or name.startswith("cpu_at_"))
    ]
    if not runs:
        return []
    lines = [
        "",
        "## Threads (cores used by each process's threads, by thread name; `python` is every Python thread)",
        "",
        "| run | process | threads |",
        "|---|---|---|",
    ]
    for name, run in runs:
        window = max(1e-3, run.get("cpu_window_s") or 0.0)
        for process, kinds in run["cpu_threads_s"].items():
            if process not in _TABLE_PROCESSES or not kinds:
                continue
            top = ", ".join(f"`{kind}` {secs / window:.3f}" for kind, secs in list(kinds.items())[:6])
            lines.append(f"| {name} | {process} | {top} |")
    return lines


def _ordering_table(results: dict[str, Any]) -> list[str]:
    """``--only ordering``: each saturated run's deliveries/s by kind of webhook (issue 12)."""
    runs = results.get("ordering_runs")
    if not runs:
        return []
    lines = ["", "## Unordered webhooks beside an ordered one (deliveries/s in each saturated window)", ""]
    lines += [
        "| run | kind | saturated | unordered | ordered | control | worker µs/delivery "
        "| ordered arrivals | out of order | repeated |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        order = r["ordered_order"]
        cells = [r["run"], r["kind"], _fmt(r["saturated"]), _fmt(r["unordered"]), _fmt(r["ordered"])]
        cells += [_fmt(r["control"]), _fmt(r["worker_cpu_us_per_delivery"]), str(order["arrivals"])]
        cells += [str(order["out_of_order"]), str(order["repeated_right_after_itself"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cpu_plot(out: Path, results: dict[str, Any]) -> Path | None:
    """CPU per delivery against the offered rate, stacked by process (issue 14)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    labels = sorted(
        (int(k.removeprefix("cpu_us_per_delivery_at_").removesuffix("_per_process")), k)
        for k in results
        if k.startswith("cpu_us_per_delivery_at_")
        and k.endswith("_per_process")
        and k.split("_")[5].isdigit()
    )
    points = [(str(rate), results[k]) for rate, k in labels]
    if "cpu_us_per_delivery_at_max_per_process" in results:
        sat = results.get("e2e_deliveries_per_s")
        points.append(
            (f"max ({sat:.0f}/s)" if sat else "max", results["cpu_us_per_delivery_at_max_per_process"])
        )
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = [0.0] * len(points)
    for proc in ("broker", "router", "worker", "logsink", "health", "api"):
        heights = [float(p[1].get(proc) or 0.0) / 1000 for p in points]
        ax.bar([p[0] for p in points], heights, bottom=bottom, label=proc)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel("offered events/s (one webhook per event)")
    ax.set_ylabel("CPU per delivery (ms)")
    ax.set_title("CPU per delivery by process and rate")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "cpu.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plots(out: Path, series: dict[str, Any], latencies: dict[str, list[float]]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in ("latency_50pct", "latency_80pct"):
        values = sorted(latencies.get(name, []))
        if not values:
            continue
        n = len(values)
        ax.plot([v * 1000 for v in values], [(i + 1) / n for i in range(n)], label=name.replace("_", " at "))
    ax.set_xscale("log")
    ax.set_xlabel("event-to-delivery latency (ms, log scale)")
    ax.set_ylabel("fraction of deliveries")
    ax.axvline(50, color="grey", linestyle=":", linewidth=1)
    ax.axvline(200, color="grey", linestyle="--", linewidth=1)
    ax.set_title("Latency distribution (CDF); dotted 50 ms, dashed 200 ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    paths.append(path)

    names = [n for n in series if series[n]["points"]]
    if names:
        fig, axes = plt.subplots(
            len(names), 1, figsize=(8, 1.8 * len(names) + 0.6), sharex=False, squeeze=False
        )
        for ax, name in zip(axes[:, 0], names, strict=True):
            s = series[name]
            xs = [p[0] for p in s["points"]]
            ys = [p[1] for p in s["points"]]
            ax.plot(xs, ys, label="delivered/s")
            ax.axhline(s["offered"], color="grey", linestyle="--", linewidth=1, label="offered/s")
            ax.axvline(s["window_end_s"], color="red", linestyle=":", linewidth=1, label="window end")
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel("seconds since the first scheduled event")
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
