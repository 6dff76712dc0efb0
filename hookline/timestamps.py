"""Epoch milliseconds as the RFC 3339 text receivers and API clients see."""

from __future__ import annotations

import time

__all__ = ["rfc3339"]

# Four-digit year always (strftime's %Y drops the zeros before year 1000).
_FORMAT = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z".format


def rfc3339(epoch_ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC with milliseconds: ``2024-05-31T16:08:37.999Z``."""
    # Integer arithmetic, no float seconds to round; cheap, as it runs for every attempt.
    seconds, millis = divmod(epoch_ms, 1000)
    return _FORMAT(*time.gmtime(seconds)[:6], millis)
