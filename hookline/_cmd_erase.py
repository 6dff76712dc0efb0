"""``hookline erase``: erase a contact's deliveries from the log store (GDPR Art. 17).

What stays in Kafka, and for how long, is in docs/data-retention.md; the command says it too.
Nothing it prints or logs holds the contact's data: the id is what the operator typed.
"""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", required=True, help="the account whose deliveries to erase")
    p.add_argument(
        "--contact",
        required=True,
        help="the contact's id: the payload's contact.id, or for a buyer the sale's customer.id",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hookline.logstore import LogStoreError, contact_id_problem, describe_url, open_store

    account, contact = args.account, args.contact
    if not account or account != account.strip() or len(account) > 128 or not account.isprintable():
        print(
            "hookline erase: --account must be an account id (1 to 128 printable characters)", file=sys.stderr
        )
        return 2
    problem = contact_id_problem(contact)
    if problem is not None:
        print(f"hookline erase: --contact: {problem}", file=sys.stderr)
        return 2
    try:
        store = open_store(settings)
    except LogStoreError as exc:
        print(
            f"hookline erase: the log store ({describe_url(settings)}) is not reachable: {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        erasure = store.erase_contact(account, contact, requested_by="operator")
    except LogStoreError as exc:
        print(f"hookline erase: nothing was erased: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    when = erasure.erased_at.isoformat(timespec="seconds")
    print(
        f"erasure {erasure.erasure_id} of account {account} at {when}:"
        f" {erasure.messages} messages, {erasure.attempts} attempts erased from {describe_url(settings)}"
    )
    print(
        "Kafka still holds this contact's events, tasks and results until each topic's retention ends"
        f" (contact-events {settings.retention_contact_events_days:g} days, sale-events"
        f" {settings.retention_sale_events_days:g}, webhook-deliveries and retry tiers"
        f" {settings.retention_deliveries_days:g}, webhook-results {settings.retention_results_days:g},"
        f" webhook-dlq {settings.retention_dlq_days:g}): docs/data-retention.md"
    )
    return 0
