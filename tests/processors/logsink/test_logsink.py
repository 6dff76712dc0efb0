"""``hookline logsink`` as a process against the real broker: results in, log rows out."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.logstore import LogStore, StoreRejected, StoreUnavailable
from hookline.logstore.postgres import PostgresStore
from hookline.logstore.sqlite import SqliteStore
from hookline.settings import Settings
from processors.logsink.app import LogSink
from schemas.codec import decode
from tests.logrecords import delivery_result, now_ms
from tests.support import Role, TopicReader, role_env, scaled, wait_until

pytestmark = pytest.mark.kafka

DAY_MS = 86_400_000


class Sink:
    """One ``hookline logsink`` process and the knobs a test needs."""

    def __init__(self, settings: Settings, tmp_path: Path, database_url: str, *args: str) -> None:
        self.port = free_port()
        name = f"logsink-{uuid.uuid4().hex[:6]}.log"
        self.role = Role(
            ["logsink", "--metrics-port", str(self.port), *args],
            role_env(settings, HOOKLINE_DATABASE_URL=database_url),
            tmp_path / name,
        )

    def start(self, ready: bool = True) -> Sink:
        self.role.start()
        if ready:
            self.role.wait_ready(self.port, timeout=60)
        return self

    def stop(self) -> int | None:
        return self.role.stop()

    def metric(self, name: str, labels: str = "") -> float:
        status, body = self.role.get(self.port, "/metrics")
        if status == 0 and self.role.proc is not None and self.role.proc.poll() is None:
            return 0.0  # still starting: nothing counted yet
        assert status == 200, f"/metrics answered {status}\n{self.role.log_tail()}"
        m = re.search(rf"^{re.escape(name + labels)} (\S+)$", body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def lag_is_zero(self) -> bool:
        return self.metric("hookline_consumer_lag_records", '{role="logsink"}') == 0 and self.ready()

    def ready(self) -> bool:
        return self.role.get(self.port, "/readyz")[0] == 200


class Results:
    """Produce DeliveryResult records (and anything else) to the results topic."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic("webhook-results")
        self.producer = Producer(producer_config(settings))

    def put(self, *records: dict[str, Any]) -> None:
        for r in records:
            self.producer.produce(self.topic, key=r.key, value=r.encode())
        self.flush()

    def raw(self, key: bytes, value: bytes | None) -> None:
        self.producer.produce(self.topic, key=key, value=value)
        self.flush()

    def flush(self) -> None:
        assert self.producer.flush(scaled(60)) == 0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'logs.sqlite3'}"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[LogStore]:
    s = SqliteStore(sqlite_url.removeprefix("sqlite:///"))
    yield s
    s.close()


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    started: list[Sink] = []
    yield started
    for sink in started:
        sink.role.kill()


def traffic(accounts: int, webhooks: int, messages: int) -> list[dict[str, Any]]:
    """Three attempts per message (503, 500, then 200), spread over accounts and webhooks."""
    t0 = now_ms() - 600_000
    out = []
    for i in range(messages):
        acct = f"acct{i % accounts}"
        wh = f"{acct}-wh{i % webhooks}"
        msg = f"msg-{uuid.uuid4().hex[:10]}"
        out.append(delivery_result(acct, wh, msg, 1, attempted_at=t0 + i, outcome="failed", status=503))
        out.append(delivery_result(acct, wh, msg, 2, attempted_at=t0 + i + 5000, outcome="failed",
                                   status=500))
        out.append(delivery_result(acct, wh, msg, 3, attempted_at=t0 + i + 305_000, outcome="delivered"))
    return out


def all_delivered(store: LogStore, records: list[dict[str, Any]]) -> bool:
    by_message = {(r.account_id, r.webhook_id, r.message_id) for r in records}
    for acct, wh, msg in by_message:
        detail = store.get_message(acct, wh, msg)
        if detail is None or len(detail.attempts) < 3:
            return False
        assert len(detail.attempts) == 3 and detail.message.attempt_count == 3
        assert detail.message.status == "delivered"
    return True


def count_attempts(store: LogStore, records: list[dict[str, Any]]) -> int:
    keys = {(r.account_id, r.webhook_id, r.message_id) for r in records}
    total = 0
    for key in keys:
        detail = store.get_message(*key)
        total += len(detail.attempts) if detail else 0
    return total


def test_results_show_up_in_the_store_within_5_seconds(
    settings: Settings, tmp_path: Path, sqlite_url: str, store: LogStore, sinks: list[Sink]
) -> None:
    sink = Sink(settings, tmp_path, sqlite_url).start()
    sinks.append(sink)
    assert sink.role.get(sink.port, "/healthz")[0] == 200
    records = traffic(accounts=2, webhooks=4, messages=150)
    results = Results(settings)
    results.put(*records)
    started = time.monotonic()
    # The claim itself (5 s), stretched only by HOOKLINE_TEST_TIMEOUT_SCALE on a slow machine.
    wait_until(lambda: all_delivered(store, records), 5.0, "450 attempts in the store", interval=0.1)
    took = time.monotonic() - started
    assert took < scaled(5.0)
    wait_until(sink.lag_is_zero, 60, "consumer lag 0")
    assert sink.metric("hookline_logsink_results_stored_total") == 450
    assert sink.metric("hookline_logsink_results_duplicate_total") == 0
    assert sink.metric("hookline_logsink_batch_write_seconds_count") >= 1
    last = store.last_status_by_webhook("acct0")
    assert set(last) == {"acct0-wh0", "acct0-wh2"} and {d.status for d in last.values()} == {"delivered"}
    assert sink.stop() == 0


def test_reading_the_topic_again_does_not_duplicate_rows(
    settings: Settings, tmp_path: Path, sqlite_url: str, store: LogStore, sinks: list[Sink]
) -> None:
    records = traffic(accounts=1, webhooks=3, messages=40)
    Results(settings).put(*records)
    first = Sink(settings, tmp_path, sqlite_url).start()
    sinks.append(first)
    wait_until(lambda: all_delivered(store, records), 60, "first read stored")
    assert first.stop() == 0

    # The same group again: offsets were committed at SIGTERM, nothing is read twice.
    again = Sink(settings, tmp_path, sqlite_url).start()
    sinks.append(again)
    wait_until(again.lag_is_zero, 60, "caught up")
    extra = delivery_result("acct0", "acct0-wh0", "after-restart", 1)
    Results(settings).put(extra)
    wait_until(lambda: store.get_message("acct0", "acct0-wh0", "after-restart"), 60, "new record stored")
    assert again.metric("hookline_logsink_results_duplicate_total") == 0
    assert again.stop() == 0

    # Rebuild from the beginning: every record is read again and recognised as stored.
    rebuild = Sink(settings, tmp_path, sqlite_url, "--from-beginning").start()
    sinks.append(rebuild)
    total = len(records) + 1
    wait_until(lambda: rebuild.metric("hookline_logsink_results_duplicate_total") == total, 60,
               f"{total} duplicates recognised")
    assert rebuild.metric("hookline_logsink_results_stored_total") == 0
    assert count_attempts(store, [*records, extra]) == total
    assert all_delivered(store, records)
    assert rebuild.stop() == 0


def test_a_poison_record_goes_to_the_dlq_once_and_the_sink_keeps_going(
    settings: Settings, tmp_path: Path, sqlite_url: str, store: LogStore, sinks: list[Sink]
) -> None:
    sink = Sink(settings, tmp_path, sqlite_url).start()
    sinks.append(sink)
    results = Results(settings)
    before = delivery_result("acct", "wh-poison", "before", 1)
    after = delivery_result("acct", "wh-poison", "after", 1)
    results.put(before)
    results.raw(b"wh-poison", b"\x00not avro at all")
    results.raw(b"wh-poison", None)
    results.put(after)
    wait_until(lambda: store.get_message("acct", "wh-poison", "after"), 60, "the record after the poison")
    assert store.get_message("acct", "wh-poison", "before") is not None

    dlq = TopicReader(settings, "webhook-dlq")
    try:
        dlq.wait_for(2, 60)
        letters = dlq.decoded("DeadLetter")
        assert [(d["stage"], d["reason"]) for d in letters] == [
            ("logsink", "bad_magic"), ("logsink", "tombstone")
        ]
        assert letters[0]["value"] == b"\x00not avro at all" and letters[0]["key"] == b"wh-poison"
        assert letters[0]["sourceTopic"] == settings.topic("webhook-results")
        assert letters[1]["sourceOffset"] == letters[0]["sourceOffset"] + 1
        assert sink.metric("hookline_logsink_dead_lettered_total", '{reason="bad_magic"}') == 1
        assert sink.metric("hookline_logsink_dead_lettered_total", '{reason="tombstone"}') == 1
        assert sink.stop() == 0

        # After a restart the poison is behind the committed offset: not dead-lettered again.
        again = Sink(settings, tmp_path, sqlite_url).start()
        sinks.append(again)
        later = delivery_result("acct", "wh-poison", "later", 1)
        results.put(later)
        wait_until(lambda: store.get_message("acct", "wh-poison", "later"), 60, "a record after the restart")
        wait_until(again.lag_is_zero, 60, "caught up")
        dlq.poll(1.0)
        assert len(dlq.records) == 2
        first_letter = decode(dlq.records[0].value(), "DeadLetter")
        assert first_letter["sourcePartition"] == letters[1]["sourcePartition"]
        assert again.stop() == 0
    finally:
        dlq.close()


def test_sigterm_finishes_the_batch_commits_and_exits_0(
    settings: Settings, tmp_path: Path, sqlite_url: str, store: LogStore, sinks: list[Sink]
) -> None:
    records = traffic(accounts=1, webhooks=6, messages=1000)  # 3,000 results
    results = Results(settings)
    sink = Sink(settings, tmp_path, sqlite_url, "--batch-size", "50").start()
    sinks.append(sink)
    produced = threading.Event()

    def produce() -> None:  # a steady stream, so that SIGTERM lands in the middle of it
        for start in range(0, len(records), 30):
            results.put(*records[start : start + 30])
            time.sleep(0.03)
        produced.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: sink.metric("hookline_logsink_results_stored_total") >= 300, 60, "first batches")
        assert not produced.is_set(), "the stream ended before SIGTERM; the test proves nothing"
        assert sink.stop() == 0
    finally:
        producer.join(60)
    assert "SIGTERM received" in sink.role.log_tail(200)
    stored_first = count_attempts(store, records)
    assert 300 <= stored_first < len(records)

    again = Sink(settings, tmp_path, sqlite_url).start()
    sinks.append(again)
    wait_until(lambda: all_delivered(store, records), 60, "the rest after the restart")
    # Every batch written before SIGTERM had its offsets committed: nothing was read twice.
    assert again.metric("hookline_logsink_results_duplicate_total") == 0
    assert again.metric("hookline_logsink_results_stored_total") == len(records) - stored_first
    assert again.stop() == 0


def test_retention_purge_runs_in_the_sink(
    settings: Settings, tmp_path: Path, sqlite_url: str, store: LogStore, sinks: list[Sink]
) -> None:
    now = now_ms()
    store.insert_attempts([
        delivery_result("acct", "wh", "ancient", 1, attempted_at=now - 45 * DAY_MS),
        delivery_result("acct", "wh", "recent", 1, attempted_at=now - 29 * DAY_MS),
    ])
    sink = Sink(settings, tmp_path, sqlite_url, "--purge-interval", "0.5").start()
    sinks.append(sink)
    wait_until(lambda: store.get_message("acct", "wh", "ancient") is None, 60, "the old message purged")
    assert store.get_message("acct", "wh", "recent") is not None
    assert sink.metric("hookline_logsink_purged_messages_total") == 1
    assert sink.stop() == 0


def test_postgres_store_and_a_database_that_appears_late(
    settings: Settings, tmp_path: Path, postgres_server: str, sinks: list[Sink]
) -> None:
    name = f"late_{uuid.uuid4().hex[:8]}"
    url = postgres_server.rpartition("/")[0] + f"/{name}"
    sink = Sink(settings, tmp_path, url).start(ready=False)
    sinks.append(sink)
    wait_until(lambda: "not available yet" in sink.role.log_tail(), 60, "the missing database reported")
    assert not sink.ready()
    assert sink.role.get(sink.port, "/healthz")[0] == 200  # alive, waiting
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        sink.role.wait_ready(sink.port, timeout=60)
        records = traffic(accounts=2, webhooks=2, messages=30)
        Results(settings).put(*records)
        pg = PostgresStore(url)
        try:
            wait_until(lambda: all_delivered(pg, records), 60, "90 attempts in PostgreSQL", interval=0.1)
        finally:
            pg.close()
        assert sink.stop() == 0
    finally:
        sink.role.kill()
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class FlakyStore:
    """A real store that can be made unavailable, or refuse chosen messages, on demand."""

    def __init__(self, inner: LogStore) -> None:
        self.inner = inner
        self.down = False
        self.refuse: set[str] = set()
        self.failed_writes = 0

    def insert_attempts(self, results: Any) -> int:
        if self.down:
            self.failed_writes += 1
            raise StoreUnavailable("database is down (test)")
        if any(r.message_id in self.refuse for r in results):
            raise StoreRejected("value out of range (test)")
        return self.inner.insert_attempts(results)

    def ping(self) -> bool:
        return not self.down

    def purge_older_than(self, cutoff: Any, *, max_messages: int | None = None) -> Any:
        if self.down:
            raise StoreUnavailable("database is down (test)")
        return self.inner.purge_older_than(cutoff, max_messages=max_messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sample(sink: LogSink, name: str, **labels: str) -> float:
    return sink.registry.get_sample_value(name, labels) or 0.0


@contextmanager
def in_process(sink: LogSink) -> Iterator[LogSink]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="logsink")
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join(scaled(60))
        assert not thread.is_alive(), "the sink did not stop"
        assert not errors, errors


def test_an_unavailable_store_holds_the_batch_until_it_is_back(
    settings: Settings, store: LogStore
) -> None:
    flaky = FlakyStore(store)
    flaky.down = True
    sink = LogSink(settings, store=cast(LogStore, flaky), batch_wait=0.05)
    dlq = TopicReader(settings, "webhook-dlq")
    with in_process(sink):
        wait_until(lambda: sink.assigned, 60, "partitions assigned")
        records = traffic(accounts=1, webhooks=3, messages=40)
        results = Results(settings)
        results.put(*records[:60])
        results.raw(records[0].key, b"junk in a batch that fails")
        results.put(*records[60:])
        wait_until(lambda: flaky.failed_writes >= 3, 60, "writes retried while the store is down")
        assert not sink.ready() and sink.healthy()
        assert sample(sink, "hookline_logsink_store_errors_total") >= 3
        assert count_attempts(store, records) == 0
        assert dlq.poll(0.5) == []  # nothing is dead-lettered before its batch is written
        flaky.down = False
        wait_until(lambda: all_delivered(store, records), 60, "every result once the store is back")
        wait_until(sink.ready, 60, "ready again")
        assert sample(sink, "hookline_logsink_results_stored_total") == len(records)
        assert sample(sink, "hookline_logsink_results_duplicate_total") == 0
        dlq.wait_for(1, 60)
        dlq.poll(1.0)
        assert len(dlq.records) == 1  # the poison of the retried batch, once
    dlq.close()


def test_a_record_the_store_refuses_goes_to_the_dlq_and_the_rest_is_stored(
    settings: Settings, store: LogStore
) -> None:
    flaky = FlakyStore(store)
    records = traffic(accounts=1, webhooks=1, messages=10)
    refused = records[4].message_id
    flaky.refuse.add(refused)
    Results(settings).put(*records)
    sink = LogSink(settings, store=cast(LogStore, flaky))
    dlq = TopicReader(settings, "webhook-dlq")
    try:
        with in_process(sink):
            others = [r for r in records if r.message_id != refused]
            wait_until(lambda: all_delivered(store, others), 60, "the other results stored")
            dlq.wait_for(3, 60)  # the refused message's three attempts
            letters = dlq.decoded("DeadLetter")
            assert {d["reason"] for d in letters} == {"store_rejected"}
            assert sorted(decode(d["value"], "DeliveryResult")["attempt"] for d in letters) == [1, 2, 3]
            assert sample(sink, "hookline_logsink_dead_lettered_total", reason="store_rejected") == 3
            assert store.get_message("acct0", records[4].webhook_id, refused) is None
    finally:
        dlq.close()


# --- retention, pinned to the millisecond ------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh log store of each kind: real SQLite, real PostgreSQL (tests/postgres.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retention.sqlite3'}"
    return cast(str, request.getfixturevalue("postgres_url"))


def open_url(url: str) -> LogStore:
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return PostgresStore(url)


def one_full_loop(store: LogStore, results: Results) -> None:
    """Return once the sink has finished at least one pass of its loop (and so its first purge).

    The second marker is read in a later pass than the one that stored the first, and every pass ends
    with the housekeeping (lag, ping, purge) before the next one reads.
    """
    for marker in ("marker-1", "marker-2"):
        results.put(delivery_result("acct-marker", "wh-marker", marker, 1))
        wait_until(lambda m=marker: store.get_message("acct-marker", "wh-marker", m), 60, f"{marker} stored")


@pytest.mark.parametrize("days", [None, 7])
def test_retention_keeps_a_message_exactly_the_configured_days(
    settings: Settings, store_url: str, days: int | None
) -> None:
    if days is None:
        assert settings.log_retention_days == 30  # the default: 30 days (README, settings table)
        days = 30
    else:
        settings = settings.replace(log_retention_days=days)
    clock_s = now_ms() // 1000  # whole seconds: the cutoff is then exact to the millisecond
    cutoff_ms = clock_s * 1000 - days * DAY_MS
    writer, reader = open_url(store_url), open_url(store_url)
    try:
        writer.insert_attempts([
            delivery_result("acct", "wh", "expired", 1, attempted_at=cutoff_ms - 1),
            # First attempt long before the cutoff, last one just inside: the message is kept whole.
            delivery_result("acct", "wh", "kept", 1, attempted_at=cutoff_ms - 5 * DAY_MS, outcome="failed",
                            final=False),
            delivery_result("acct", "wh", "kept", 2, attempted_at=cutoff_ms + 1),
            delivery_result("acct", "wh", "at-cutoff", 1, attempted_at=cutoff_ms),
        ])
        sink = LogSink(settings, store=writer, batch_wait=0.05, clock=lambda: float(clock_s))
        with in_process(sink):
            wait_until(lambda: reader.get_message("acct", "wh", "expired") is None, 60,
                       f"the message last attempted {days} days and 1 ms ago purged")
            one_full_loop(reader, Results(settings))
            assert sample(sink, "hookline_logsink_purged_messages_total") == 1
        kept = reader.get_message("acct", "wh", "kept")
        assert kept is not None and len(kept.attempts) == 2
        assert reader.get_message("acct", "wh", "at-cutoff") is not None  # exactly `days` old: not yet
    finally:
        writer.close()
        reader.close()


def test_retention_0_keeps_every_message_forever(settings: Settings, store_url: str) -> None:
    settings = settings.replace(log_retention_days=0)
    clock_s = now_ms() // 1000
    writer, reader = open_url(store_url), open_url(store_url)
    try:
        writer.insert_attempts([
            delivery_result("acct", "wh", "ten-years", 1, attempted_at=clock_s * 1000 - 3650 * DAY_MS),
            delivery_result("acct", "wh", "a-second", 1, attempted_at=clock_s * 1000 - 1000),
        ])
        sink = LogSink(settings, store=writer, batch_wait=0.05, clock=lambda: float(clock_s))
        with in_process(sink):
            wait_until(lambda: sink.assigned, 60, "partitions assigned")
            one_full_loop(reader, Results(settings))
            assert sample(sink, "hookline_logsink_purged_messages_total") == 0
        assert reader.get_message("acct", "wh", "ten-years") is not None
        assert reader.get_message("acct", "wh", "a-second") is not None
    finally:
        writer.close()
        reader.close()
