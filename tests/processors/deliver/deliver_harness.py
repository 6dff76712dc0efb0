"""What the delivery tests share: webhooks with real sealed secrets, task records, a worker process,
signature checks with the independent ``standardwebhooks`` package, metric scraping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import standardwebhooks
from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret, Settings
from hookline.signing import generate_secret, message_id
from hookline.webhooks import EVENT_TYPES, Subscription, Webhook
from schemas.codec import encode
from tests.processors.deliver.receivers import Got
from tests.support import ConfigWriter, Role, role_env, wait_until

__all__ = ["Harness", "max_in_window", "metric", "new_secret", "verify"]


new_secret = generate_secret


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[6:])
    return secret.encode()


def verify(got: Got, secret: str, *, previous: str | None = None) -> None:
    """Assert both signatures of ``got`` verify with ``secret`` (independently of hookline.signing)."""
    standardwebhooks.Webhook(_key(secret)).verify(got.body, got.headers, json_parse=False)
    expected = hmac.new(_key(secret), got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-webhook-signature"] == expected
    if previous is not None:
        standardwebhooks.Webhook(_key(previous)).verify(got.body, got.headers, json_parse=False)
    assert got.headers["webhook-id"] == got.headers["x-webhook-message-id"]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def max_in_window(stamps: Iterable[float], window: float = 1.0) -> int:
    """The most of ``stamps`` in any closed window of ``window`` seconds (sliding, not calendar seconds)."""
    ordered = sorted(stamps)
    best, first = 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


class Harness:
    """One test's webhooks, tasks and workers, against the settings' topics."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.secret_key = generate_key()
        self.sealer = Sealer.from_secret(Secret(self.secret_key))
        self.configs = ConfigWriter(settings)
        self.secrets: dict[str, str] = {}
        self.hooks: dict[str, Webhook] = {}
        self.producer = Producer(producer_config(settings))
        self.roles: list[Role] = []

    # -- configs --------------------------------------------------------------------------------
    def webhook(
        self,
        webhook_id: str,
        url: str,
        *,
        account: str = "acct-1",
        events: Iterable[str] = EVENT_TYPES,
        secret: str | None = None,
        active: bool = True,
        version: int = 1,
        previous: str | None = None,
        previous_expires_at: int | None = None,
        write: bool = True,
    ) -> Webhook:
        secret = secret or new_secret()
        now = int(time.time() * 1000)
        hook = Webhook(
            id=webhook_id, account_id=account, name=f"hook {webhook_id}", url=url,
            secret=self.sealer.seal(webhook_id, secret),
            subscriptions=tuple(Subscription(e) for e in events), active=active,
            created_at=now, updated_at=now, version=version,
            previous_secret=self.sealer.seal(webhook_id, previous) if previous else None,
            previous_secret_expires_at=previous_expires_at,
        )
        self.secrets[webhook_id] = secret
        self.hooks[webhook_id] = hook
        if write:
            self.configs.put(hook)
            self.configs.flush()
        return hook

    # -- tasks ----------------------------------------------------------------------------------
    def task(
        self,
        webhook_id: str,
        event_id: str | None = None,
        *,
        event_type: str = "CONTACT_CREATED",
        payload: bytes | None = None,
        attempt: int = 1,
        due_at: int = 0,
        trigger: str = "automatic",
    ) -> dict[str, Any]:
        event_id = event_id or f"evt-{uuid.uuid4().hex[:12]}"
        hook = self.hooks[webhook_id]
        now = int(time.time() * 1000)
        body = payload if payload is not None else orjson.dumps(
            {"contact": {"id": 1, "email": "ada@example.com", "eventId": event_id}}
        )
        return {
            "messageId": message_id(event_id, webhook_id),
            "eventId": event_id,
            "webhookId": webhook_id,
            "accountId": hook.account_id,
            "eventType": event_type,
            "eventOccurredAt": now,
            "routedAt": now,
            "configVersion": hook.version,
            "payload": body,
            "attempt": attempt,
            "dueAt": due_at,
            "trigger": trigger,
            "firstAttemptAt": None,
        }

    def send(self, tasks: Iterable[dict[str, Any]], topic: str = "webhook-deliveries") -> None:
        for t in tasks:
            self.raw(t["webhookId"].encode(), encode("DeliveryTask", t), topic)
        self.flush()

    def raw(self, key: bytes | None, value: bytes | None, topic: str = "webhook-deliveries") -> None:
        while True:
            try:
                self.producer.produce(self.settings.topic(topic), key=key, value=value)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    # -- workers --------------------------------------------------------------------------------
    def worker(self, *, allow: str | None = "127.0.0.0/8", **env: str) -> tuple[Role, int]:
        port = free_port()
        extra = {
            "HOOKLINE_SECRET_KEY": self.secret_key,
            "HOOKLINE_DELIVER_METRICS_PORT": str(port),
            **env,
        }
        if allow is not None:
            extra["HOOKLINE_ALLOW_NETWORKS"] = allow
        log = self.tmp_path / f"deliver-{len(self.roles)}.log"
        role = Role(["deliver"], role_env(self.settings, **extra), log)
        self.roles.append(role.start())
        role.wait_ready(port, timeout=60)
        return role, port

    def metrics(self, port: int) -> str:
        status, body = Role([], {}, Path("/dev/null")).get(port, "/metrics")
        assert status == 200, status
        return body.decode()

    def wait_metric(self, port: int, name: str, value: float, timeout: float, **labels: str) -> str:
        def check() -> str | None:
            text = self.metrics(port)
            return text if metric(text, name, **labels) >= value else None

        return str(wait_until(check, timeout, f"{name}{labels} >= {value}", interval=0.2))

    def close(self) -> None:
        for role in self.roles:
            role.stop()
        self.producer.flush(5)
