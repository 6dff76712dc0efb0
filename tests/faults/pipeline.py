"""The pipeline the fault tests run: webhooks written to the config topic, the roles as processes
(each restartable on the same port), and the log store read back."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port_block
from hookline.records import DeliveryResult
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret, Settings
from hookline.topics import CONFIG, RESULTS
from hookline.webhooks import EVENT_TYPES, Subscription, Webhook
from schemas.codec import encode
from tests.faults.load import ACCOUNTS, HOOKS_PER_ACCOUNT, Answers
from tests.processors.deliver.receivers import Receiver
from tests.support import Role, TopicReader, role_env, scaled, wait_until

#: Each role and the variable that sets its /metrics, /healthz, /readyz port.
METRICS_PORT_VARS = {
    "router": "HOOKLINE_ROUTER_METRICS_PORT",
    "deliver": "HOOKLINE_DELIVER_METRICS_PORT",
    "logsink": "HOOKLINE_LOGSINK_METRICS_PORT",
    "health": "HOOKLINE_HEALTH_METRICS_PORT",
}


def webhook(receiver: Receiver, sealer: Sealer, account: str, webhook_id: str, path: str) -> Webhook:
    """An active webhook of ``account`` subscribed to every event, POSTing to ``path`` of ``receiver``."""
    now = int(time.time() * 1000)
    return Webhook(
        id=webhook_id, account_id=account, name=f"faults {webhook_id}", url=receiver.url(path),
        secret=sealer.seal(webhook_id, "whsec_" + uuid.uuid4().hex),
        subscriptions=tuple(Subscription(e) for e in EVENT_TYPES),
        active=True, created_at=now, updated_at=now, version=1,
    )  # fmt: skip


def webhooks(receiver: Receiver, secret_key: str, accounts: int, per_account: int) -> list[Webhook]:
    """``per_account`` webhooks for each of ``accounts`` accounts (``acct-<a>``, ``wh-<a>-<h>``), each
    POSTing to its own path ``/<a>/<h>`` of ``receiver``."""
    sealer = Sealer.from_secret(Secret(secret_key))
    return [
        webhook(receiver, sealer, f"acct-{a}", f"wh-{a}-{h}", f"/{a}/{h}")
        for a in range(accounts)
        for h in range(per_account)
    ]


def put_webhooks(settings: Settings, hooks: Iterable[Webhook]) -> dict[str, list[str]]:
    """Write ``hooks`` to the config topic (acknowledged); return account -> its webhook ids."""
    producer = Producer(producer_config(settings, **{"log_level": 2}))
    by_account: dict[str, list[str]] = {}
    for hook in hooks:
        producer.produce(
            settings.topic(CONFIG), key=hook.id.encode(), value=encode("WebhookConfig", hook.to_record())
        )
        by_account.setdefault(hook.account_id, []).append(hook.id)
    assert producer.flush(60) == 0
    return by_account


class Roles:
    """``hookline <role>`` processes sharing one environment, each on its own metrics port, which a
    restart keeps."""

    def __init__(self, settings: Settings, log_dir: Path, names: Iterable[str], **env: str) -> None:
        self.roles: dict[str, tuple[Role, int]] = {}
        for name in names:
            port = free_port_block(1)
            role_vars = role_env(settings, **env, **{METRICS_PORT_VARS[name]: str(port)})
            self.roles[name] = (Role([name], role_vars, log_dir / f"{name}.log"), port)

    def start(self, *names: str, timeout: float = 120) -> None:
        """Start the roles named (all when none is), then wait until each is ready."""
        chosen = names or tuple(self.roles)
        for name in chosen:
            self.roles[name][0].start()
        for name in chosen:
            role, port = self.roles[name]
            role.wait_ready(port, timeout=timeout)

    def kill(self, name: str) -> None:
        """SIGKILL the role and wait until it is gone."""
        role, _port = self.roles[name]
        proc = role.proc
        assert proc is not None and proc.poll() is None, f"{name} is not running"
        role.kill(signal.SIGKILL)
        wait_until(lambda: proc.poll() is not None, 30, f"the killed {name} gone")

    def stop(self, *names: str) -> dict[str, int | None]:
        """SIGTERM the roles named (all when none is) at once; their exit codes."""
        chosen = names or tuple(self.roles)
        for name in chosen:
            self.roles[name][0].kill(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name in chosen:
            role = self.roles[name][0]
            if role.proc is not None:
                try:  # one SIGTERM only: a second one may cut a role's shutdown short
                    role.proc.wait(scaled(60))
                except subprocess.TimeoutExpired:
                    role.kill(signal.SIGKILL)
                    role.proc.wait()
            codes[name] = role.proc.returncode if role.proc is not None else None
        return codes

    def pid(self, name: str) -> int | None:
        proc = self.roles[name][0].proc
        return proc.pid if proc is not None else None

    def get(self, name: str, path: str) -> int:
        role, port = self.roles[name]
        return role.get(port, path)[0]

    def metrics(self, name: str) -> str:
        """The role's /metrics text ("" when it does not answer)."""
        role, port = self.roles[name]
        status, body = role.get(port, "/metrics")
        return body.decode() if status == 200 else ""

    def alive(self) -> dict[str, bool]:
        return {name: r.proc is not None and r.proc.poll() is None for name, (r, _port) in self.roles.items()}

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {name} ---\n{r.log_tail(lines)}" for name, (r, _p) in self.roles.items())


def logged_messages(path: Path) -> set[str]:
    """Message ids the SQLite log store at ``path`` shows as delivered."""
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return {
            row[0]
            for row in db.execute("SELECT message_id FROM hookline_messages WHERE status = 'delivered'")
        }


def sqlite_attempts(path: Path) -> set[tuple[str, str]]:
    """(message id, attempt id) of every attempt row in the SQLite log store at ``path``."""
    if not path.exists():
        return set()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return {(r[0], r[1]) for r in db.execute("SELECT message_id, attempt_id FROM hookline_attempts")}


class Results:
    """The whole results topic, read back incrementally: every attempt's result record."""

    def __init__(self, settings: Settings) -> None:
        self.reader = TopicReader(settings, RESULTS)
        self.decoded: list[tuple[Any, DeliveryResult]] = []

    def poll(self, seconds: float = 5.0) -> list[tuple[Any, DeliveryResult]]:
        """Read what arrived; at most ``seconds`` while records keep coming (under load they never stop)."""
        until = time.monotonic() + seconds
        while (new := self.reader.poll(0.5)) and time.monotonic() < until:
            self.decoded.extend((m, DeliveryResult.decode(m.value())) for m in new)
        self.decoded.extend((m, DeliveryResult.decode(m.value())) for m in new)
        return self.decoded

    def attempts(self) -> set[tuple[str, str]]:
        """(message id, attempt id) of every result so far."""
        return {(r.message_id, r.attempt_id) for _m, r in self.poll()}

    def close(self) -> None:
        self.reader.close()


@dataclass
class Pipeline:
    """Webhooks on the config topic, the receiver that keeps the delivery ledger, the roles."""

    settings: Settings
    receiver: Receiver
    answers: Answers
    roles: Roles
    results: Results
    hooks: dict[str, list[str]]  # account -> its webhook ids (the extra ones left out)


@contextmanager
def running_pipeline(
    settings: Settings,
    log_dir: Path,
    roles: Iterable[str],
    *,
    fail_share: float,
    extra: Iterable[tuple[str, str, str]] = (),
    **env: str,
) -> Iterator[Pipeline]:
    """ACCOUNTS x HOOKS_PER_ACCOUNT webhooks answered by one :class:`Answers` (500 to the first request
    of ``fail_share`` of the messages), the ``extra`` webhooks (account, id, receiver path: the caller
    sets their behaviour), and the ``roles`` started with ``env`` (retry jitter off, loopback allowed)
    and ready; everything stopped at the end."""
    answers = Answers(fail_share)
    receiver = Receiver().start()
    secret_key = generate_key()
    hooks = webhooks(receiver, secret_key, ACCOUNTS, HOOKS_PER_ACCOUNT)
    for hook in hooks:
        receiver.set(urlsplit(hook.url).path, answers)
    sealer = Sealer.from_secret(Secret(secret_key))
    put_webhooks(settings, [webhook(receiver, sealer, a, wid, path) for a, wid, path in extra])
    by_account = put_webhooks(settings, hooks)
    running = Roles(
        settings,
        log_dir,
        roles,
        HOOKLINE_SECRET_KEY=secret_key,
        HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8",
        HOOKLINE_RETRY_JITTER="0",
        **env,
    )
    results = Results(settings)
    try:
        running.start()
        yield Pipeline(settings, receiver, answers, running, results, by_account)
    finally:
        running.stop()
        receiver.stop()
        results.close()
