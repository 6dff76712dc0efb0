"""Logging for every role: JSON lines in containers, a human format on a terminal.

A filter on the root handler redacts what must never reach a log: URL credentials, query
strings, ``whsec_`` secrets and signature values.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson

from hookline.settings import Settings

__all__ = ["RedactingFilter", "redact", "setup_logging"]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), r"\1***@"),  # scheme://user:pass@
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1***@"),  # scheme://token@
    (re.compile(r"(?i)(https?://[^\s?#\"']+)\?[^\s\"']*"), r"\1?***"),  # query strings may carry tokens
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_***"),
    (re.compile(r"(?i)(v1,)[A-Za-z0-9+/=]{20,}"), r"\1***"),
    (
        re.compile(
            r"(?i)(x-api-key|authorization|x-webhook-signature|webhook-signature)(['\"]?\s*[:=]\s*['\"]?)"
            r"[^\s,'\"}]+"
        ),
        r"\1\2***",
    ),
)

_STANDARD = set(vars(logging.makeLogRecord({})))

#: ``key=value`` pairs in hookline's own messages ("attempt message=msg_... webhook=wh_... outcome=failed")
#: that the JSON format also emits as fields of their own, so a log pipeline can filter on them.
_LIFTED = {
    "message": "message_id",
    "webhook": "webhook_id",
    "event": "event_id",
    "outcome": "outcome",
    "attempt": "attempt",
}
_PAIR = re.compile(r"(?<![\w.-])(message|webhook|event|outcome|attempt)=([^\s,;'\"()]+)")


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrite every record's message (and exception text) with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string must not kill the log call
            msg = str(record.msg)
        record.msg = redact(msg)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                if not isinstance(value, int | float | bool | None):
                    value = redact(str(value))  # extras bypass the filter, which rewrites only the message
                doc[key] = value
        if record.name.startswith("hookline"):
            for m in _PAIR.finditer(doc["msg"]):
                field, value = _LIFTED[m.group(1)], m.group(2)
                doc.setdefault(field, int(value) if value.isdigit() else value)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


def setup_logging(settings: Settings, role: str) -> None:
    """Install one redacting handler on the root logger (idempotent)."""
    import time

    fmt = settings.log_format
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter(role)
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(f"%(asctime)s {role:8} %(levelname)-7s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_hookline", False):
            root.removeHandler(h)
    handler._hookline = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # httpx logs full URLs (with credentials and tokens) at INFO (docs/architecture.md §9).
    for noisy in ("httpx", "httpcore", "aiokafka", "kafka", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
