"""The benchmark run: baselines, pipeline scenarios, ledgers, figures — in one process tree.

:class:`Bench` starts what it needs (a broker in a temporary home unless ``bootstrap`` is given,
the loopback sink, the roles of each pipeline under test), runs every scenario of its
:class:`Plan` one after the other (so they do not compete for the machine), and returns the
results as one JSON-ready dict. Every loop is bounded in time; every child process is stopped at
the end, on error and on Ctrl-C (:mod:`benchmarks.processes`).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.ledger import Arrival, percentile, read_arrivals, settle, throughput_series
from benchmarks.pipeline import Pipeline, metric
from benchmarks.processes import (
    REPO,
    Child,
    CpuSample,
    ThreadSample,
    http_get,
    rss_bytes,
    wait_for,
    wakeup_round_trip_us,
)
from benchmarks.profiles import PySpy, py_spy, summarize

__all__ = ["PLANS", "Bench", "Plan"]

_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one mode."""

    name: str
    raw_seconds: float  # each raw HTTP loop
    raw_concurrency: int
    consume_count: int  # raw consume loop
    ping_count: int
    load_seconds: float  # each overload (maximum throughput) run
    latency_seconds: float  # each fixed-rate latency run
    warmup_events: int
    single_accounts: int  # accounts with one webhook each (the 1-webhook-per-event runs)
    fan_accounts: int  # accounts with ten webhooks each (the fan-out runs)
    memory_levels: tuple[int, ...]  # requests held by the slow sink
    many_webhooks: int  # "10,000 webhooks" (smaller in smoke mode)
    router_events: int
    profile_seconds: float  # 0: no profile
    drain_seconds: float  # extra time allowed for a run's backlog to arrive
    retries: int = 2  # extra overload runs when a maximum run did not saturate the pipeline
    grace_seconds: float = 1.0  # the measurement window closes this long after the last publish
    idle_seconds: float = 30.0  # the idle pipeline's CPU is sampled this long
    cpu_rates: tuple[tuple[int, float], ...] = ((20, 30.0), (100, 20.0), (500, 12.0))  # (events/s, seconds)
    # Load before the CPU curve, so that the broker's JIT compiler has done most of its work: a fresh
    # broker's C2 compiler thread alone used 0.2 cores at 100 events/s (README: Where the CPU goes).
    jit_warmup_seconds: float = 60.0
    jit_warmup_rate: int = 300


PLANS: dict[str, Plan] = {
    "full": Plan("full", 8, 16, 100_000, 300, 20, 20, 600, 256, 8, (1_000, 10_000), 10_000, 30_000, 10, 90),
    "quick": Plan("quick", 3, 16, 20_000, 100, 6, 8, 300, 256, 8, (1_000, 10_000), 10_000, 8_000, 5, 60),
    "smoke": Plan(
        "smoke",
        1,
        16,
        2_000,
        20,
        2,
        2,
        50,
        16,
        2,
        (50, 200),
        200,
        400,
        0,
        30,
        retries=0,
        grace_seconds=0.5,
        idle_seconds=2.0,
        cpu_rates=((20, 2.0), (100, 2.0)),
        jit_warmup_seconds=2.0,
    ),
}

# Targets of issue 7: (result key, comparison, bound, what it means).
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("e2e_ratio_vs_aiohttp", ">=", 0.5, "end-to-end deliveries/s ÷ raw aiohttp requests/s"),
    ("latency_p99_s_at_50pct", "<=", 0.050, "p99 event-to-delivery latency at 50 % of the maximum (s)"),
    ("latency_p99_s_at_80pct", "<=", 0.200, "p99 event-to-delivery latency at 80 % of the maximum (s)"),
    ("bytes_per_inflight_delivery", "<=", 32 * 1024, "worker memory per in-flight delivery (bytes)"),
    ("retention_c512_vs_c16", ">=", 0.9, "throughput at 512 connections ÷ at 16"),
    ("router_ratio_vs_e2e", ">=", 2.0, "router events/s ÷ end-to-end maximum deliveries/s"),
    ("retention_10000_vs_10_webhooks", ">=", 0.9, "throughput with 10,000 webhooks ÷ with 10"),
    # Issue 14: CPU that follows the traffic (all processes of the pipeline, broker included).
    ("cpu_us_per_delivery_at_20", "<=", 8000, "CPU per delivery at 20 events/s, all processes (µs)"),
    ("cpu_us_per_delivery_at_100", "<=", 2500, "CPU per delivery at 100 events/s, all processes (µs)"),
    ("cpu_us_per_delivery_at_max", "<=", 1200, "CPU per delivery at saturation, all processes (µs)"),
    ("idle_cores", "<=", 0.03, "CPU of the idle pipeline, all processes (cores)"),
)

#: The processes of the pipeline whose CPU counts (the loopback sink and the generator do not).
PIPELINE_PROCESSES = ("broker", "router", "worker", "logsink", "health", "api")


class Bench:
    def __init__(
        self,
        plan: Plan,
        out: Path,
        *,
        bootstrap: str | None = None,
        log_level: str = "INFO",
        profile: bool = True,
        keep: bool = False,
        only: str | None = None,
        broker_requests: bool = False,
        broker_pid: int | None = None,
    ) -> None:
        from hookline.sealing import generate_key

        self.plan = plan
        self.out = out
        self.bootstrap = bootstrap
        self.log_level = log_level
        self.profile = profile and plan.profile_seconds > 0
        self.keep = keep
        self.broker_requests = broker_requests  # log every broker request; count them per client
        self.only = only  # "cpu": baselines and the main pipeline's CPU curve and maximum only
        self.tag = uuid.uuid4().hex[:6]
        self.seed = f"{self.tag}-{uuid.uuid4().hex}"
        self.secret_key = generate_key("bench")
        self.work = Path(tempfile.mkdtemp(prefix="hookline-bench-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.broker: Any = None
        self.broker_pid: int | None = broker_pid  # of a broker given by --bootstrap, for its CPU
        self.sink: Child | None = None
        self.sink_url = ""
        self.pipelines: list[Pipeline] = []
        self.scratch_topics: list[str] = []
        self.results: dict[str, Any] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.series: dict[str, dict[str, Any]] = {}
        self.latencies: dict[str, list[float]] = {}
        self.profiles: dict[str, dict[str, float]] = {}
        self.notes: list[str] = []
        self.sink_stats: dict[str, Any] = {}
        self.started_at = time.time()

    # -- top level -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            self._start_broker()
            self._start_sink()
            if self.only != "curve":
                self._baselines()
            if self.only == "ordering":
                from benchmarks.ordering import ordering_runs

                ordering_runs(self)
            else:
                self._main_pipeline()
            if self.only not in ("cpu", "curve", "ordering"):
                self._router_alone()
                self._webhook_counts()
            self.sink_stats = self.sink_ctl("stats")
        finally:
            self.close()
        return self._assemble()

    def close(self) -> None:
        for pipe in self.pipelines:
            pipe.stop()
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.bootstrap and not self.keep:
            self._delete_topics()
        if self.broker is not None:
            say("stopping the broker")
            self.broker.stop()
            self.broker = None
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            say(f"kept logs and data in {self.work}")

    # -- infrastructure ------------------------------------------------------------------------
    def _start_broker(self) -> None:
        if self.bootstrap:
            self._bootstrap = self.bootstrap
            say(f"using the broker at {self._bootstrap}")
            return
        from hookline.local.kafka import LocalKafka
        from hookline.local.ports import free_port
        from hookline.settings import load_settings

        env_settings = load_settings()
        libs = env_settings.kafka_libs_dir
        if not libs.is_absolute():
            libs = REPO / libs
        settings = load_settings(
            {},
            home=self.work / "kafka-home",
            kafka_libs=libs,
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            kafka_heap="1g",
            kafka_jvm_options=env_settings.kafka_jvm_options,
        )
        self.broker = LocalKafka(settings, out=sys.stderr, request_log=self.broker_requests)
        status = self.broker.start(timeout=180)
        self.broker_pid = status.pid
        self._bootstrap = self.broker.bootstrap

    _bootstrap = ""

    def _start_sink(self) -> None:
        self.sink = Child.python(
            "sink",
            "benchmarks.sink",
            ["--seed", self.seed, "--max-seconds", "21600"],
            log_path=self.logs / "sink.log",
            stdout_pipe=True,
        ).start()
        line = self.sink.readline(timeout=30)
        port = int(line.split()[1])
        self.sink_url = f"http://127.0.0.1:{port}"
        say(f"sink listening on {self.sink_url}")

    def sink_ctl(self, path: str) -> dict[str, Any]:
        status, body = http_get(f"{self.sink_url}/_ctl/{path}", timeout=60)
        if status != 200:
            raise RuntimeError(f"sink /_ctl/{path} answered {status}: {body[:200]!r}")
        result: dict[str, Any] = orjson.loads(body)
        return result

    def _settings(self, prefix: str = "") -> Any:
        from hookline.settings import load_settings

        return load_settings({}, kafka_bootstrap=self._bootstrap, topic_prefix=prefix)

    def _scratch_topic(self, name: str, partitions: int) -> str:
        from hookline.clients import create_topics
        from hookline.topics import TopicSpec

        settings = self._settings(f"bench-{self.tag}-scratch.")
        create_topics(settings, [TopicSpec(name, partitions)])
        full = settings.topic(name)
        self.scratch_topics.append(full)
        return full

    def _delete_topics(self) -> None:
        from hookline.clients import admin_client

        names = [*self.scratch_topics]
        for pipe in self.pipelines:
            names += pipe.topic_names()
        if not names:
            return
        try:
            admin = admin_client(self._settings())
            existing = set(admin.list_topics(timeout=10).topics)
            doomed = [n for n in names if n in existing]
            if doomed:
                for fut in admin.delete_topics(doomed, operation_timeout=30).values():
                    fut.result()
            say(f"deleted {len(doomed)} bench topics")
        except Exception as exc:  # leaving topics behind is untidy, not wrong
            say(f"could not delete the bench topics: {exc}")

    def pids(self, pipe: Pipeline | None = None) -> dict[str, int | None]:
        return {
            "broker": self.broker_pid,
            "router": pipe.router.pid if pipe is not None and pipe.router is not None else None,
            "worker": pipe.worker.pid if pipe is not None and pipe.worker is not None else None,
            "logsink": pipe.logsink.pid if pipe is not None and pipe.logsink is not None else None,
            "health": pipe.health.pid if pipe is not None and pipe.health is not None else None,
            "api": pipe.api.pid if pipe is not None and pipe.api is not None else None,
            "sink": self.sink.pid if self.sink is not None else None,
        }

    def new_pipeline(
        self, name: str, groups: dict[str, list[str]], ordered: frozenset[str] = frozenset()
    ) -> Pipeline:
        pipe = Pipeline(
            name=name,
            prefix=f"bench-{self.tag}-{name}.",
            bootstrap=self._bootstrap,
            home=self.work / "home",
            logs=self.logs,
            sink_url=self.sink_url,
            seed=self.seed,
            secret_key=self.secret_key,
            groups=groups,
            log_level=self.log_level,
            ordered=ordered,
        )
        self.pipelines.append(pipe)
        say(f"{name}: creating topics and {pipe.webhook_count} webhooks")
        return pipe.create()

    # -- baselines -----------------------------------------------------------------------------
    def _baseline(self, name: str, args: list[str], timeout: float) -> dict[str, Any]:
        child = Child.python(
            name, "benchmarks.baselines", args, log_path=self.logs / f"{name}.log", stdout_pipe=True
        ).start()
        try:
            line = child.readline(timeout=timeout)
            child.wait(30)
        finally:
            child.stop()
        result: dict[str, Any] = orjson.loads(line)
        return result

    def _baselines(self) -> None:
        p = self.plan
        for client in ("aiohttp", "httpx"):
            run = f"raw-{client}"
            say(f"baseline: raw {client} POST loop, {p.raw_concurrency} in flight, {p.raw_seconds:g}s")
            before = CpuSample.take({"sink": self.sink.pid if self.sink else None})
            res = self._baseline(
                run,
                [
                    "http",
                    "--client",
                    client,
                    "--url",
                    self.sink_url,
                    "--seed",
                    self.seed,
                    "--run",
                    run,
                    "--concurrency",
                    str(p.raw_concurrency),
                    "--duration",
                    str(p.raw_seconds),
                ],
                timeout=p.raw_seconds + 120,
            )
            res["sink_cpu_s"] = CpuSample.take({"sink": self.sink.pid if self.sink else None}).since(before)[
                "sink"
            ]
            arrived = self.sink_ctl(f"dump?run={run}&path=/dev/null")["rows"]
            res["sink_arrivals"] = arrived
            self.runs[run] = res
            self.results[f"raw_{client}_rps"] = res["rps"]
            say(f"  {res['rps']:.0f} req/s ({res['errors']} errors, {arrived} arrived at the sink)")
        stats = self.sink_ctl("stats")
        if stats["bad_signature"]:
            self.notes.append(f"the sink refused {stats['bad_signature']} raw requests (bad signature)")

        topic = self._scratch_topic("consume", 12)
        say(f"baseline: raw confluent-kafka batched consume of {p.consume_count} task-sized records")
        res = self._baseline(
            "raw-consume",
            ["consume", "--bootstrap", self._bootstrap, "--topic", topic, "--count", str(p.consume_count)],
            timeout=300,
        )
        self.runs["raw-consume"] = res
        self.results["raw_consume_msgs_per_s"] = res["msgs_per_s"]
        say(f"  {res['msgs_per_s']:.0f} msgs/s")

        topic = self._scratch_topic("ping", 1)
        say(f"baseline: produce -> consume ping x{p.ping_count}")
        res = self._baseline(
            "ping",
            ["ping", "--bootstrap", self._bootstrap, "--topic", topic, "--count", str(p.ping_count)],
            timeout=120,
        )
        self.runs["ping"] = res
        self.results["ping_p50_s"] = res["p50_s"]
        self.results["ping_p99_s"] = res["p99_s"]
        say(f"  p50 {_ms(res['p50_s'])}, p99 {_ms(res['p99_s'])}")

    # -- one load run --------------------------------------------------------------------------
    def run_load(
        self,
        pipe: Pipeline,
        name: str,
        accounts: list[str],
        *,
        rate: float,
        duration: float = 0.0,
        count: int = 0,
        overload: bool = False,
        keep_series: bool = True,
        during: Callable[[], None] | None = None,
        generator_args: tuple[str, ...] = (),
        inspect: Callable[[list[Arrival], list[Arrival]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Publish events of ``accounts`` open-loop (``rate`` events/s; 0 = backlog) and account for them.

        ``inspect(arrivals, first arrivals)`` adds its figures to the result.
        """
        run = f"{name}-{uuid.uuid4().hex[:4]}"
        fanout = sum(len(pipe.groups[a]) for a in accounts) / len(accounts)
        accounts_file = self.logs / f"{run}-accounts.json"
        accounts_file.write_bytes(orjson.dumps(accounts))
        gen_out = self.logs / f"{run}-generator.json"
        n_events = count or round(rate * duration)
        before_metrics = pipe.worker_metrics()
        cpu0 = CpuSample.take(self.pids(pipe))
        threads0 = ThreadSample.take(self.pids(pipe))
        gen = Child.python(
            f"generator-{run}",
            "benchmarks.generator",
            [
                "--bootstrap",
                self._bootstrap,
                "--prefix",
                pipe.prefix,
                "--run",
                run,
                "--rate",
                str(rate),
                "--count",
                str(n_events),
                "--accounts-file",
                str(accounts_file),
                "--out",
                str(gen_out),
                "--max-seconds",
                str(max(60.0, 3 * (duration or 10) + 30)),
                *generator_args,
            ],
            log_path=self.logs / "generator.log",
        ).start()
        if during is not None:
            during()
        gen.wait(max(120.0, 3 * (duration or 10) + 90))
        g = orjson.loads(gen_out.read_bytes())
        published = g.pop("acked")
        start = g["start"]
        last = g["last_publish"] or start
        span = max(1e-3, last - start)
        grace = max(self.plan.grace_seconds, 0.1 * span)
        window_end = last + grace
        while time.time() < window_end:
            time.sleep(min(0.1, max(0.0, window_end - time.time())))
        cpu1 = CpuSample.take(self.pids(pipe))
        threads1 = ThreadSample.take(self.pids(pipe))
        cpu_window = cpu1.at - cpu0.at
        expected = sum(len(pipe.groups[accounts[s % len(accounts)]]) for s in published)
        drain = self.plan.drain_seconds + (span if overload else 0.0)

        def arrived() -> bool:
            return int(self.sink_ctl("stats")["runs"].get(run, 0)) >= expected

        try:
            wait_for(arrived, drain, f"{run}: {expected} deliveries", interval=0.25)
        except TimeoutError:
            say(f"  {run}: not everything arrived within {drain:.0f}s of the window's end")
        after_metrics = pipe.worker_metrics()
        dump = self.logs / f"{run}-arrivals.txt"
        self.sink_ctl(f"dump?run={run}&path={dump}")
        arrivals = read_arrivals(dump, run)
        if not self.keep:
            dump.unlink(missing_ok=True)
        ledger, firsts = settle(
            published,
            lambda s: pipe.groups[accounts[s % len(accounts)]],
            arrivals,
            window_end,
            not_published=g["count"] - len(published),
        )
        ramp = min(max(1.0, 0.3 * span), span / 2)
        if overload:
            # Saturated: the pipeline is busy from its first delivery to its last, backlog included;
            # its rate between the 10th and the 90th percentile of arrivals is its capacity.
            lo, hi = _arrival_span([a.t3 for a in firsts], 0.1, 0.9)
            in_window = sum(1 for a in firsts if lo <= a.t3 <= hi)
        else:
            lo, hi = start + ramp, last
            in_window = sum(1 for a in firsts if lo <= a.t3 <= hi)
        throughput = in_window / (hi - lo) if hi > lo else 0.0
        lat = [a.latency for a in firsts if a.t0 >= start + (ramp if span > 2 else 0.0)]
        delivered_cpu = {k: v for k, v in cpu1.since(cpu0).items()}
        delivered = max(1, ledger.delivered)
        deferred = metric(after_metrics, "hookline_delivery_deferred_total") - metric(
            before_metrics, "hookline_delivery_deferred_total"
        )
        result: dict[str, Any] = {
            "run": run,
            "pipeline": pipe.name,
            "webhooks_configured": pipe.webhook_count,
            "accounts": len(accounts),
            "fanout": fanout,
            "offered_events_per_s": rate,
            "offered_deliveries_per_s": rate * fanout,
            "overload": overload,
            "worker_settings": dict(pipe.worker_settings),
            "generator": g,
            "ledger": ledger.as_dict(),
            "throughput_deliveries_per_s": throughput,
            "throughput_window_s": [round(lo - start, 3), round(hi - start, 3)],
            "latency_s": _quantiles(lat),
            "cpu_s": delivered_cpu,
            "cpu_window_s": round(cpu_window, 3),
            "cpu_threads_s": threads1.since(threads0),
            "cpu_us_per_delivery": {
                k: round(v / delivered * 1e6, 1) if v is not None else None for k, v in delivered_cpu.items()
            },
            "generator_cpu_us_per_event": round(g["cpu_s"] / max(1, g["attempted"]) * 1e6, 1),
            "deferred_to_retry_tier": deferred,
        }
        if overload:
            achieved = g["achieved_rate"] or rate
            result["saturated"] = throughput < 0.93 * achieved * fanout
        if inspect is not None:
            result.update(inspect(arrivals, firsts))
        self.runs[name] = result
        if keep_series:
            end = max([a.t3 for a in firsts] + [window_end])
            self.series[name] = {
                "offered": rate * fanout,
                "points": throughput_series([a.t3 for a in firsts], start, end, 0.5),
                "window_end_s": window_end - start,
            }
            self.latencies[name] = lat
        if not ledger.balanced:
            say(f"  {run}: LEDGER DOES NOT BALANCE: {ledger.as_dict()} — this run is void")
        say(
            f"  {name}: offered {rate * fanout:.0f}/s, delivered {throughput:.0f}/s in the window, "
            f"p50 {_ms(result['latency_s']['p50'])} p99 {_ms(result['latency_s']['p99'])}, "
            f"ledger {ledger.delivered}+{ledger.cut_off} cut off+{ledger.missing} missing"
            f"={ledger.expected_deliveries}, gen lag p99 {_ms(g['lag_p99_s'])}"
            + (f", {deferred:.0f} deferred" if deferred else "")
        )
        return result

    def warm_up(self, pipe: Pipeline, name: str, accounts: list[str]) -> None:
        """Deliver a few events at a low rate first (connections, caches, JIT-less Python warm paths)."""
        if self.plan.warmup_events:
            self.run_load(pipe, name, accounts, rate=200, count=self.plan.warmup_events, keep_series=False)

    def measure_max(
        self, pipe: Pipeline, name: str, accounts: list[str], guess: float, **load: Any
    ) -> dict[str, Any]:
        """Offer more than the pipeline can take (x1.3 the guess, doubling until saturated); ``load``
        goes to :meth:`run_load`."""
        fanout = sum(len(pipe.groups[a]) for a in accounts) / len(accounts)
        offered = max(50.0, guess * 1.3)
        result: dict[str, Any] = {}
        for attempt in range(1 + self.plan.retries):
            label = name if attempt == 0 else f"{name}-retry{attempt}"
            result = self.run_load(
                pipe,
                label,
                accounts,
                rate=offered / fanout,
                duration=self.plan.load_seconds,
                overload=True,
                **load,
            )
            if result["saturated"]:
                break
            offered = max(offered * 2, result["throughput_deliveries_per_s"] * 1.6)
            say(f"  {name}: not saturated; offering {offered:.0f}/s")
        if result["run"] and name in self.runs and self.runs[name] is not result:
            self.runs[f"{name}-unsaturated"] = self.runs.pop(name)
        for attempt in range(1, 1 + self.plan.retries):
            if self.runs.get(f"{name}-retry{attempt}") is result:
                del self.runs[f"{name}-retry{attempt}"]
        self.runs[name] = result
        return result

    # -- the main pipeline ---------------------------------------------------------------------
    def _main_pipeline(self) -> None:
        p = self.plan
        single = {f"acct-s{i}": [f"s{i}-w0"] for i in range(p.single_accounts)}
        fan = {f"acct-f{i}": [f"f{i}-w{j}" for j in range(10)] for i in range(p.fan_accounts)}
        pipe = self.new_pipeline("main", {**single, **fan})
        singles, fans = list(single), list(fan)
        pipe.start_router()
        pipe.start_worker()
        pipe.start_logsink()
        pipe.start_health()
        pipe.start_api()
        say("main: waiting for the router, the worker, the log sink, the health processor and the API")
        pipe.wait_ready()
        self.warm_up(pipe, "warmup", singles)
        self._cpu_curve(pipe, singles)
        if self.only == "curve":
            pipe.stop()
            return

        guess = 0.5 * self.results.get("raw_aiohttp_rps", 1000.0)
        if self.plan.retries:
            say(f"pipeline: a short overload probe at {guess * 1.3:.0f}/s to size the maximum runs")
            probe = self.run_load(
                pipe,
                "probe",
                singles,
                rate=guess * 1.3,
                duration=max(2.0, p.load_seconds / 4),
                overload=True,
                keep_series=False,
            )
            self.runs.pop("probe", None)
            self.runs["probe_1_webhook"] = probe
            guess = probe["throughput_deliveries_per_s"] if probe["saturated"] else guess * 2
        say("pipeline: maximum deliveries/s, one webhook per event")
        mx = self.measure_max(pipe, "max_1_webhook", singles, guess)
        e2e = mx["throughput_deliveries_per_s"]
        self.results["e2e_deliveries_per_s"] = e2e
        say("pipeline: maximum deliveries/s, fan-out to 10 webhooks")
        fo = self.measure_max(pipe, "max_fanout_10", fans, e2e)
        self.results["e2e_fanout10_deliveries_per_s"] = fo["throughput_deliveries_per_s"]
        self._cpu_totals("max", mx)

        for pct in (50, 80):
            say(f"pipeline: latency at {pct} % of the maximum ({e2e * pct / 100:.0f} deliveries/s)")
            r = self.run_load(
                pipe, f"latency_{pct}pct", singles, rate=e2e * pct / 100, duration=p.latency_seconds
            )
            for q in ("p50", "p99", "p999"):
                self.results[f"latency_{q}_s_at_{pct}pct"] = r["latency_s"][q]
            self.results[f"latency_run_{pct}pct_kept_up"] = (
                r["throughput_deliveries_per_s"] >= 0.95 * r["offered_deliveries_per_s"]
            )

        if self.profile:
            self._profile_run(pipe, singles, e2e)
        if self.only == "cpu":
            pipe.stop()
            return

        for conc in (16, 512):
            say(f"pipeline: maximum deliveries/s with {conc} connections (deliver_concurrency={conc})")
            pipe.stop_worker()
            pipe.start_worker({"deliver_concurrency": conc})
            pipe.wait_ready()
            self.warm_up(pipe, f"warmup_c{conc}", singles)
            r = self.measure_max(pipe, f"max_c{conc}", singles, e2e)
            self.results[f"throughput_c{conc}"] = r["throughput_deliveries_per_s"]
        self.results["retention_c512_vs_c16"] = _ratio(
            self.results.get("throughput_c512"), self.results.get("throughput_c16")
        )
        self._memory(pipe, singles)
        pipe.stop()

    def _cpu_curve(self, pipe: Pipeline, singles: list[str]) -> None:
        """Idle cores, then CPU per delivery per process at each fixed offered rate (issue 14)."""
        p = self.plan
        if p.jit_warmup_seconds:
            say(
                f"cpu: {p.jit_warmup_rate} events/s for {p.jit_warmup_seconds:g}s first, so that the "
                "broker's JIT compiler is mostly done before anything is measured"
            )
            self.run_load(
                pipe,
                "warmup_jit",
                singles,
                rate=p.jit_warmup_rate,
                duration=p.jit_warmup_seconds,
                keep_series=False,
            )
        say(f"cpu: the idle pipeline for {p.idle_seconds:g}s (after 5 s to settle)")
        time.sleep(5.0)
        before = CpuSample.take(self.pids(pipe))
        threads0 = ThreadSample.take(self.pids(pipe))
        t0 = time.time()
        time.sleep(p.idle_seconds)
        after = CpuSample.take(self.pids(pipe))
        threads1 = ThreadSample.take(self.pids(pipe))
        elapsed = after.at - before.at
        self._request_rates("idle", t0, time.time())
        idle = {k: round(v / elapsed, 4) for k, v in after.since(before).items() if v is not None}
        self.runs["idle"] = {
            "seconds": round(elapsed, 1),
            "cores": idle,
            "cpu_window_s": round(elapsed, 3),
            "cpu_threads_s": threads1.since(threads0),
        }
        # What one thread wake-up costs on this machine, measured while the pipeline idles: the
        # per-event costs below are mostly wake-ups (README: Where the CPU goes).
        wakeup = self.results["wakeup_round_trip_us"] = wakeup_round_trip_us()
        say(f"  one thread-to-thread round trip costs {wakeup:.1f} µs of CPU here")
        self.results["idle_cores"] = round(sum(idle.get(k, 0.0) for k in PIPELINE_PROCESSES), 4)
        self.results["idle_cores_per_process"] = {k: idle[k] for k in PIPELINE_PROCESSES if k in idle}
        say(f"  idle: {self.results['idle_cores']:.3f} cores " + _per_process(idle, "{:.3f}"))
        for rate, seconds in p.cpu_rates:
            say(f"cpu: {rate} events/s for {seconds:g}s")
            t0 = time.time()
            r = self.run_load(pipe, f"cpu_at_{rate}", singles, rate=rate, duration=seconds, keep_series=False)
            self._cpu_totals(str(rate), r)
            self._request_rates(f"cpu_at_{rate}", t0 + 2.0, t0 + seconds)
        if self.profile:
            self._profile_at(pipe, singles, 100, ("router", "worker", "logsink"))

    def _profile_at(self, pipe: Pipeline, singles: list[str], rate: int, roles: tuple[str, ...]) -> None:
        """py-spy on ``roles`` during a separate run at ``rate`` events/s (never a measured run)."""
        exe = py_spy()
        if exe is None:
            self.notes.append("no profile: py-spy is not installed (pip install 'hookline[bench]')")
            return
        seconds = self.plan.profile_seconds
        say(f"profile: py-spy on {', '.join(roles)} for {seconds:g}s at {rate} events/s")
        spies: list[tuple[str, PySpy]] = []

        def attach() -> None:
            time.sleep(1.0)
            for role in roles:
                child = getattr(pipe, role)
                if child is not None and child.pid is not None:
                    out = self.logs / f"profile-{role}-at-{rate}.raw"
                    spies.append((role, PySpy(child.pid, seconds, out)))

        self.run_load(
            pipe,
            f"profiled_at_{rate}",
            singles,
            rate=rate,
            duration=seconds + 2,
            keep_series=False,
            during=attach,
        )
        self.runs.pop(f"profiled_at_{rate}", None)
        for role, spy in spies:
            err = spy.wait(timeout=seconds + 60)
            raw = spy.out.read_text() if spy.out.exists() else ""
            text, shares = summarize(raw, f"{role} at {rate} events/s ({seconds:g}s, py-spy)")
            if not raw:
                text += f"\npy-spy said: {err.strip()[-500:]}\n"
            (self.out / f"profile-{role}-at-{rate}.txt").write_text(text)
            self.profiles[f"{role}_at_{rate}"] = {k: round(v, 4) for k, v in list(shares.items())[:12]}

    def _request_rates(self, run: str, start: float, end: float) -> None:
        """Broker requests per second by client id and API between ``start`` and ``end`` (epoch s)."""
        log = self.broker.request_log if self.broker is not None else None
        if log is None or not log.exists():
            return
        counts: dict[str, int] = {}
        lo, hi = int(start * 1000), int(end * 1000)
        with log.open("rb") as f:
            for line in f:
                stamp, _, rest = line.partition(b" ")
                if not stamp.isdigit() or not lo <= int(stamp) < hi:
                    continue
                client = re.search(rb'"clientId":"([^"]*)"', rest)
                api = re.search(rb'"requestApiKeyName":"([^"]*)"', rest)
                if client and api:
                    key = f"{client.group(1).decode()} {api.group(1).decode()}"
                    counts[key] = counts.get(key, 0) + 1
        seconds = max(1e-3, end - start)
        rates = {k: round(v / seconds, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
        self.runs.setdefault("broker_requests", {})[run] = rates
        total = sum(rates.values())
        say(
            f"  broker requests in {run}: {total:.0f}/s — "
            + ", ".join(f"{k} {v}" for k, v in list(rates.items())[:8])
        )

    def _cpu_totals(self, label: str, run: dict[str, Any]) -> None:
        per = {k: run["cpu_us_per_delivery"].get(k) for k in PIPELINE_PROCESSES}
        total = sum(v for v in per.values() if v is not None)
        self.results[f"cpu_us_per_delivery_at_{label}"] = round(total, 1)
        self.results[f"cpu_us_per_delivery_at_{label}_per_process"] = per
        self.results[f"cpu_cores_at_{label}"] = round(
            sum(v for k, v in run["cpu_s"].items() if k in PIPELINE_PROCESSES and v is not None)
            / max(1e-3, run["cpu_window_s"]),
            3,
        )
        say(f"  CPU per delivery at {label}: {total:.0f} µs " + _per_process(per, "{:.0f}"))

    def _profile_run(self, pipe: Pipeline, singles: list[str], e2e: float) -> None:
        exe = py_spy()
        if exe is None:
            self.notes.append("no profile: py-spy is not installed (pip install 'hookline[bench]')")
            return
        seconds = self.plan.profile_seconds
        say(f"profile: py-spy on the worker and the router for {seconds:g}s under overload")
        spies: list[tuple[str, PySpy]] = []

        def attach() -> None:
            time.sleep(1.0)
            for role, child in (("worker", pipe.worker), ("router", pipe.router)):
                if child is not None and child.pid is not None:
                    spies.append((role, PySpy(child.pid, seconds, self.logs / f"profile-{role}.raw")))

        self.run_load(
            pipe,
            "profiled",
            singles,
            rate=e2e * 1.3,
            duration=seconds + 2,
            overload=True,
            keep_series=False,
            during=attach,
        )
        self.runs.pop("profiled", None)
        for role, spy in spies:
            err = spy.wait(timeout=seconds + 60)
            raw = spy.out.read_text() if spy.out.exists() else ""
            text, shares = summarize(raw, f"{role} under overload ({seconds:g}s, py-spy)")
            if not raw:
                text += f"\npy-spy said: {err.strip()[-500:]}\n"
            (self.out / f"profile-{role}.txt").write_text(text)
            self.profiles[role] = {k: round(v, 4) for k, v in list(shares.items())[:12]}

    def _memory(self, pipe: Pipeline, singles: list[str]) -> None:
        p = self.plan
        top = max(p.memory_levels)
        pipe.stop_worker()
        settings = {
            "deliver_concurrency": top + 100,
            "deliver_webhook_concurrency": top + 100,
            "deliver_max_buffered": top + 100,
            "attempt_timeout": 600,
            "connect_timeout": 60,
        }
        say(f"memory: worker with {settings}")
        pipe.start_worker(settings)
        pipe.wait_ready()
        assert pipe.worker is not None and pipe.worker.pid is not None
        pid = pipe.worker.pid
        self.warm_up(pipe, "warmup_memory", singles)
        per: dict[int, float] = {}
        for level in p.memory_levels:
            time.sleep(1.0)
            rss0 = _steady_rss(pid)
            self.sink_ctl("hold")
            say(f"memory: slow sink holding {level} requests")
            measured: dict[str, Any] = {}

            def hold_and_measure(
                level: int = level, rss0: int = rss0, measured: dict[str, Any] = measured
            ) -> None:
                try:
                    wait_for(
                        lambda: self.sink_ctl("stats")["held"] >= level,
                        p.drain_seconds + 120,
                        f"{level} held requests",
                        interval=0.25,
                    )
                    time.sleep(1.0)
                    rss1 = _steady_rss(pid)
                    gauge = metric(pipe.worker_metrics(), "hookline_deliveries_in_flight")
                    held = self.sink_ctl("stats")["held"]
                    measured.update(
                        rss_before=rss0,
                        rss_held=rss1,
                        in_flight_gauge=gauge,
                        held=held,
                        bytes_per_inflight=(rss1 - rss0) / max(1, held),
                    )
                finally:
                    self.sink_ctl("release")

            r = self.run_load(
                pipe,
                f"memory_{level}",
                singles,
                rate=0,
                count=level,
                keep_series=False,
                during=hold_and_measure,
            )
            r["memory"] = measured
            if "bytes_per_inflight" in measured:
                per[level] = measured["bytes_per_inflight"]
                self.results[f"bytes_per_inflight_delivery_{level}"] = measured["bytes_per_inflight"]
                say(
                    f"  {level} held: worker RSS {measured['rss_before'] / 2**20:.1f} -> "
                    f"{measured['rss_held'] / 2**20:.1f} MiB, "
                    f"{measured['bytes_per_inflight'] / 1024:.1f} KiB each"
                )
        self.results["bytes_per_inflight_delivery"] = max(per.values()) if per else None

    # -- the router alone ----------------------------------------------------------------------
    def _router_alone(self) -> None:
        from hookline.topics import CONTACT_EVENTS, DELIVERIES, SALE_EVENTS

        p = self.plan
        pipe = self.new_pipeline("router", {f"acct-r{i}": [f"r{i}-w0"] for i in range(10)})
        n = p.router_events
        say(f"router alone: {n} events waiting, then the router starts")
        accounts_file = self.logs / "router-accounts.json"
        accounts_file.write_bytes(orjson.dumps(list(pipe.groups)))
        gen_out = self.logs / "router-generator.json"
        gen = Child.python(
            "generator-router",
            "benchmarks.generator",
            [
                "--bootstrap",
                self._bootstrap,
                "--prefix",
                pipe.prefix,
                "--run",
                "router",
                "--rate",
                "0",
                "--count",
                str(n),
                "--accounts-file",
                str(accounts_file),
                "--out",
                str(gen_out),
            ],
            log_path=self.logs / "generator.log",
        ).start()
        gen.wait(300)
        acked = len(orjson.loads(gen_out.read_bytes())["acked"])
        cpu0 = CpuSample.take(self.pids(pipe))
        deliveries = pipe.settings.topic(DELIVERIES)
        series = self._watch_topic(deliveries, acked, timeout=max(120.0, n / 100), start=pipe.start_router)
        cpu = CpuSample.take(self.pids(pipe)).since(cpu0)
        pipe.stop_router()
        rate = _steady_rate(series, acked)
        self.runs["router_alone"] = {
            "events": acked,
            "tasks_seen": series[-1][1] if series else 0,
            "events_per_s": rate,
            "cpu_s": cpu,
            "cpu_us_per_event": {k: round(v / max(1, acked) * 1e6, 1) if v else None for k, v in cpu.items()},
        }
        self.results["router_events_per_s"] = rate
        say(f"  router: {rate:.0f} events/s")

        relay_topic = self._scratch_topic("relay", 12)
        sources = f"{pipe.settings.topic(CONTACT_EVENTS)},{pipe.settings.topic(SALE_EVENTS)}"
        say("router alone: a plain confluent-kafka consume -> produce loop over the same events")
        child = Child.python(
            "relay",
            "benchmarks.baselines",
            [
                "relay",
                "--bootstrap",
                self._bootstrap,
                "--topic",
                relay_topic,
                "--source",
                sources,
                "--count",
                str(acked),
            ],
            log_path=self.logs / "relay.log",
            stdout_pipe=True,
        )
        try:
            series = self._watch_topic(relay_topic, acked, timeout=max(120.0, n / 100), start=child.start)
            line = child.readline(timeout=120)
            child.wait(30)
        finally:
            child.stop()
        relay = orjson.loads(line)
        relay["events_per_s_watched"] = _steady_rate(series, acked)
        self.runs["relay"] = relay
        self.results["relay_events_per_s"] = relay["events_per_s_watched"]
        self.results["router_ratio_vs_relay"] = _ratio(rate, relay["events_per_s_watched"])
        self.results["router_ratio_vs_e2e"] = _ratio(rate, self.results.get("e2e_deliveries_per_s"))
        say(f"  relay: {relay['events_per_s_watched']:.0f} events/s")

    def _watch_topic(
        self, topic: str, target: int, timeout: float, start: Callable[[], object]
    ) -> list[tuple[float, int]]:
        """Call ``start``, then (monotonic time, new records in ``topic``) every 0.1 s until ``target``."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from hookline.clients import consumer_config

        consumer = Consumer(consumer_config(self._settings(), None))
        deadline = time.monotonic() + timeout

        def total(tps: list[TopicPartition]) -> int:
            while True:  # a new topic's leaders may not be elected yet
                try:
                    return sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

        try:
            parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            tps = [TopicPartition(topic, q) for q in parts]
            base = total(tps)
            start()
            series: list[tuple[float, int]] = []
            while time.monotonic() < deadline:
                count = total(tps) - base
                series.append((time.monotonic(), count))
                if count >= target:
                    break
                time.sleep(0.1)
            return series
        finally:
            consumer.close()

    # -- 10 webhooks vs 10,000 -----------------------------------------------------------------
    def _webhook_counts(self) -> None:
        e2e = self.results.get("e2e_deliveries_per_s") or 500.0
        for label, count in (("10", 10), (str(self.plan.many_webhooks), self.plan.many_webhooks)):
            name = f"webhooks_{count}"
            pipe = self.new_pipeline(f"w{count}", {f"acct-m{i}": [f"m{i}-w0"] for i in range(count)})
            accounts = list(pipe.groups)
            pipe.start_router()
            pipe.start_worker()
            say(f"{name}: waiting for the router and the worker")
            pipe.wait_ready()
            self.warm_up(pipe, f"warmup_{name}", accounts)
            say(f"pipeline: maximum deliveries/s with {count} webhooks configured (events spread over all)")
            r = self.measure_max(pipe, f"max_{name}", accounts, e2e)
            self.results[f"throughput_{label}_webhooks"] = r["throughput_deliveries_per_s"]
            pipe.stop()
        self.results["retention_10000_vs_10_webhooks"] = _ratio(
            self.results.get(f"throughput_{self.plan.many_webhooks}_webhooks"),
            self.results.get("throughput_10_webhooks"),
        )

    # -- results -------------------------------------------------------------------------------
    def _assemble(self) -> dict[str, Any]:
        r = self.results
        r["e2e_ratio_vs_aiohttp"] = _ratio(r.get("e2e_deliveries_per_s"), r.get("raw_aiohttp_rps"))
        r["e2e_ratio_vs_httpx"] = _ratio(r.get("e2e_deliveries_per_s"), r.get("raw_httpx_rps"))
        ledgers = {name: run["ledger"] for name, run in self.runs.items() if "ledger" in run}
        void = [name for name, led in ledgers.items() if not led["balanced"]]
        r["ledger_balanced"] = bool(ledgers) and not void
        r["void_runs"] = void
        stats = self.sink_stats
        targets = {}
        for key, op, bound, meaning in TARGETS:
            value = r.get(key)
            ok = None if value is None else (value >= bound if op == ">=" else value <= bound)
            targets[key] = {"value": value, "target": f"{op} {bound:g}", "pass": ok, "meaning": meaning}
        out = {
            **r,
            "targets": targets,
            "targets_met": sum(1 for t in targets.values() if t["pass"]),
            "targets_total": len(targets),
            "mode": self.plan.name,
            "plan": asdict(self.plan),
            "runs": self.runs,
            "profiles": self.profiles,
            "notes": self.notes,
            "sink": stats,
            "environment": self._environment(),
            "started_at": self.started_at,
            "duration_s": round(time.time() - self.started_at, 1),
        }
        return out

    def _environment(self) -> dict[str, Any]:
        from importlib import metadata

        versions = {}
        for dist in (
            "hookline",
            "aiohttp",
            "httpx",
            "httpx-aiohttp",
            "confluent-kafka",
            "faust-streaming",
            "aiokafka",
            "fastavro",
            "orjson",
            "prometheus-client",
            "matplotlib",
            "py-spy",
        ):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        try:
            import confluent_kafka

            versions["librdkafka"] = confluent_kafka.libversion()[0]
        except Exception:
            pass
        kafka = None
        if self.broker is not None or not self.bootstrap:
            from hookline.settings import load_settings

            libs = load_settings().kafka_libs_dir
            libs = libs if libs.is_absolute() else REPO / libs
            jars = sorted(libs.glob("kafka_2.13-*.jar"))
            kafka = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else None
        return {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "load_average_at_end": os.getloadavg(),
            "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "versions": versions,
            "kafka_broker": kafka if kafka else ("external" if self.bootstrap else None),
            "bootstrap": "external" if self.bootstrap else "started by the bench",
            "broker_jvm_options": self.broker.settings.kafka_jvm_options if self.broker is not None else None,
            "bench_tag": self.tag,
            "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty_files": [ln for ln in (_git("status", "--porcelain") or "").splitlines() if ln][:50],
            "role_settings": {
                "HOOKLINE_ALLOW_NETWORKS": "127.0.0.0/8",
                "HOOKLINE_RETRY_SCHEDULE": "1,2,5",
                "HOOKLINE_LOG_LEVEL": self.log_level,
                "HOOKLINE_LOG_FORMAT": "text",
                "worker defaults": {
                    "deliver_concurrency": 256,
                    "deliver_webhook_concurrency": 16,
                    "deliver_max_buffered": 5000,
                },
            },
            "payload_bytes": _payload_size(),
            "sink": "hand-written asyncio HTTP/1.1 server, hex HMAC checked on every request, "
            "Standard Webhooks v1 on 1 in 16",
        }


def _payload_size() -> int:
    from benchmarks.traffic import body_template

    return len(body_template())


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "p999": percentile(values, 0.999),
        "max": max(values) if values else None,
    }


def _per_process(values: Mapping[str, float | None], fmt: str) -> str:
    shown = [f"{k} {fmt.format(values[k])}" for k in PIPELINE_PROCESSES if values.get(k) is not None]
    return "(" + ", ".join(shown) + ")"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _arrival_span(times: list[float], lo: float, hi: float) -> tuple[float, float]:
    """The times by which fractions ``lo`` and ``hi`` of ``times`` had happened."""
    if len(times) < 10:
        return (0.0, 0.0)
    s = sorted(times)
    return s[int(lo * (len(s) - 1))], s[int(hi * (len(s) - 1))]


def _steady_rss(pid: int, samples: int = 5) -> int:
    values = []
    for _ in range(samples):
        rss = rss_bytes(pid)
        if rss is None:
            raise RuntimeError(f"process {pid} is gone")
        values.append(rss)
        time.sleep(0.2)
    return sorted(values)[len(values) // 2]


def _steady_rate(series: list[tuple[float, int]], target: int) -> float:
    """Records/s between 10 % and 90 % of ``target`` (interpolated), ignoring start-up and tail."""
    if not series or series[-1][1] < target * 0.9:
        return 0.0

    def when(level: float) -> float:
        prev = series[0]
        for point in series:
            if point[1] >= level:
                if point[1] == prev[1]:
                    return point[0]
                return prev[0] + (point[0] - prev[0]) * (level - prev[1]) / (point[1] - prev[1])
            prev = point
        return series[-1][0]

    t10, t90 = when(0.1 * target), when(0.9 * target)
    return 0.8 * target / (t90 - t10) if t90 > t10 else 0.0
