"""The container image, built and run: deploy/image/build.sh builds it with podman from the Dockerfile
(and smoke-tests it), then `hookline topics create` and the four roles run from it as pods run them
(read-only root filesystem, tmpfs for HOME and /tmp, no capabilities, uid 10001, settings in the
environment) against the session broker and a PostgreSQL log store. A webhook made through the
containerised API receives every published event, signed; every role drains and exits on SIGTERM.

The containers share the host's network namespace, so the broker, PostgreSQL and the receiver are all
reached on 127.0.0.1 and every role listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook as StandardWebhook

from hookline.clients import admin_client
from hookline.local.ports import free_port
from hookline.settings import Settings, load_settings
from hookline.signing import message_id
from hookline.topics import all_topics
from hookline.webhooks import EVENT_TYPES
from tests import conftest as session
from tests.deploy import conftest as deploy
from tests.processors.deliver.receivers import Receiver
from tests.support import EventWriter, Role, event_record, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = deploy.REPO
BUILD = REPO / "deploy" / "image" / "build.sh"
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
IMAGE = "localhost/hookline:dev"  # build.sh's default tag: `make image` and this test share one build
API_KEY = "image-test-key-0123456789"
ACCOUNT = "acct-image"
# role -> the setting naming the port its /readyz answers on
ROLES = {
    "api": "HOOKLINE_API_PORT",
    "router": "HOOKLINE_ROUTER_METRICS_PORT",
    "deliver": "HOOKLINE_DELIVER_METRICS_PORT",
    "logsink": "HOOKLINE_LOGSINK_METRICS_PORT",
    "health": "HOOKLINE_HEALTH_METRICS_PORT",
}


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


@pytest.fixture(scope="session")
def image() -> str:
    """The image, built (or found current) and smoke-tested by build.sh, once per session."""
    deploy.find_tool("podman")
    out = subprocess.run(
        ["bash", str(BUILD)], env={**podman_env(), "HOOKLINE_IMAGE": IMAGE},
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert out.returncode == 0, f"build.sh exited {out.returncode}:\n{out.stdout[-6000:]}{out.stderr[-3000:]}"
    return IMAGE


def run_args(name: str, env_file: Path, image: str, *command: str) -> list[str]:
    """`podman run` as a pod runs the image: read-only root, tmpfs HOME and /tmp, no capabilities."""
    return [
        "podman", "run", "--rm", "--name", name, "--network", "host",
        "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/var/lib/hookline:U",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--env-file", str(env_file), image, *command,
    ]  # fmt: skip


class ContainerRole(Role):
    """A role run from the image by an attached `podman run`, whose exit status is the container's."""

    def __init__(self, name: str, env_file: Path, image: str, role: str, log_path: Path) -> None:
        super().__init__([role], {}, log_path)
        self.name = name
        self.cmd = run_args(name, env_file, image, role)

    def start(self) -> ContainerRole:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=podman_env(), stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the container's main process (what the kubelet does), not the podman client."""
        subprocess.run(
            ["podman", "kill", "--signal", signal.Signals(sig).name, self.name],
            env=podman_env(), capture_output=True, timeout=60,
        )  # fmt: skip

    def exit_status(self, timeout: float) -> int:
        """The container's exit status once it has stopped by itself within ``timeout`` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still runs after {timeout} s:\n{self.log_tail()}") from None

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "--force", "--ignore", "--time", "0", self.name],
                       env=podman_env(), capture_output=True, timeout=120)  # fmt: skip
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait(60)


@dataclass
class Deployment:
    settings: Settings  # the broker and topic prefix the containers use, for clients on the host
    roles: dict[str, tuple[ContainerRole, int]]
    api: httpx.Client


@pytest.fixture
def deployment(image: str, kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> Iterator[Deployment]:
    # A prefix of our own rather than the `settings` fixture's: the image's `topics create` makes them.
    settings = load_settings(
        {},
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"img{uuid.uuid4().hex[:10]}.",
        topic_partitions=session.TEST_PARTITIONS,
        retry_schedule=session.TEST_RETRY_SCHEDULE,
        home=tmp_path / "home",
    )
    ports = {role: free_port() for role in ROLES}
    env = {
        "HOOKLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HOOKLINE_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKLINE_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "HOOKLINE_RETRY_SCHEDULE": ",".join(f"{d:g}" for d in settings.retry_schedule),
        "HOOKLINE_SECRET_KEY": "k1:" + "A" * 43,
        "HOOKLINE_API_KEYS": f"{ACCOUNT}:{API_KEY}",
        # The API and the log sink share the log store, as in the cluster: PostgreSQL (the README's
        # deployment; an SQLite file would need one writable mount shared by both containers).
        "HOOKLINE_DATABASE_URL": postgres_url,
        "HOOKLINE_ALLOW_NETWORKS": "127.0.0.0/8",
        # The image listens on 0.0.0.0 for a pod's own network; here the network is the host's.
        "HOOKLINE_API_HOST": "127.0.0.1",
        "HOOKLINE_METRICS_HOST": "127.0.0.1",
        **{ROLES[role]: str(port) for role, port in ports.items()},
    }
    env_file = tmp_path / "hookline.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    run_id = uuid.uuid4().hex[:8]

    topics = subprocess.run(
        run_args(f"hookline-test-{run_id}-topics", env_file, image, "topics", "create"),
        env=podman_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    started: dict[str, tuple[ContainerRole, int]] = {}
    try:
        assert topics.returncode == 0, f"topics create: {topics.returncode}\n{topics.stdout}{topics.stderr}"
        made = set(admin_client(settings).list_topics(timeout=30).topics)
        expected = {spec.full_name(settings) for spec in all_topics(settings)}
        assert expected <= made, f"not created by the image: {sorted(expected - made)}"
        for role, port in ports.items():  # start all, then wait: they boot in parallel
            name, log = f"hookline-test-{run_id}-{role}", tmp_path / f"{role}.log"
            started[role] = (ContainerRole(name, env_file, image, role, log).start(), port)
        for container, port in started.values():
            container.wait_ready(port, timeout=180)
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}", headers={"X-API-Key": API_KEY},
                          timeout=30) as api:  # fmt: skip
            yield Deployment(settings, started, api)
    finally:
        for container, _ in started.values():
            container.remove()
        session.drop_prefixed_topics(settings)


@pytest.mark.timeout(1800)  # a cold build (base and image) is part of this test's setup
def test_the_image_delivers_signed_events_and_every_role_drains_on_sigterm(deployment: Deployment) -> None:
    with Receiver() as receiver:
        created = deployment.api.post("/api/webhooks", json={
            "name": "image test", "url": receiver.url("/hook"), "subscriptions": list(EVENT_TYPES),
        })  # fmt: skip
        assert created.status_code == 201, created.text
        webhook_id, secret = created.json()["id"], created.json()["secret"]

        events = {uuid.uuid4().hex: event_type for event_type in EVENT_TYPES}
        writer = EventWriter(deployment.settings)
        for event_id, event_type in events.items():
            writer.put(event_record(ACCOUNT, event_type, event_id))
        writer.flush()

        wanted = {message_id(event_id, webhook_id): event_type for event_id, event_type in events.items()}
        wait_until(lambda: {g.headers.get("webhook-id") for g in receiver.got("/hook")} >= set(wanted),
                   120, f"{len(wanted)} deliveries from the containers")  # fmt: skip
        verifier = StandardWebhook(secret)
        key = base64.b64decode(secret.removeprefix("whsec_"))  # a generated secret is whsec_ + base64
        for got in receiver.got("/hook"):
            assert wanted[got.headers["webhook-id"]] == got.headers["x-webhook-event"]
            verifier.verify(got.body, got.headers)  # raises WebhookVerificationError on a bad signature
            hex_signature = hmac.new(key, got.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(got.headers["x-webhook-signature"], hex_signature)
            assert json.loads(got.body)  # the event's payload, never empty

    # Every attempt reaches the log store through the log sink and is read back through the API.
    def logged() -> bool:
        page = deployment.api.get(f"/api/webhooks/{webhook_id}/deliveries", params={"limit": "100"})
        assert page.status_code == 200, page.text
        return {d["messageId"] for d in page.json()["items"] if d["status"] == "delivered"} >= set(wanted)

    wait_until(logged, 60, "the deliveries in the containerised API's logs", interval=0.5)

    for container, _ in deployment.roles.values():  # as the kubelet stops a pod
        container.kill(signal.SIGTERM)
    exits = {name: container.exit_status(90) for name, (container, _) in deployment.roles.items()}
    tails = {name: container.log_tail(30) for name, (container, _) in deployment.roles.items()}
    # Each role is its container's PID 1, as in a pod. uvicorn raises the SIGTERM again once it has
    # shut down, which the kernel ignores for PID 1, so the API too ends with 0 here.
    assert exits == dict.fromkeys(ROLES, 0), tails
    assert "Finished server process" in tails["api"], tails["api"]
    assert [name for name, (c, _) in deployment.roles.items() if "Traceback" in c.log_tail(10**6)] == [], (
        tails
    )
