"""The demo receiver's verification, against headers made by hookline.signing and by hand."""

from __future__ import annotations

import time

import pytest

from hookline.local.receiver import verify
from hookline.signing import Signer

BODY = b'{"contact":{"id":1}}'


def _headers(secrets: list[str], body: bytes = BODY, ts: int | None = None) -> dict[str, str]:
    hs = Signer(secrets).headers(
        event_type="CONTACT_CREATED",
        msg_id="msg_abc",
        attempt_id="att_1",
        event_time_ms=0,
        timestamp=ts if ts is not None else int(time.time()),
        body=body,
        user_agent="hookline/test",
    )
    return {k.lower(): v for k, v in hs}


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a typed secret!"])
def test_valid_request_verifies(secret: str):
    assert verify(secret, _headers([secret]), BODY, time.time()).ok


def test_rotated_secret_list_verifies_with_the_old_secret():
    assert verify(
        "old-secret-123", _headers(["new-secret-456", "old-secret-123"]), BODY, time.time()
    ).standard_ok


def test_tampered_body_wrong_secret_and_stale_timestamp_are_refused():
    h = _headers(["s3cret-value"])
    bad_body = verify("s3cret-value", h, BODY + b" ", time.time())
    assert not bad_body.systeme_ok and not bad_body.standard_ok
    assert not verify("other-secret", h, BODY, time.time()).ok
    stale = verify("s3cret-value", _headers(["s3cret-value"], ts=int(time.time()) - 3600), BODY, time.time())
    assert stale.systeme_ok and stale.standard_ok and not stale.fresh and not stale.ok
