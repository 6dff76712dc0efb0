"""The management API's operations: reads from the config view, writes to the config topic.

Every write builds the next :class:`~hookline.webhooks.Webhook`, waits for the broker's
acknowledgement, then waits until this process's view has applied that very offset, so the
client's next read — on this instance — sees its own write. Writes to one webhook (and creates
of one account) are serialised within an instance, which keeps ``version`` strictly increasing
here; across instances the topic's order decides (last writer wins).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Protocol

from api.errors import ApiError, InvalidRequest, Unavailable
from api.validation import UNLIMITED, NewWebhook, WebhookChanges
from api.writer import ConfigWriter, Written
from hookline.metrics import ApiMetrics
from hookline.sealing import Sealer
from hookline.signing import generate_secret
from hookline.webhooks import Subscription, Webhook

__all__ = ["ConfigReader", "WebhookService", "new_webhook_id"]

log = logging.getLogger("hookline.api")

#: How long a rotated-out secret still signs deliveries, so receivers can switch without a gap.
SECRET_ROTATION_GRACE_MS = 24 * 3600 * 1000
MAX_CURSOR_LENGTH = 64


class ConfigReader(Protocol):
    """The part of :class:`hookline.configview.ConfigView` the API reads."""

    @property
    def ready(self) -> bool: ...

    def get(self, webhook_id: str) -> Webhook | None: ...

    def for_account(self, account_id: str) -> list[Webhook]: ...

    async def wait_applied_async(self, partition: int, offset: int, timeout: float = ...) -> bool: ...


def new_webhook_id(millis: int) -> str:
    """A UUIDv7: ordered by creation time, which it carries (the list cursor relies on that)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _id_position(webhook_id: str) -> tuple[int, str] | None:
    """(creation millis, canonical id) of a UUIDv7 id, or None for anything else."""
    try:
        parsed = uuid.UUID(webhook_id)
    except ValueError:
        return None
    return (parsed.int >> 80, str(parsed)) if parsed.version == 7 else None


def _rate_limit(current: int | None, change: int | None) -> int | None:
    """The rate limit after a patch: ``change`` None keeps it, :data:`UNLIMITED` removes it."""
    if change is None:
        return current
    return None if change == UNLIMITED else change


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class WebhookService:
    """Create, list, read, merge-patch and delete one account's webhooks."""

    def __init__(
        self,
        view: ConfigReader,
        writer: ConfigWriter,
        sealer: Sealer,
        metrics: ApiMetrics,
        *,
        max_per_account: int,
        apply_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._view = view
        self._writer = writer
        self._sealer = sealer
        self._metrics = metrics
        self._max = max_per_account
        self._apply_timeout = apply_timeout
        self._clock = clock
        self._account_locks = _KeyedLocks()
        self._webhook_locks = _KeyedLocks()
        # Versions written here that the view had not applied when the write returned.
        self._unapplied: dict[str, int] = {}

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _require_ready(self) -> None:
        if not self._view.ready:
            raise Unavailable("the webhook configuration is still loading; retry shortly")

    def _owned(self, account: str, webhook_id: str) -> Webhook:
        hook = self._view.get(webhook_id)
        if hook is None or hook.account_id != account:  # another account's webhook does not exist
            raise ApiError("not_found", "no webhook with this id", status=404)
        return hook

    # -- reads ------------------------------------------------------------------------------------
    def get(self, account: str, webhook_id: str) -> Webhook:
        self._require_ready()
        return self._owned(account, webhook_id)

    def list(self, account: str, limit: int, starting_after: str | None) -> tuple[list[Webhook], bool]:
        """One page ordered by (created_at, id), after the webhook ``starting_after``."""
        self._require_ready()
        hooks = self._view.for_account(account)
        if starting_after is not None:
            position = self._cursor(account, starting_after)
            hooks = [h for h in hooks if (h.created_at, h.id) > position]
        return hooks[:limit], len(hooks) > limit

    def _cursor(self, account: str, starting_after: str) -> tuple[int, str]:
        hook = self._view.get(starting_after)
        if hook is not None and hook.account_id == account:
            return hook.created_at, hook.id
        # A webhook deleted since the previous page still marks its place: its id carries its time.
        position = _id_position(starting_after) if len(starting_after) <= MAX_CURSOR_LENGTH else None
        if position is None:
            raise InvalidRequest("invalid_cursor", "startingAfter must be the id of a webhook", status=400)
        return position

    # -- writes -----------------------------------------------------------------------------------
    async def create(self, account: str, new: NewWebhook) -> tuple[Webhook, str | None]:
        """Store a new webhook; return it and the secret when one was generated."""
        self._require_ready()
        async with self._account_locks.hold(account):
            if len(self._view.for_account(account)) >= self._max:
                raise ApiError(
                    "too_many_webhooks",
                    f"an account may have at most {self._max} webhooks; delete one first",
                    status=409,
                )
            now = self._now()
            webhook_id = new_webhook_id(now)
            generated = generate_secret() if new.secret is None else None
            secret = new.secret if new.secret is not None else generated
            assert secret is not None
            hook = Webhook(
                id=webhook_id,
                account_id=account,
                name=new.name,
                url=new.url,
                secret=self._sealer.seal(webhook_id, secret),
                subscriptions=tuple(Subscription(e) for e in new.subscriptions),
                active=new.active,
                rate_limit=new.rate_limit,
                ordering=new.ordering,
                created_at=now,
                updated_at=now,
                version=1,
            )
            await self._put(hook, "create")
        log.info("webhook %s created by account %s", webhook_id, account)
        return hook, generated

    async def update(self, account: str, webhook_id: str, changes: WebhookChanges) -> Webhook:
        """Apply a validated merge-patch; a patch that changes nothing writes nothing."""
        self._require_ready()
        async with self._webhook_locks.hold(webhook_id):
            current = self._owned(account, webhook_id)
            now = max(self._now(), current.updated_at)
            active = current.active if changes.active is None else changes.active
            if active and not current.active:
                reason = None  # the owner switched it back on
            elif not active and current.active:
                reason = None  # the owner switched it off
            else:
                reason = current.disabled_reason
            subscriptions = current.subscriptions
            if changes.subscriptions is not None:
                # The list is what the owner wants delivered now: listed events are (re-)enabled.
                subscriptions = tuple(Subscription(e) for e in changes.subscriptions)
            nxt = replace(
                current,
                name=current.name if changes.name is None else changes.name,
                url=current.url if changes.url is None else changes.url,
                subscriptions=subscriptions,
                active=active,
                disabled_reason=reason,
                disabled_at=current.disabled_at if reason is not None else None,
                rate_limit=_rate_limit(current.rate_limit, changes.rate_limit),
                ordering=current.ordering if changes.ordering is None else changes.ordering,
            )
            if changes.secret is not None:
                nxt = replace(
                    nxt,
                    secret=self._sealer.seal(webhook_id, changes.secret),
                    previous_secret=current.secret,
                    previous_secret_expires_at=now + SECRET_ROTATION_GRACE_MS,
                )
            if nxt == current:
                return current
            version = max(current.version, self._unapplied.get(webhook_id, 0)) + 1
            nxt = replace(nxt, version=version, updated_at=now)
            await self._put(nxt, "update")
        log.info("webhook %s updated by account %s (version %d)", webhook_id, account, version)
        return nxt

    async def delete(self, account: str, webhook_id: str) -> None:
        self._require_ready()
        async with self._webhook_locks.hold(webhook_id):
            self._owned(account, webhook_id)
            try:
                written = await self._writer.delete(webhook_id)
            except Exception:
                self._metrics.writes.labels("delete", "failed").inc()
                raise
            self._metrics.writes.labels("delete", "ok").inc()
            self._unapplied.pop(webhook_id, None)
            await self._await_applied(webhook_id, written)
        log.info("webhook %s deleted by account %s", webhook_id, account)

    async def _put(self, hook: Webhook, kind: str) -> None:
        try:
            written = await self._writer.put(hook)
        except Exception:
            self._metrics.writes.labels(kind, "failed").inc()
            raise
        self._metrics.writes.labels(kind, "ok").inc()
        if await self._await_applied(hook.id, written):
            self._unapplied.pop(hook.id, None)
        else:
            self._unapplied[hook.id] = hook.version

    async def _await_applied(self, webhook_id: str, written: Written) -> bool:
        # The write is durable once acknowledged; if the view lags, answer anyway (a retry would
        # duplicate a create) and say so in the log.
        applied = await self._view.wait_applied_async(written.partition, written.offset, self._apply_timeout)
        if not applied:
            log.warning(
                "config view has not applied write %s/%d of webhook %s within %.0fs",
                written.partition,
                written.offset,
                webhook_id,
                self._apply_timeout,
            )
        return applied
