"""Secrets never leave the API except once, in the create response that generated them."""

from __future__ import annotations

import base64
import logging

import pytest

from hookline.sealing import Sealer
from hookline.webhooks import Webhook
from schemas.codec import decode
from tests.api.conftest import KEY_A, KEY_B, RunningApi, read_config_topic

pytestmark = pytest.mark.kafka

TYPED = "typed-Secret-0123456789"
ROTATED = "rotated-Secret-9876543210"
REFUSED = "tiny\n"  # refused as a secret; must not be echoed either
HOOK = {
    "name": "Leak check",
    "url": "https://hooks.example.com/in?token=url-token-42",
    "subscriptions": ["SALE_NEW"],
}
LOGGERS = (
    "",
    "hookline",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "httpx",
    "httpcore",
    "confluent_kafka",
)


def fragments(secret: str) -> list[bytes]:
    """The secret, its body without ``whsec_``, and its decoded key bytes when it has them."""
    out = [secret.encode()]
    if secret.startswith("whsec_"):
        body = secret.removeprefix("whsec_")
        out += [body.encode(), base64.b64decode(body)]
    return out


def test_no_secret_in_reads_logs_metrics_or_topic_bytes(
    api: RunningApi, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    a = api.client()
    reads: list[str] = []

    created = a.post("/api/webhooks", json=HOOK)
    assert created.status_code == 201
    generated = created.json()["secret"]
    assert generated.startswith("whsec_")
    gen_id = created.json()["id"]

    typed = a.post("/api/webhooks", json={**HOOK, "secret": TYPED})
    assert typed.status_code == 201 and "secret" not in typed.json()
    typed_id = typed.json()["id"]
    reads.append(typed.text)

    rotated = a.patch(f"/api/webhooks/{typed_id}", json={"secret": ROTATED})
    assert rotated.status_code == 200
    reads.append(rotated.text)
    refused = a.patch(f"/api/webhooks/{typed_id}", json={"secret": REFUSED})
    assert refused.json()["error"]["code"] == "secret_invalid"
    reads.append(refused.text)
    reads.append(a.post("/api/webhooks", json={**HOOK, "secret": REFUSED}).text)
    reads.append(a.patch(f"/api/webhooks/{gen_id}", json={"name": "renamed", "active": False}).text)

    for path in (
        f"/api/webhooks/{gen_id}",
        f"/api/webhooks/{typed_id}",
        "/api/webhooks",
        "/api/webhooks?limit=1",
    ):
        resp = a.get(path)
        assert resp.status_code == 200
        assert "secret" not in resp.json() and all("secret" not in h for h in resp.json().get("items", []))
        reads.append(resp.text)
    b = api.client(api_key=KEY_B)
    reads += [b.get(f"/api/webhooks/{gen_id}").text, b.get("/api/webhooks").text]
    unauthenticated = api.client(api_key=None)
    metrics = unauthenticated.get("/metrics").text
    reads += [metrics, unauthenticated.get("/openapi.json").text]
    assert 'hookline_api_config_writes_total{kind="create",outcome="ok"} 2.0' in metrics

    # The config topic: the secrets are there, sealed (they open), and never in clear.
    records = read_config_topic(api.settings)
    raw = b"".join((k or b"") + b"\x00" + (v or b"") for k, v in records)
    sealer = Sealer.from_settings(api.settings)
    latest = {h.id: h for h in (Webhook.from_record(decode(v, "WebhookConfig")) for _, v in records if v)}
    assert sealer.open(gen_id, latest[gen_id].secret) == generated
    assert sealer.open(typed_id, latest[typed_id].secret) == ROTATED
    prev = latest[typed_id].previous_secret
    assert prev is not None and sealer.open(typed_id, prev) == TYPED

    out, err = capfd.readouterr()
    logs = caplog.text + "\n".join(
        r.getMessage() + (r.exc_text or "") + str(getattr(r, "__dict__", "")) for r in caplog.records
    )
    assert f"webhook {gen_id} created" in logs and "POST /api/webhooks 201" in logs  # the capture works
    for secret in (generated, TYPED, ROTATED, REFUSED.strip()):
        for piece in fragments(secret):
            assert piece not in raw, f"secret bytes on the config topic ({secret[:4]}...)"
            text = piece.decode("utf-8", "replace")
            for where, blob in (("read", "\n".join(reads)), ("log", logs), ("stdout", out), ("stderr", err)):
                assert text not in blob, f"secret in a {where} ({secret[:4]}...)"
    for api_key in (KEY_A, KEY_B):
        assert api_key not in logs and api_key not in out + err and api_key not in metrics
    # Receiver URLs often carry tokens; the API's own log lines never print them.
    assert "url-token-42" not in "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("hookline")
    )
