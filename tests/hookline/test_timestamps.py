"""hookline.timestamps: RFC 3339 text of epoch milliseconds, against vectors and datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookline.timestamps import rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (1999, "1970-01-01T00:00:01.999Z"),  # milliseconds are cut, never rounded into the second
        (59_999, "1970-01-01T00:00:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (951_782_400_123, "2000-02-29T00:00:00.123Z"),  # a leap day
        (1_614_265_330_001, "2021-02-25T15:02:10.001Z"),
        (1_717_171_717_999, "2024-05-31T16:08:37.999Z"),
        (1_735_689_599_999, "2024-12-31T23:59:59.999Z"),  # the last millisecond of a leap year
        (4_102_444_800_120, "2100-01-01T00:00:00.120Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),  # four-digit year
    ],
)
def test_vectors(epoch_ms: int, text: str) -> None:
    assert rfc3339(epoch_ms) == text


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_agrees_with_datetime(epoch_ms: int) -> None:
    moment = EPOCH + timedelta(milliseconds=epoch_ms)
    assert rfc3339(epoch_ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert datetime.fromisoformat(rfc3339(epoch_ms)) == moment
