"""Body retention in the log sink's purge (issue 13, point 3), on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import pytest

from hookline.settings import Settings
from processors.logsink.app import LogSink
from tests.logrecords import delivery_result, now_ms
from tests.processors.logsink.test_logsink import (  # noqa: F401  (store_url is a fixture)
    Results,
    in_process,
    one_full_loop,
    open_url,
    sample,
    store_url,
)
from tests.support import wait_until

DAY_MS = 86_400_000


@pytest.mark.parametrize("body_days", [1, 0])
def test_bodies_go_after_their_days_and_the_metadata_after_its_own(
    settings: Settings,
    store_url: str,  # noqa: F811 (the imported fixture)
    body_days: int,
) -> None:
    settings = settings.replace(log_retention_days=30, log_body_retention_days=body_days)
    clock_s = now_ms() // 1000
    now = clock_s * 1000
    writer, reader = open_url(store_url), open_url(store_url)
    try:
        writer.insert_attempts([
            delivery_result("acct", "wh", "two-days", 1, attempted_at=now - 2 * DAY_MS, outcome="failed",
                            final=True, status=500, responseBodyExcerpt=b"boom"),
            delivery_result("acct", "wh", "half-a-day", 1, attempted_at=now - DAY_MS // 2),
            delivery_result("acct", "wh", "a-month", 1, attempted_at=now - 31 * DAY_MS),
        ])  # fmt: skip
        sink = LogSink(settings, store=writer, batch_wait=0.05, clock=lambda: float(clock_s))
        with in_process(sink):
            wait_until(
                lambda: reader.get_message("acct", "wh", "a-month") is None, 60, "the 31-day message purged"
            )
            one_full_loop(reader, Results(settings))
            assert sample(sink, "hookline_logsink_expired_bodies_total") == (1 if body_days else 0)
        old = reader.get_message("acct", "wh", "two-days")
        assert old is not None and old.message.status == "failed" and old.message.last_response_status == 500
        [a] = old.attempts
        assert (a.response_status, a.error_class) == (500, "http_5xx")
        assert a.latency_seconds == pytest.approx(0.042)
        if body_days:
            assert a.body_expired and a.request_body == b"" and a.response_excerpt == b""
        else:
            assert not a.body_expired and a.request_body and a.response_excerpt == b"boom"
        fresh = reader.get_message("acct", "wh", "half-a-day")
        assert fresh is not None and not fresh.attempts[0].body_expired and fresh.attempts[0].request_body
    finally:
        writer.close()
        reader.close()
