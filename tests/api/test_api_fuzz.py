"""The management API fuzzed from its own OpenAPI schema with schemathesis (issue 16, point 3).

A real API (uvicorn in a thread, the session broker, a SQLite log store) serves ``/openapi.json``;
schemathesis builds cases from it, positive and negative, for four operation families: the webhook
collection, one webhook, its delivery logs, and its actions (test, recover). Each family gets
``CASES`` cases with a valid key (account A's or B's) and as many with a wrong one. Every response:
no 5xx, its status documented and its body valid against the schema (schemathesis' checks), and never
a cross-account read: account B's key never sees one of A's webhook ids in any answer, and A's
webhooks that B's cases aim at are unchanged at the end.

The auth-failure throttle is off here (``api_auth_failure_limit=0``): with it, the wrong-key cases
would lock the address out after 20 and every later case would only see 429.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from hookline.clients import create_topics
from hookline.logstore import open_store
from hookline.settings import Secret, load_settings
from tests.api.conftest import KEY_A, KEY_B, RunningApi, api_settings, start_api
from tests.conftest import drop_prefixed_topics
from tests.logrecords import delivery_result

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

#: Cases per family and key kind (valid, wrong).
CASES = 1000
ACCOUNT_A, ACCOUNT_B = "acct-a", "acct-b"
FAMILIES = {
    "collection": [("POST", "/api/webhooks"), ("GET", "/api/webhooks")],
    "webhook": [
        ("GET", "/api/webhooks/{webhook_id}"),
        ("PATCH", "/api/webhooks/{webhook_id}"),
        ("DELETE", "/api/webhooks/{webhook_id}"),
    ],
    "deliveries": [
        ("GET", "/api/webhooks/{webhook_id}/deliveries"),
        ("GET", "/api/webhooks/{webhook_id}/deliveries/{message_id}"),
        ("POST", "/api/webhooks/{webhook_id}/deliveries/{message_id}/redeliver"),
    ],
    "actions": [("POST", "/api/webhooks/{webhook_id}/test"), ("POST", "/api/webhooks/{webhook_id}/recover")],
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Fuzz:
    def __init__(self, api: RunningApi) -> None:
        self.api = api
        self.schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
        self.ops = {(op.method.upper(), op.path): op for op in self._operations()}
        self.session = requests.Session()
        self.admin_a, self.admin_b = api.client(KEY_A), api.client(KEY_B)
        self.store = open_store(api.settings)
        # A's webhooks that only B's cases aim at (they must survive unchanged); per family, A's that
        # A's own cases may change or delete, and B's own. Each has delivery logs in the log store.
        self.protected = [self._create(self.admin_a, f"a-protected-{i}") for i in range(3)]
        self.a_ids = [w["id"] for w in self.protected]
        self.messages: dict[str, list[str]] = {}
        self._log(ACCOUNT_A, self.a_ids)
        self.spares: list[str] = []
        self.b_ids: list[str] = []
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.failures: list[str] = []
        self.unparsed = 0  # requests the HTTP server refused as malformed before the API saw them

    def refresh(self) -> None:
        """Fresh webhooks (with logs) for A's cases to change and delete, and for B's own.

        What earlier families left behind is deleted first (all but A's protected ones): the positive
        POSTs of the collection family really create webhooks, and an account may own at most
        ``max_webhooks_per_account`` (100), so later families' spares would otherwise meet a 409.
        """
        keep = {w["id"] for w in self.protected}
        for client in (self.admin_a, self.admin_b):
            for wid in self._owned(client):
                if wid not in keep:
                    r = client.delete(f"/api/webhooks/{wid}")
                    assert r.status_code in (204, 404), r.text
        self.spares = [self._create(self.admin_a, f"a-spare-{i}")["id"] for i in range(10)]
        self.b_ids = [self._create(self.admin_b, f"b-{i}")["id"] for i in range(3)]
        self.a_ids += self.spares
        self._log(ACCOUNT_A, self.spares)
        self._log(ACCOUNT_B, self.b_ids)

    @staticmethod
    def _owned(client: httpx.Client) -> list[str]:
        ids: list[str] = []
        after = ""
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if after:
                params["startingAfter"] = after
            r = client.get("/api/webhooks", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            ids += [w["id"] for w in page["items"]]
            if not page["hasMore"] or not page["items"]:
                return ids
            after = page["items"][-1]["id"]

    def _log(self, account: str, webhook_ids: list[str]) -> None:
        records = []
        for wid in webhook_ids:
            ids = [f"msg_{uuid.uuid4().hex}" for _ in range(3)]
            self.messages[wid] = ids
            for mid, outcome in zip(ids, ("delivered", "failed", "dead_lettered"), strict=True):
                records.append(delivery_result(account, wid, mid, 1, outcome=outcome, final=True))
        self.store.insert_attempts(records)

    def a_secrets(self) -> list[str]:
        """What account B must never see: A's webhook ids and A's message ids."""
        return self.a_ids + [m for wid in self.a_ids for m in self.messages.get(wid, [])]

    def _operations(self) -> list[Any]:
        return [result.ok() for result in self.schema.get_all_operations()]

    @staticmethod
    def _create(client: httpx.Client, name: str) -> dict[str, Any]:
        r = client.post(
            "/api/webhooks",
            json={"name": name, "url": "https://receiver.example/hook", "subscriptions": ["SALE_NEW"]},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def run_case(self, family: str, case: Any, who: str, pick: int) -> None:
        params = case.path_parameters or {}
        if "webhook_id" in params:
            if who == "b" and pick % 4 != 0:
                params["webhook_id"] = self.protected[pick % 3]["id"]  # B aims at A's
            elif who == "b" and pick % 8 == 0:
                params["webhook_id"] = self.b_ids[pick % 3]
            elif who == "a" and (pick // 3) % 2 == 0:
                # Deletes take only the last spare, so the others live on for the other operations.
                spares = self.spares[-1:] if case.method.upper() == "DELETE" else self.spares[:-1]
                params["webhook_id"] = spares[pick % len(spares)]
            elif who == "wrong" and pick % 2 == 0:
                params["webhook_id"] = self.a_ids[pick % len(self.a_ids)]
        if "message_id" in params and pick % 5 != 0:
            # Mostly a real message id: of the webhook aimed at, or (for B) one of A's.
            wid = params.get("webhook_id", "")
            pool = self.messages.get(wid) or self.messages[self.protected[0]["id"]]
            if who == "b" and pick % 3 == 0:
                pool = self.messages[self.protected[pick % 3]["id"]]
            params["message_id"] = pool[pick % len(pool)]
        if isinstance(case.body, dict) and "url" in case.body and pick % 4 == 1:
            # A receivable URL now and then, so that some generated webhooks are really created.
            case.body["url"] = "https://receiver.example/fuzz"
        headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() not in ("x-api-key", "authorization")
        }
        case.headers = headers
        key = {"a": KEY_A, "b": KEY_B}.get(who) or f"wrong-{uuid.UUID(int=pick)}"
        response = case.call(base_url=self.api.base_url, session=self.session, headers={"X-API-Key": key})
        self.statuses[(family, response.status_code)] += 1
        if who == "a" and response.status_code == 201:
            self.a_ids.append(response.json()["id"])  # A's now: B must never see it either
        where = f"{case.method} {case.formatted_path} ({who}) -> {response.status_code}"
        if response.status_code == 400 and response.text == "Invalid HTTP request received.":
            # Negative cases can send header names that are not HTTP tokens: uvicorn's parser answers
            # them (text/plain) before the application sees a request, so the API's schema is moot.
            self.unparsed += 1
        else:
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, FailureGroup) as exc:  # keep going, report them all (a FailureGroup is a
                # BaseExceptionGroup, not an Exception)
                self.failures.append(f"{where}: {str(exc)[:400]}")
        if who == "b":
            leaked = [i for i in self.a_secrets() if i in response.text]
            if leaked:
                self.failures.append(f"{where}: account B saw A's ids {leaked}")
            aimed = params.get("webhook_id") in self.a_ids
            if aimed and 200 <= response.status_code < 300:
                self.failures.append(f"{where}: account B's key was answered for A's webhook")
        elif who == "wrong" and 200 <= response.status_code < 300:
            self.failures.append(f"{where}: a wrong key was answered with a success")


@pytest.fixture(scope="module")
def fuzz(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    home: Path = tmp_path_factory.mktemp("api-fuzz")
    base = load_settings(
        {}, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"f{uuid.uuid4().hex[:10]}.", home=home / "home"
    )
    create_topics(base)
    api = start_api(
        api_settings(base, api_auth_failure_limit=0, database_url=Secret(f"sqlite:///{home}/logs.sqlite3"))
    )
    fuzz: Fuzz | None = None
    try:
        fuzz = Fuzz(api)
        yield fuzz
    finally:
        if fuzz is not None:
            fuzz.session.close()
            fuzz.store.close()
        api.stop()
        drop_prefixed_topics(base)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzzed_requests_get_no_5xx_no_schema_break_and_no_cross_account_read(
    fuzz: Fuzz, family: str
) -> None:
    fuzz.refresh()
    ops = [fuzz.ops[key] for key in FAMILIES[family]]
    cases = st.one_of(
        [op.as_strategy(mode) for op in ops for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    )
    ran: Counter[str] = Counter()
    started = time.monotonic()

    for kind in ("valid", "wrong"):

        @hypothesis.settings(
            max_examples=CASES,
            derandomize=True,  # the same cases every run
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(case=cases, pick=st.integers(0, 2**32))
        def run(case: Any, pick: int) -> None:
            who = ("a" if pick % 3 else "b") if kind == "valid" else "wrong"  # noqa: B023
            fuzz.run_case(family, case, who, pick)
            ran[kind] += 1  # noqa: B023

        run()

    elapsed = time.monotonic() - started
    statuses = {s: n for (f, s), n in sorted(fuzz.statuses.items()) if f == family}
    print(
        f"\n{family}: {dict(ran)} cases in {elapsed:.1f} s, statuses {statuses}, "
        f"malformed HTTP refused by the server so far: {fuzz.unparsed}"
    )
    assert not fuzz.failures, "\n".join(fuzz.failures[:20]) + f"\n({len(fuzz.failures)} failures)"
    assert ran["valid"] >= CASES and ran["wrong"] >= CASES, ran
    # B's cases changed nothing of A's: the webhooks they aimed at are as they were.
    client = fuzz.api.client(KEY_A)
    for before in fuzz.protected:
        r = client.get(f"/api/webhooks/{before['id']}")
        assert r.status_code == 200, r.text
        now = r.json()
        assert {k: now.get(k) for k in before if k != "secret"} == {
            k: v for k, v in before.items() if k != "secret"
        }
