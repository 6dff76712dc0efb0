"""The web page in a real browser (Debian's chromium, driven by Playwright) against the real pipeline.

The API runs in this process (uvicorn in a thread); ``hookline router``, ``deliver`` and ``logsink``
run as child processes on this test's topics and one SQLite log store; a local receiver answers
200, or 500 with a recognisable body when told to. The test walks the acceptance path of issue 5 and
saves screenshots of the list, the form and the logs to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from hookline.local.ports import free_port
from hookline.settings import Secret, Settings
from tests.api.conftest import KEY_A, RunningApi, api_settings, start_api
from tests.processors.deliver.deliver_harness import metric, verify
from tests.processors.deliver.receivers import Got, Receiver, Reply
from tests.support import REPO, EventWriter, Role, event_record, role_env, scaled, skip_or_fail, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHROMIUM = os.environ.get("HOOKLINE_TEST_CHROMIUM", "/usr/bin/chromium")
# As root, in a closed network: no sandbox, and none of chromium's own background connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
FAILURE_BODY = b'{"error": "receiver exploded: order sync unavailable (page-test-7f3a)"}'
TIMEOUT_MS = int(scaled(60) * 1000)  # Playwright's waits: a page action, or the pipeline behind it


def _chromium() -> str:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
        # In CI a missing browser is a broken setup, not a reason to skip.
        skip_or_fail(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


class Switchable:
    """Receiver behaviour: 200 until ``failing`` is set, then 500 with FAILURE_BODY."""

    def __init__(self) -> None:
        self.failing = threading.Event()

    def __call__(self, n: int, got: Got) -> Reply:
        if self.failing.is_set():
            return Reply(500, {"Content-Type": "application/json"}, FAILURE_BODY)
        return Reply(200, {"Content-Type": "text/plain"}, b"thanks")


@dataclass
class Stack:
    api: RunningApi
    receiver: Receiver
    behaviour: Switchable
    roles: dict[str, tuple[Role, int]]

    def metrics(self, role: str) -> str:
        proc, port = self.roles[role]
        status, body = proc.get(port, "/metrics")
        assert status == 200, status
        return body.decode()


@pytest.fixture
def chromium() -> str:
    """The browser's path, checked before anything else starts."""
    return _chromium()


@pytest.fixture
def stack(chromium: str, settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    database = Secret(f"sqlite:///{tmp_path / 'logs.sqlite3'}")
    api_conf = api_settings(settings, database_url=database)
    ports = {name: free_port() for name in ("router", "deliver", "logsink")}
    env = role_env(
        settings,
        HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8",
        HOOKLINE_SECRET_KEY=api_conf.secret_key.get(),
        HOOKLINE_DATABASE_URL=database.get(),
        HOOKLINE_ROUTER_METRICS_PORT=str(ports["router"]),
        HOOKLINE_DELIVER_METRICS_PORT=str(ports["deliver"]),
        HOOKLINE_LOGSINK_METRICS_PORT=str(ports["logsink"]),
    )
    roles = {name: (Role([name], env, tmp_path / f"{name}.log"), port) for name, port in ports.items()}
    behaviour = Switchable()
    receiver = Receiver()
    api: RunningApi | None = None
    try:
        for role, _ in roles.values():  # all three start while the API comes up
            role.start()
        receiver.start()
        receiver.set("/hook", behaviour)
        api = start_api(api_conf)
        for role, port in roles.values():
            role.wait_ready(port, timeout=90)
        yield Stack(api, receiver, behaviour, roles)
    finally:
        for role, _ in roles.values():
            role.stop()
        receiver.stop()
        if api is not None:
            api.stop()


@pytest.fixture
def browser_page(chromium: str, stack: Stack) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=stack.api.base_url, viewport={"width": 1280, "height": 860})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.api.base_url)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" and not _expected(m.text) else None,
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page
        finally:
            context.close()
            browser.close()
        # No CSP violation, no script error on any page the test visited.
        assert errors == []


def _expected(console_error: str) -> bool:
    # The wrong key (401) and the bad form (422) are answered with their status on purpose.
    return bool(re.fullmatch(r"Failed to load resource: .* status of (401|422) .*", console_error))


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def refresh_until(page: Page, locator: Locator, timeout_s: float = 60.0) -> None:
    """Click the logs' Refresh link until ``locator`` is visible (for a page that is not live)."""
    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        try:
            expect(locator).to_be_visible(timeout=1500)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        page.get_by_role("link", name="Refresh").click()


def route_one(stack: Stack, event_type: str) -> None:
    """Publish ``event_type`` events until the router routes one.

    The API answered the edit once its own config view applied it; the router's view may apply it
    a moment later, and an event read before that finds no subscriber (it is counted unmatched).
    """
    events = EventWriter(stack.api.settings)
    name_routed, name_unmatched = (
        "hookline_router_tasks_routed_total",
        "hookline_router_events_unmatched_total",
    )
    for _ in range(5):
        text = stack.metrics("router")
        routed, unmatched = (
            metric(text, name_routed, event_type=event_type),
            metric(text, name_unmatched, event_type=event_type),
        )
        events.put(event_record("acct-a", event_type, f"ev-{uuid.uuid4().hex[:12]}"))
        events.flush()

        def outcome(routed: float = routed, unmatched: float = unmatched) -> str | None:
            now = stack.metrics("router")
            if metric(now, name_routed, event_type=event_type) > routed:
                return "routed"
            return "unmatched" if metric(now, name_unmatched, event_type=event_type) > unmatched else None

        if wait_until(outcome, 60, f"the router to read the {event_type} event", interval=0.1) == "routed":
            return
    raise AssertionError(f"the router never routed {event_type} to the edited webhook")


def test_owner_manages_a_webhook_and_reads_its_logs_in_a_browser(stack: Stack, browser_page: Page) -> None:
    page = browser_page
    hook_url = stack.receiver.url("/hook")

    # -- sign in ---------------------------------------------------------------------------------
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.get_by_label("API key").fill("wrong-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#api_key-error")).to_have_text("This API key is not valid.")
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/settings/webhooks$"))
    expect(page.locator(".account")).to_have_text("acct-a")

    # -- create: bad input first, then a good one ------------------------------------------------
    page.get_by_role("link", name="New webhook").click()
    page.get_by_label("Name").fill("Order sync")
    page.get_by_label("URL").fill("ftp://orders.example.com/in")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator("#url-error")).to_have_text("URL must use https.")
    expect(page.locator("#subscriptions-error")).to_have_text("Choose at least one event.")
    expect(page.get_by_label("Name")).to_have_value("Order sync")
    expect(page.get_by_label("URL")).to_have_value("ftp://orders.example.com/in")
    expect(page.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    shot(page, "webhook-form-errors")

    page.get_by_label("URL").fill(hook_url)
    page.get_by_role("checkbox", name=re.compile("CONTACT_CREATED")).check()
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("heading", name="Webhook created")).to_be_visible()
    secret = page.locator("#secret-value").inner_text().strip()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret), secret
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "webhook-created-secret")

    # -- send a test event, see it delivered in the logs -----------------------------------------
    page.get_by_role("link", name="Send a test event").click()
    page.locator("#test-event").select_option("CONTACT_CREATED")
    page.get_by_role("button", name="Send test event").click()
    expect(page).to_have_url(re.compile(r"/logs\?notice=test_sent$"))
    test_row = page.locator("#deliveries tbody tr").first
    expect(test_row.locator(".badge")).to_have_text(
        "delivered", timeout=TIMEOUT_MS
    )  # the page refreshes itself
    expect(test_row).to_contain_text("test")
    expect(test_row).to_contain_text("200")
    got = stack.receiver.got("/hook")
    assert len(got) == 1 and got[0].headers["x-webhook-event"] == "CONTACT_CREATED"
    verify(got[0], secret)  # signed with the secret the page showed once
    shot(page, "webhook-logs")

    # -- edit the events -------------------------------------------------------------------------
    page.get_by_role("link", name="Webhooks", exact=True).click()
    row = page.locator("#webhooks tbody tr", has_text="Order sync")
    expect(row.locator(".last .badge")).to_have_text("delivered")
    row.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Name")).to_have_value("Order sync")
    page.get_by_role("checkbox", name=re.compile("CONTACT_CREATED")).uncheck()
    page.get_by_role("checkbox", name=re.compile("SALE_NEW")).check()
    shot(page, "webhook-form")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_have_text("Webhook saved.")
    expect(row.locator(".events")).to_have_text("SALE_NEW")
    shot(page, "webhooks-list")

    # -- a real event through the router; the receiver fails it ----------------------------------
    stack.behaviour.failing.set()
    route_one(stack, "SALE_NEW")
    row.get_by_role("link", name="Logs").click()
    page.locator("#status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    failed_row = page.locator("#deliveries tbody tr", has_text="SALE_NEW")
    refresh_until(page, failed_row, timeout_s=90)  # four attempts (0.5 s, 1 s, 1.5 s apart) first
    expect(failed_row.locator(".badge")).to_have_text("failed")
    expect(failed_row).to_contain_text("500")
    expect(page.locator("#deliveries tbody tr")).to_have_count(1)  # the delivered test is filtered out
    shot(page, "webhook-logs-failed")
    failed_row.locator("a.mono").click()
    expect(page.locator(".summary .badge")).to_have_text("failed")
    attempts = page.locator("article.attempt")
    expect(attempts).to_have_count(4)
    latest = attempts.first
    expect(latest.locator(".response-status")).to_have_text("500")
    expect(latest.locator(".response-excerpt")).to_contain_text(
        "receiver exploded: order sync unavailable (page-test-7f3a)"
    )
    expect(latest.locator(".error-class")).to_be_visible()
    latest.get_by_text("Request headers").click()
    expect(latest.locator("table.kv").first).to_contain_text("X-Webhook-Event")
    shot(page, "delivery-failed")

    # -- redeliver once the receiver is back -----------------------------------------------------
    stack.behaviour.failing.clear()
    page.get_by_role("button", name="Redeliver").click()
    expect(page).to_have_url(re.compile(r"notice=redelivered$"))
    expect(page.locator(".summary .badge")).to_have_text("delivered", timeout=TIMEOUT_MS)
    expect(attempts).to_have_count(5)
    expect(attempts.first).to_contain_text("manual")
    sale = [g for g in stack.receiver.got("/hook") if g.headers["x-webhook-event"] == "SALE_NEW"]
    assert len(sale) == 5 and len({g.headers["x-webhook-message-id"] for g in sale}) == 1

    # -- delete, after confirming ----------------------------------------------------------------
    page.get_by_role("link", name="Webhooks", exact=True).click()
    row.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete this webhook?")).to_be_visible()
    page.get_by_role("button", name="Delete webhook").click()
    expect(page.locator(".notice")).to_have_text("Webhook deleted.")
    expect(page.locator("#webhooks tbody tr", has_text="Order sync")).to_have_count(0)
    assert stack.api.client().get("/api/webhooks").json()["items"] == []
