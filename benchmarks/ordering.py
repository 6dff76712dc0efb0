"""``hookline bench --only ordering``: unordered webhooks saturated beside an ordered one (issue 12).

Issue 12's last acceptance point: an unordered webhook next to an ordered one keeps today's
throughput. One pipeline, with every role as in the main bench (router, worker, log sink, health
processor, API), holds the plan's ``single_accounts`` unordered webhooks (one per account, as the
main bench's one-webhook-per-event runs), one ordered webhook (``ordering: "contact"``,
docs/architecture.md §6, *Ordered delivery*) and one unordered *control* webhook, each of the last
two on an account of its own. Three kinds of saturated runs (:meth:`Bench.measure_max`) alternate
``ROUNDS`` times, so the machine's drift falls on all three alike:

- ``alone``: events of the unordered accounts only;
- ``beside_ordered``: the same accounts at the same offered rate, plus one event in ``EVERY`` for
  the ordered webhook;
- ``beside_unordered``: the same, with that share for the control webhook instead: what the extra
  traffic costs without ordering.

Each account's events are about ``CONTACTS`` contacts in turn (``generator --contacts``), so the
ordered webhook's lanes hold several messages at once under load. Every run is settled by its ledger
as usual; in addition its unordered, ordered and control deliveries/s are counted in the run's
saturated window, and every arrival of the ordered webhook is checked to be in publish order per
contact, a repeated delivery only right after itself (at least once, docs/architecture.md §6).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.ledger import Arrival, percentile
from benchmarks.traffic import contact_ids

if TYPE_CHECKING:
    from benchmarks.harness import Bench

__all__ = ["KINDS", "check_order", "mixed", "ordering_runs"]

ORDERED_ACCOUNT, ORDERED = "acct-o0", "o0-w0"
CONTROL_ACCOUNT, CONTROL = "acct-x0", "x0-w0"
EVERY = 8  # in the mixed runs one event in about EVERY goes to the ordered (or control) webhook
ROUNDS = {"full": 3, "quick": 2, "smoke": 2}
CONTACTS = {"full": 200, "quick": 200, "smoke": 20}
SMOKE_GUESS = 300.0  # deliveries/s offered / 1.3 when the plan has no overload probe (smoke)
KINDS = ("alone", "beside_ordered", "beside_unordered")


def mixed(accounts: Sequence[str], extra: str, every: int = EVERY) -> list[str]:
    """``accounts`` with ``extra`` after every ``every - 1`` of them (the generator takes them in turn)."""
    out: list[str] = []
    for i, account in enumerate(accounts, 1):
        out.append(account)
        if i % (every - 1) == 0:
            out.append(extra)
    return out


def check_order(arrivals: Sequence[Arrival], contact_of: Callable[[int], int]) -> dict[str, int]:
    """One ordered webhook's arrivals, as the sink saw them: per contact in publish order (``seq``),
    a repeated delivery only right after itself."""
    last: dict[int, int] = {}
    per_contact: Counter[int] = Counter()
    out_of_order = repeated = 0
    for a in arrivals:
        contact = contact_of(a.seq)
        prev = last.get(contact)
        if prev is not None and a.seq <= prev:
            if a.seq == prev:
                repeated += 1
            else:
                out_of_order += 1
            continue
        last[contact] = a.seq
        per_contact[contact] += 1
    return {
        "arrivals": len(arrivals),
        "contacts": len(last),
        "most_per_contact": max(per_contact.values(), default=0),
        "out_of_order": out_of_order,
        "repeated_right_after_itself": repeated,
    }


def _inspector(
    accounts: Sequence[str], contacts: int
) -> Callable[[list[Arrival], list[Arrival]], dict[str, Any]]:
    contact_of = contact_ids(accounts, contacts)

    def inspect(arrivals: list[Arrival], firsts: list[Arrival]) -> dict[str, Any]:
        # The window is the unordered webhooks' own 10th to 90th percentile of arrivals (the harness's
        # saturated window, over them alone): the ordered webhook, held to one message per contact in
        # flight, may still be delivering after they are done, which must not dilute their rate.
        times = [a.t3 for a in firsts if a.webhook not in (ORDERED, CONTROL)]
        lo, hi = percentile(times, 0.1) or 0.0, percentile(times, 0.9) or 0.0
        counts: Counter[str] = Counter()
        for a in firsts:
            if lo <= a.t3 <= hi:
                counts[{ORDERED: "ordered", CONTROL: "control"}.get(a.webhook, "unordered")] += 1
        span = hi - lo
        per_s = {k: counts[k] / span if span > 0 else 0.0 for k in ("unordered", "ordered", "control")}
        order = check_order([a for a in arrivals if a.webhook == ORDERED], contact_of)
        return {
            "deliveries_per_s_by_kind": per_s,
            "unordered_window_s": round(span, 3),
            "ordered_order": order,
        }

    return inspect


def ordering_runs(bench: Bench) -> None:
    """The runs above on one pipeline; figures go to ``bench.results`` (``ordering_*``)."""
    from benchmarks.harness import say

    p = bench.plan
    unordered = {f"acct-u{i}": [f"u{i}-w0"] for i in range(p.single_accounts)}
    groups = {**unordered, ORDERED_ACCOUNT: [ORDERED], CONTROL_ACCOUNT: [CONTROL]}
    pipe = bench.new_pipeline("ordering", groups, ordered=frozenset({ORDERED}))
    contacts = CONTACTS.get(p.name, 200)
    alone = list(unordered)
    plans = {
        "alone": alone,
        "beside_ordered": mixed(alone, ORDERED_ACCOUNT),
        "beside_unordered": mixed(alone, CONTROL_ACCOUNT),
    }
    share = 1 - len(alone) / len(plans["beside_ordered"])

    def load(accounts: Sequence[str]) -> dict[str, Any]:
        return {"generator_args": ("--contacts", str(contacts)), "inspect": _inspector(accounts, contacts)}

    for start in (
        pipe.start_router,
        pipe.start_worker,
        pipe.start_logsink,
        pipe.start_health,
        pipe.start_api,
    ):
        start()
    say("ordering: waiting for the router, the worker, the log sink, the health processor and the API")
    pipe.wait_ready()
    warm = [*plans["beside_ordered"], CONTROL_ACCOUNT]
    if p.warmup_events:
        bench.run_load(
            pipe, "ordering_warmup", warm, rate=200, count=p.warmup_events, keep_series=False, **load(warm)
        )

    guess = SMOKE_GUESS
    if p.retries:  # as the main bench: a short overload probe sizes the saturated runs
        offered = 1.3 * 0.5 * bench.results.get("raw_aiohttp_rps", 1000.0)
        say(f"ordering: a short overload probe at {offered:.0f}/s, unordered webhooks alone")
        probe = bench.run_load(
            pipe,
            "ordering_probe",
            alone,
            rate=offered,
            duration=max(2.0, p.load_seconds / 4),
            overload=True,
            keep_series=False,
        )
        guess = probe["throughput_deliveries_per_s"] if probe["saturated"] else 2 * offered
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for n in range(1, ROUNDS.get(p.name, 2) + 1):
        for kind, accounts in plans.items():
            # The unordered webhooks are offered the same rate in every kind; the mixed runs add their share.
            offered = guess * len(accounts) / len(alone)
            say(f"ordering: round {n}, {kind.replace('_', ' ')}: saturated, {len(accounts)} accounts in turn")
            r = bench.measure_max(pipe, f"ordering_{kind}_{n}", accounts, offered, **load(accounts))
            by = r["deliveries_per_s_by_kind"]
            say(
                f"  unordered {by['unordered']:.0f}/s, ordered {by['ordered']:.0f}/s, control "
                f"{by['control']:.0f}/s; worker {r['cpu_us_per_delivery'].get('worker')} µs/delivery; "
                f"ordered arrivals {r['ordered_order']}"
            )
            runs[kind].append(r)
    pipe.stop()
    _summarize(bench, runs, share, contacts)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _summarize(bench: Bench, runs: dict[str, list[dict[str, Any]]], share: float, contacts: int) -> None:
    from benchmarks.harness import say

    res = bench.results

    def per_s(kind: str, of: str) -> list[float]:
        return [float(r["deliveries_per_s_by_kind"][of]) for r in runs[kind]]

    def worker_us(kind: str) -> float | None:
        return _mean([r["cpu_us_per_delivery"].get("worker") for r in runs[kind]])

    alone = _mean(per_s("alone", "unordered"))
    beside = _mean(per_s("beside_ordered", "unordered"))
    control = _mean(per_s("beside_unordered", "unordered"))
    ordered = _mean(per_s("beside_ordered", "ordered"))
    control_hook = _mean(per_s("beside_unordered", "control"))
    raw = res.get("raw_aiohttp_rps")
    orders = [r["ordered_order"] for kind in KINDS for r in runs[kind]]
    res.update(
        {
            "ordering_unordered_alone_per_s": alone,
            "ordering_unordered_beside_ordered_per_s": beside,
            "ordering_unordered_ratio": _ratio(beside, alone),
            "ordering_ordered_per_s": ordered,
            "ordering_total_beside_ordered_per_s": _add(beside, ordered),
            "ordering_total_ratio": _ratio(_add(beside, ordered), alone),
            "ordering_unordered_beside_unordered_per_s": control,
            "ordering_control_per_s": control_hook,
            "ordering_unordered_ratio_vs_control": _ratio(beside, control),
            "ordering_total_ratio_vs_control": _ratio(_add(beside, ordered), _add(control, control_hook)),
            "ordering_unordered_ratio_per_round": [
                _ratio(b, a)
                for a, b in zip(
                    per_s("alone", "unordered"), per_s("beside_ordered", "unordered"), strict=True
                )
            ],
            "ordering_worker_cpu_us_per_delivery_alone": worker_us("alone"),
            "ordering_worker_cpu_us_per_delivery_beside_ordered": worker_us("beside_ordered"),
            "ordering_worker_cpu_us_per_delivery_beside_unordered": worker_us("beside_unordered"),
            "ordering_worker_cpu_ratio": _ratio(worker_us("beside_ordered"), worker_us("alone")),
            "ordering_unordered_alone_vs_aiohttp": _ratio(alone, raw),
            "ordering_unordered_beside_ordered_vs_aiohttp": _ratio(beside, raw),
            "ordering_share": round(share, 4),
            "ordering_contacts": contacts,
            "ordering_rounds": len(runs["alone"]),
            "ordering_all_saturated": all(r.get("saturated") for kind in KINDS for r in runs[kind]),
            "ordering_ordered_arrivals": sum(o["arrivals"] for o in orders),
            "ordering_out_of_order": sum(o["out_of_order"] for o in orders),
            "ordering_repeated_right_after_itself": sum(o["repeated_right_after_itself"] for o in orders),
            "ordering_in_order": all(o["out_of_order"] == 0 for o in orders)
            and sum(o["arrivals"] for o in orders) > 0,
            "ordering_runs": [
                {
                    "run": r["run"],
                    "kind": kind,
                    "saturated": r.get("saturated"),
                    **r["deliveries_per_s_by_kind"],
                    "worker_cpu_us_per_delivery": r["cpu_us_per_delivery"].get("worker"),
                    "ordered_order": r["ordered_order"],
                }
                for n in range(len(runs["alone"]))
                for kind in KINDS
                for r in (runs[kind][n],)
            ],
        }
    )
    if not res["ordering_all_saturated"]:
        bench.notes.append("ordering: not every run saturated the pipeline (see ordering_runs)")
    say(
        f"ordering: unordered alone {_fmt(alone)}/s, beside the ordered webhook {_fmt(beside)}/s "
        f"({_fmt(res['ordering_unordered_ratio'], '.3f')}x; beside an unordered control {_fmt(control)}/s), "
        f"ordered {_fmt(ordered)}/s; {res['ordering_out_of_order']} out of order in "
        f"{res['ordering_ordered_arrivals']} ordered arrivals"
    )


def _add(a: float | None, b: float | None) -> float | None:
    return a + b if a is not None and b is not None else None


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "n/a" if value is None else format(value, spec)
