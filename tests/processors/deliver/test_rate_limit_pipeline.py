"""The rate limit per webhook in a real worker (issue 12): real broker, one ``hookline deliver``
process, real receivers on 127.0.0.1.

A webhook limited to 50 requests per second and an unlimited one each get 5,000 tasks at once: the
limited receiver never sees more than 51 requests in any second (a sliding window), everything
arrives, nothing fails, and the unlimited webhook is done long before. A ``Retry-After`` answer
pauses its webhook, limited or not, for that long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline.clients import create_topics
from hookline.settings import Settings
from tests.processors.deliver.deliver_harness import Harness, max_in_window, metric
from tests.processors.deliver.receivers import Got, Receiver, Reply
from tests.support import TopicReader, wait_until

pytestmark = pytest.mark.kafka

RATE = 50
EVENTS = 5_000


def limited(harness: Harness, webhook_id: str, url: str, rate: int | None) -> None:
    """A webhook with ``rateLimit`` = ``rate``, written to the config topic."""
    hook = dataclasses.replace(harness.webhook(webhook_id, url, write=False), rate_limit=rate)
    harness.hooks[webhook_id] = hook
    harness.configs.put(hook)
    harness.configs.flush()


def results_of(settings: Settings, webhook_ids: set[str], until: Any, timeout: float) -> list[dict[str, Any]]:
    reader = TopicReader(settings, "webhook-results")
    try:

        def enough() -> list[dict[str, Any]] | None:
            reader.poll(0.2)
            mine = [r for r in reader.decoded("DeliveryResult") if r["webhookId"] in webhook_ids]
            return mine if until(mine) else None

        found = wait_until(enough, timeout, f"results of {sorted(webhook_ids)}")
        assert found is not None
        return found
    finally:
        reader.close()


@pytest.fixture
def tiered(settings: Settings) -> Settings:
    """The test settings with production-like retry tiers (5 s, 30 s) instead of the suite's 0.5-1.5 s.

    A task the rate limit puts back is due when its turn comes (up to ~100 s here) and passes through
    the tiers until then; with sub-second tiers it would be re-read many times a second.
    """
    tiered = dataclasses.replace(settings, retry_schedule=(5.0, 30.0))
    create_topics(tiered)  # the two tiers; the rest exists (the fixture drops the prefix afterwards)
    return tiered


@pytest.fixture
def harness(tiered: Settings, tmp_path: Path) -> Iterator[Harness]:
    with contextlib.closing(Harness(tiered, tmp_path)) as h:
        yield h


@pytest.mark.slow
def test_a_webhook_limited_to_50_per_second_gets_5000_events_paced_while_an_unlimited_one_runs_free(
    harness: Harness, tiered: Settings
) -> None:
    receiver = Receiver().start()
    try:
        run = uuid.uuid4().hex[:6]
        slow, free = f"limited-{run}", f"free-{run}"
        limited(harness, slow, receiver.url("/limited"), RATE)
        limited(harness, free, receiver.url("/free"), None)
        _, port = harness.worker(HOOKLINE_RETRY_JITTER="0")
        tasks = {wid: [harness.task(wid) for _ in range(EVENTS)] for wid in (slow, free)}
        interleaved = [t for pair in zip(tasks[slow], tasks[free], strict=True) for t in pair]
        started = time.time()
        harness.send(interleaved)
        published = time.time() - started

        def arrived(path: str) -> list[Got] | None:
            # Cheap (the receiver shares this process): duplicates are looked for once all arrived.
            got = receiver.got(path)
            return got if len(got) >= EVENTS else None

        free_got = wait_until(
            lambda: arrived("/free"), 120, f"{EVENTS} deliveries to the unlimited webhook", 0.2
        )
        assert free_got is not None
        free_done = max(g.at for g in free_got) - started
        # Meanwhile the limited webhook's tasks wait, in memory and in the retry tiers.
        text = harness.metrics(port)
        assert metric(text, "hookline_delivery_rate_limited_webhooks") == 1
        slow_got = wait_until(
            lambda: arrived("/limited"), 600, f"{EVENTS} deliveries to the limited webhook", 1.0
        )
        assert slow_got is not None
        slow_done = max(g.at for g in slow_got) - started

        # Every message arrived exactly once (nothing dropped; a put-back task is not sent twice).
        for wid, got in ((slow, slow_got), (free, free_got)):
            ids = Counter(g.headers["x-webhook-message-id"] for g in got)
            assert set(ids) == {t["messageId"] for t in tasks[wid]}
            assert max(ids.values()) == 1, [m for m, n in ids.items() if n > 1][:5]
        # Nothing failed: every result is delivered, or deferred by the rate limit without a request.
        results = results_of(
            tiered,
            {slow, free},
            lambda rs: sum(r["outcome"] == "delivered" for r in rs) >= 2 * EVENTS,
            120,
        )
        arrivals = [g.at for g in slow_got]
        peak = max_in_window(arrivals)
        per_second = Counter(int(a - started) for a in arrivals)
        span = max(arrivals) - min(arrivals)
        # The worker's own clock: when each attempt started (ms), from its results.
        sent = {
            r["messageId"]: r["attemptedAt"] / 1000
            for r in results
            if r["webhookId"] == slow and r["outcome"] == "delivered"
        }
        sent_peak = max_in_window(sent.values())
        # From the worker's attempt to the receiver's handler (same machine, same clock). On a loaded
        # machine either process may be off the CPU for a while, which bunches arrivals that left
        # evenly spaced: a window of arrivals then holds what left over 1 s + this jitter.
        transit = [g.at - sent[g.headers["x-webhook-message-id"]] for g in slow_got]
        jitter = max(transit) - min(transit)
        print(
            f"published {2 * EVENTS} tasks in {published:.1f}s; unlimited done after {free_done:.1f}s; "
            f"limited done after {slow_done:.1f}s ({(EVENTS - 1) / span:.1f}/s over {span:.1f}s); "
            f"most in any 1 s window: {peak} arrived, {sent_peak} sent; busiest calendar second: "
            f"{max(per_second.values())}; transit {min(transit) * 1000:.1f}-{max(transit) * 1000:.1f} ms"
        )
        assert sent_peak <= RATE + 1, sent_peak  # what the worker controls, exactly
        assert peak <= RATE + 1 + int(jitter * RATE), (peak, jitter)  # 51 when the machine keeps up
        assert span >= (EVENTS - RATE - 1) / RATE  # it was paced, not sent at once
        assert free_done < slow_done / 2, (free_done, slow_done)

        outcomes = Counter((r["webhookId"], r["outcome"]) for r in results)
        assert set(outcomes) <= {(slow, "delivered"), (slow, "deferred"), (free, "delivered")}, outcomes
        deferred = [r for r in results if r["outcome"] == "deferred"]
        assert all(r["errorClass"] == "rate_limited" and r["responseStatus"] is None for r in deferred)
        assert all(r["errorMessage"].startswith("rate limit of 50 requests per second") for r in deferred)
        assert all(r["attempt"] == 1 and not r["final"] and r["nextRetryAt"] for r in deferred)
        print(f"limited webhook: {len(deferred)} deferred results for {EVENTS} messages")
        assert deferred, "5,000 at 50/s cannot all wait in memory (1,250 may)"

        text = harness.wait_metric(
            port, "hookline_delivery_deferred_total", len(deferred), 30, reason="rate_limit"
        )
        assert metric(text, "hookline_delivery_deferred_total", reason="rate_limit") == len(deferred)
        assert metric(text, "hookline_delivery_rate_limited_total", where="deferred") == len(deferred)
        assert (
            metric(text, "hookline_delivery_rate_limited_total", where="memory") >= EVENTS - len(deferred) - 1
        )
        assert metric(text, "hookline_deliveries_total", outcome="failed") == 0
        assert metric(text, "hookline_delivery_rate_limited_webhooks") == 0
    finally:
        receiver.stop()


def test_a_retry_after_pauses_its_webhook_limited_or_not_for_that_long(harness: Harness) -> None:
    receiver = Receiver().start()
    pause = 2.0
    try:
        run = uuid.uuid4().hex[:6]
        paced, free = f"paced-{run}", f"free-{run}"
        limited(harness, paced, receiver.url("/paced"), 20)
        limited(harness, free, receiver.url("/free"), None)

        def busy(n: int, got: Got) -> Reply:
            if n == 10:
                return Reply(429, headers={"Retry-After": f"{pause:g}"})
            return Reply(delay=0.01)

        receiver.set("/paced", busy)
        receiver.set("/free", busy)
        harness.worker(HOOKLINE_RETRY_JITTER="0")
        counts = {paced: 40, free: 300}
        tasks = {wid: [harness.task(wid) for _ in range(n)] for wid, n in counts.items()}
        harness.send(tasks[paced] + tasks[free])

        def delivered(path: str, wid: str) -> list[Got] | None:
            got = receiver.got(path)
            ok = {g.headers["x-webhook-message-id"] for g in got if g.n != 10}
            return got if len(ok) >= counts[wid] else None

        got_by: dict[str, list[Got]] = {}
        for path, wid in (("/paced", paced), ("/free", free)):
            got = wait_until(lambda p=path, w=wid: delivered(p, w), 90, f"every message of {wid}")
            assert got is not None
            got_by[wid] = got
        results = results_of(
            harness.settings,
            set(counts),
            lambda rs: sum(r["outcome"] == "delivered" for r in rs) >= sum(counts.values()),
            60,
        )
        for wid, got in got_by.items():
            refused = next(g for g in got if g.n == 10)
            arrived = sorted(g.at - refused.at for g in got if g.at > refused.at)
            # By the worker's clock: from when the 429 answer came back, no attempt starts for as long
            # as it asked (the few started while it was on its way are older), then the rest.
            mine = [r for r in results if r["webhookId"] == wid and r["errorClass"] != "rate_limited"]
            [answer] = [r for r in mine if r["responseStatus"] == 429]
            answered = answer["attemptedAt"] / 1000 + answer["latencySeconds"]
            started = sorted(
                r["attemptedAt"] / 1000 - answered for r in mine if r["attemptedAt"] / 1000 > answered
            )
            print(
                f"{wid}: {len(arrived)} requests arrived after the 429, the first at "
                f"{[round(d, 3) for d in arrived[:3]]}; attempts started after the answer at "
                f"{[round(d, 3) for d in started[:3]]}"
            )
            quiet = [d for d in started if 0.2 < d < pause - 0.05]
            assert quiet == [], quiet
            assert sum(d >= pause - 0.05 for d in started) >= (10 if wid == paced else 100)
            assert sum(d >= pause - 0.1 for d in arrived) >= (10 if wid == paced else 100)
            retried = [
                g for g in got if g.headers["x-webhook-message-id"] == refused.headers["x-webhook-message-id"]
            ]
            assert len(retried) == 2 and retried[1].at - refused.at >= pause - 0.05
    finally:
        receiver.stop()
