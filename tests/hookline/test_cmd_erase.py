"""``hookline erase`` (issue 13, point 2): the real CLI as a subprocess, on stores the log sink filled.

Events are built by the producers' library and their bodies by the router's payload builder, so the
rows hold what real deliveries hold; the log sink stores them from the results topic. Whether an
e-mail is gone is judged on the raw database (tests/logscan.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hookline.payloads import build_payload
from hookline.records import DeliveryResult
from hookline.settings import Settings
from processors.logsink.app import LogSink
from producers.events import Contact, Tag, contact_created, contact_tag_added
from tests.conftest import REPO
from tests.logrecords import delivery_result
from tests.logscan import in_postgres, in_sqlite_files
from tests.processors.logsink.test_logsink import (  # noqa: F401  (store_url is a fixture)
    Results,
    in_process,
    open_url,
    store_url,
)
from tests.support import scaled, wait_until

ANN = Contact(id=4242, email="ann.erase-me@example.org", registered_at=1_700_000_000_000, locale="de")
BOB = Contact(id=4343, email="bob.keep-me@example.org", registered_at=1_700_000_000_000)


def erase(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOOKLINE_DATABASE_URL": url, "HOOKLINE_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "hookline.cli", "erase", *argv],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=scaled(120),
    )  # fmt: skip


def result(account: str, webhook: str, message: str, attempt: int, body: bytes, echo: str) -> DeliveryResult:
    """A failed attempt whose receiver echoed the e-mail in its answer."""
    return delivery_result(
        account, webhook, message, attempt, event_type="CONTACT_CREATED", outcome="failed", final=False,
        requestBody=body, responseBodyExcerpt=f'{{"error": "{echo} exists"}}'.encode(),
        responseHeaders={"x-contact": echo},
    )  # fmt: skip


def scanner(url: str) -> Callable[[str], list[str]]:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return lambda needle: in_sqlite_files(path, needle)
    return lambda needle: in_postgres(url, needle)


def test_hookline_erase_removes_the_contacts_email_from_every_row_and_nothing_else(
    settings: Settings,
    store_url: str,  # noqa: F811 (the imported fixture)
) -> None:
    ann_created = build_payload(contact_created("acct-a", ANN).to_avro())
    ann_tagged = build_payload(contact_tag_added("acct-a", ANN, Tag(7, "vip")).to_avro())
    bob_created = build_payload(contact_created("acct-a", BOB).to_avro())
    elsewhere = build_payload(contact_created("acct-b", ANN).to_avro())  # same id and e-mail, account B
    records = [
        result("acct-a", "wh-1", "msg_ann_1", 1, ann_created, ANN.email),
        result("acct-a", "wh-1", "msg_ann_1", 2, ann_created, ANN.email),
        result("acct-a", "wh-2", "msg_ann_2", 1, ann_tagged, ANN.email),
        result("acct-a", "wh-1", "msg_bob_1", 1, bob_created, BOB.email),
        result("acct-b", "wh-9", "msg_b_1", 1, elsewhere, ANN.email),
    ]
    store = open_url(store_url)
    scan = scanner(store_url)
    try:
        with in_process(LogSink(settings, store=store, batch_wait=0.05)):
            Results(settings).put(*records)  # type: ignore[arg-type]  # put encodes any record
            wait_until(lambda: store.get_message("acct-b", "wh-9", "msg_b_1"), 60, "the results stored")
        assert scan(ANN.email), "the e-mail must be stored before the erasure (else this proves nothing)"

        done = erase(store_url, "--account", "acct-a", "--contact", "4242")
        assert done.returncode == 0, done.stderr
        assert "3 attempts erased" in done.stdout and "2 messages" in done.stdout, done.stdout
        assert "Kafka still holds" in done.stdout and "docs/data-retention.md" in done.stdout
        assert ANN.email not in done.stdout + done.stderr

        for webhook, message in (("wh-1", "msg_ann_1"), ("wh-2", "msg_ann_2")):
            detail = store.get_message("acct-a", webhook, message)
            assert detail is not None and detail.message.erased_at is not None
            assert all(a.erased and not a.request_body for a in detail.attempts)
        bob = store.get_message("acct-a", "wh-1", "msg_bob_1")
        assert (
            bob is not None and bob.message.erased_at is None and bob.attempts[0].request_body == bob_created
        )
        other = store.get_message("acct-b", "wh-9", "msg_b_1")
        assert other is not None and other.attempts[0].request_body == elsewhere  # account B's row stays
        [recorded] = store.erasures("acct-a")
        assert (recorded.requested_by, recorded.messages, recorded.attempts) == ("operator", 2, 3)
    finally:
        store.close()
    # Account B still holds its own copy of the e-mail (its own contact record): erase it there too.
    assert scan(ANN.email) and scan(BOB.email)
    assert erase(store_url, "--account", "acct-b", "--contact", "4242").returncode == 0
    assert scan(ANN.email) == [] and scan(BOB.email)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--account", "acct-a", "--contact", "ann@example.org"], "not an e-mail address"),
        (["--account", "acct-a", "--contact", ""], "--contact: a contact id is the payload's contact.id"),
        (["--account", "acct-a", "--contact", "x" * 129], "at most 128 characters"),
        (["--account", "", "--contact", "1"], "--account must be an account id"),
    ],
)
def test_bad_ids_are_refused_with_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    done = erase(f"sqlite:///{tmp_path / 'logs.sqlite3'}", *argv)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "logs.sqlite3").exists()  # refused before the store was opened


def test_an_unknown_contact_erases_nothing_and_is_no_error(tmp_path: Path) -> None:
    done = erase(f"sqlite:///{tmp_path / 'logs.sqlite3'}", "--account", "acct-a", "--contact", "999")
    assert done.returncode == 0, done.stderr
    assert "0 messages, 0 attempts erased" in done.stdout


def test_an_unreachable_store_is_exit_1_with_its_reason(tmp_path: Path) -> None:
    done = erase("postgresql://nobody:secret@127.0.0.1:1/none", "--account", "a", "--contact", "1")
    assert done.returncode == 1 and "not reachable" in done.stderr and "secret" not in done.stderr
