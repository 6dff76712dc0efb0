"""The per-webhook backlog share of a delivery worker, pinned: a quarter of the worker's buffer
(``HOOKLINE_DELIVER_MAX_BUFFERED``), never less than the webhook's own concurrency
(``HOOKLINE_DELIVER_WEBHOOK_CONCURRENCY``). Past it a webhook's new tasks wait in the first retry tier."""

from __future__ import annotations

import pytest

from hookline.settings import load_settings
from processors.deliver.handler import webhook_backlog


def test_with_the_default_settings_one_webhook_holds_1250_tasks() -> None:
    s = load_settings({})
    assert (s.deliver_webhook_concurrency, s.deliver_max_buffered) == (16, 5000)
    assert webhook_backlog(s.deliver_webhook_concurrency, s.deliver_max_buffered) == 1250


@pytest.mark.parametrize(
    ("per_webhook", "max_buffered", "backlog"),
    [
        (16, 5000, 1250),
        (16, 5003, 1250),  # a quarter, rounded down
        (16, 5004, 1251),
        (16, 100, 25),
        (16, 68, 17),
        (16, 64, 16),  # a quarter is exactly the concurrency
        (16, 63, 16),  # below it: the concurrency, so a webhook can always fill its share
        (16, 1, 16),
        (1, 8, 2),
        (1, 7, 1),
        (256, 5000, 1250),
        (2000, 5000, 2000),
    ],
)
def test_a_quarter_of_the_buffer_and_at_least_the_concurrency(
    per_webhook: int, max_buffered: int, backlog: int
) -> None:
    assert webhook_backlog(per_webhook, max_buffered) == backlog
