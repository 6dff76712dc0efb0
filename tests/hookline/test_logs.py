"""Logging: JSON lines with the role, ids and outcome in containers, text on a terminal, and no
secret or URL credential in either."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hookline.logs import JsonFormatter, RedactingFilter, setup_logging
from hookline.settings import load_settings


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("deliver"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("hookline.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_role_level_logger_and_ids_lifted_from_the_message(capture):
    logger, stream = capture
    logger.info(
        "attempt message=%s webhook=%s attempt=%d outcome=%s status=%s",
        "msg_abc", "wh_1", 3, "failed", 500,
    )  # fmt: skip
    (doc,) = lines(stream)
    assert doc["role"] == "deliver" and doc["level"] == "info" and doc["logger"] == "hookline.test-logs"
    assert doc["message_id"] == "msg_abc" and doc["webhook_id"] == "wh_1"
    assert doc["attempt"] == 3 and doc["outcome"] == "failed"
    assert doc["ts"].endswith("Z")


def test_extra_fields_are_kept_and_win_over_lifted_ones(capture):
    logger, stream = capture
    logger.info("webhook created webhook=wh_9", extra={"webhook_id": "wh_1", "event_id": "evt_2", "count": 2})
    (doc,) = lines(stream)
    assert doc["webhook_id"] == "wh_1" and doc["event_id"] == "evt_2" and doc["count"] == 2


def test_third_party_messages_are_not_parsed_for_ids(capture):
    logger, stream = capture
    other = logging.getLogger("aiokafka.test-logs")
    other.handlers = logger.handlers
    other.propagate = False
    try:
        other.warning("event=rebalance outcome=ok")
    finally:
        other.handlers = []
    (doc,) = lines(stream)
    assert "event_id" not in doc and "outcome" not in doc


SECRETS = [
    "https://user:hunter2@receiver.example/hook",
    "https://tok3n@receiver.example/hook",
    "https://receiver.example/hook?token=s3cr3t",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_and_url_credentials_never_reach_a_json_line(capture, secret: str):
    logger, stream = capture
    logger.warning("posting to %s", secret, extra={"url": secret, "detail": {"header": secret}})
    try:
        raise RuntimeError(f"failed on {secret}")
    except RuntimeError:
        logger.exception("boom")
    text = stream.getvalue()
    for needle in ("hunter2", "tok3n", "s3cr3t", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "g0hM9SsE"):
        assert needle not in text
    assert "receiver.example" in text or "whsec_***" in text or "v1,***" in text


def test_auto_format_is_json_without_a_terminal():
    code = (
        "import logging, sys\n"
        "from hookline.logs import setup_logging\n"
        "from hookline.settings import load_settings\n"
        "setup_logging(load_settings({'HOOKLINE_LOG_FORMAT': 'auto'}), role='router')\n"
        "logging.getLogger('hookline.x').info('routed event=evt_1 outcome=delivered')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    doc = json.loads(out.stderr.strip())  # stderr is a pipe here, as in a container
    assert doc["role"] == "router" and doc["event_id"] == "evt_1" and doc["outcome"] == "delivered"


def test_text_format_has_the_role_and_redacts(capsys: pytest.CaptureFixture[str]):
    root = logging.getLogger()
    level = root.level
    setup_logging(load_settings({"HOOKLINE_LOG_FORMAT": "text"}), role="api")
    try:
        logging.getLogger("hookline.y").warning("calling https://a:b@x.example/")
    finally:
        for h in list(root.handlers):
            if getattr(h, "_hookline", False):
                root.removeHandler(h)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert " api " in err and "https://***@x.example/" in err and "a:b@" not in err
