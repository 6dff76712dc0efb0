"""What an attempt may show of itself (pure): a URL without credentials, a bounded set of headers.

The sender reports each attempt as a :class:`~hookline.records.Exchange` built from these.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["bounded_headers", "public_url"]

_MAX_HEADERS = 64
_MAX_HEADER_VALUE = 1024


def public_url(url: str) -> str:
    """``url`` without credentials, query and fragment: what a result record may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def bounded_headers(items: Any) -> dict[str, str]:
    """At most 64 headers, each value cut at 1 KiB; repeated names joined with ``, ``."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            out[key] = (out[key] + ", " + value)[:_MAX_HEADER_VALUE]
        elif len(out) < _MAX_HEADERS:
            out[key] = value[:_MAX_HEADER_VALUE]
    return out
