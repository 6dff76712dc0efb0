"""One rule for webhook secrets: the API saves exactly the secrets the signer can use.

Secrets are generated on both sides of every part of the rule (length, printable, the ``whsec_``
prefix, base64 alphabet and padding, the decoded length), and the independent ``standardwebhooks``
package verifies what we sign with every accepted ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import time

from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from api.errors import InvalidRequest
from api.validation import check_secret
from hookline.signing import SecretError, Signer, generate_secret, hmac_key


def _whsec_of(raw: bytes, padded: bool, before: str, after: str) -> str:
    encoded = base64.b64encode(raw).decode()
    return "whsec_" + before + (encoded if padded else encoded.rstrip("=")) + after


#: Text that may break a whsec_ secret: padding, other alphabets, spaces, controls, anything.
_JUNK = st.one_of(
    st.just(""),
    st.sampled_from(["=", "==", "===", " ", "\n", "-", "_", ".", "é", "\x00", "whsec_"]),
    st.text(max_size=3),
)


def _bytes(low: int, high: int) -> st.SearchStrategy[bytes]:
    """Random bytes of a length drawn evenly from ``low`` to ``high`` (not biased to short ones)."""
    return st.integers(low, high).flatmap(lambda n: st.binary(min_size=n, max_size=n))


#: 0 to 80 bytes: a whsec_ secret may encode 24 to 64.
_RAW = _bytes(0, 80)

#: whsec_ + base64 of those bytes, padded or not, with or without junk around it.
WHSEC = st.one_of(
    st.builds(_whsec_of, _RAW, st.booleans(), st.just(""), st.just("")),
    st.builds(_whsec_of, _RAW, st.booleans(), _JUNK, _JUNK),
)

SECRETS = st.one_of(
    st.text(max_size=600),  # anything, across both length limits
    st.text(st.characters(codec="ascii"), min_size=6, max_size=12),  # around the shortest
    st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), min_size=7, max_size=40),  # typed
    WHSEC,
    st.builds(lambda raw: "WHSEC_" + base64.b64encode(raw).decode(), st.binary(max_size=40)),
    st.builds(lambda raw: "whsec_" + base64.urlsafe_b64encode(raw).decode(), st.binary(max_size=70)),
)


def _api_refusal(secret: str) -> str | None:
    """The API's message refusing ``secret``, or None when it accepts it."""
    try:
        check_secret(secret)
    except InvalidRequest as exc:
        assert (exc.code, exc.status) == ("secret_invalid", 422)
        return exc.message
    return None


def _signer_refusal(secret: str) -> str | None:
    """The signer's message refusing ``secret``, or None when it can sign with it."""
    try:
        Signer([secret])
    except SecretError as exc:
        return str(exc)
    return None


@settings(max_examples=500)  # cheap examples; enough to land often on each side of each rule
@given(SECRETS)
@example("whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("="))  # unpadded: refused
@example("whsec_" + base64.b64encode(b"k" * 24).decode() + "==")  # whole groups, then "=": accepted
@example("whsec_" + base64.b64encode(b"k" * 23).decode())
@example("whsec_" + base64.b64encode(b"k" * 65).decode())
@example(" " * 8)
@example("x" * 512)
@example("x" * 513)
def test_the_api_accepts_exactly_the_secrets_the_signer_can_use(secret: str) -> None:
    refusal = _api_refusal(secret)
    event("whsec_" if secret.startswith("whsec_") else "other", "accepted" if refusal is None else "refused")
    assert refusal == _signer_refusal(secret)  # the same verdict, in the same words
    if refusal is None:
        assert hmac_key(secret)
    elif len(secret) >= 12:
        assert secret not in refusal  # a refusal never quotes the secret


@given(
    st.one_of(
        WHSEC, st.builds(_whsec_of, _bytes(24, 64), st.just(True), st.just(""), st.sampled_from(["", "="]))
    ),
    st.binary(max_size=200),
)
def test_standardwebhooks_verifies_every_accepted_whsec_secret(secret: str, body: bytes) -> None:
    assume(_signer_refusal(secret) is None)
    headers = Signer([secret]).headers(
        event_type="SALE_NEW",
        msg_id="msg_property",
        attempt_id="att_1",
        event_time_ms=0,
        timestamp=int(time.time()),
        body=body,
        user_agent="hookline/test",
    )
    assert Webhook(secret).verify(body, dict(headers), json_parse=False) is None


def test_generated_secrets_are_random_whsec_secrets_of_24_bytes() -> None:
    made = {generate_secret() for _ in range(100)}
    assert len(made) == 100
    for secret in made:
        assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 32
        assert len(hmac_key(secret)) == 24
        assert _api_refusal(secret) is None
