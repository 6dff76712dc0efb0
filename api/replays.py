"""Replay a webhook's events from the event topics (issue 13; docs/architecture.md §7).

``POST /api/webhooks/{id}/replay {"from", "to"?, "events"?}`` fixes, per partition of the event topics,
the offsets that hold the window (the broker's offsets-for-times; the end is where the topics end now)
and writes the replay to ``webhook-replays``; a router runs it (``processors/router/replay.py``) and
writes its progress there, which ``GET /api/webhooks/{id}/replays/{replayId}`` shows. One replay per
webhook at a time: another while one runs answers 409.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.errors import ApiError, InvalidRequest, Unavailable
from api.representation import ErrorBody, EventName
from api.routes import JSON, Account, _read_json  # the API's one body reader: size, media type, JSON
from api.service import WebhookService
from api.writer import NotWritten, TopicWriter
from hookline.clients import admin_client
from hookline.replays import Replay, ReplayView, new_replay_id, plan
from hookline.settings import Settings
from hookline.timestamps import rfc3339
from hookline.topics import REPLAYS
from hookline.webhooks import EVENT_TYPES

__all__ = ["ReplayService", "install_replays", "parse_replay", "present_replay"]

log = logging.getLogger("hookline.api")

_NOT_WRITTEN = NotWritten(
    refused="the replay topic refused the replay ({})",
    busy="too many writes in flight; retry shortly",
    late="the broker did not acknowledge the replay in time",
    closed="the API is stopping",
)
_FIELDS = ("from", "to", "events")


class ReplayService:
    """Start a webhook's replay and read its progress; the view and the writer are created on first use."""

    def __init__(
        self,
        settings: Settings,
        webhooks: WebhookService,
        *,
        view: ReplayView | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._webhooks = webhooks
        self._view = view
        self._owns_view = view is None
        self._writer = TopicWriter(
            settings, REPLAYS, None, name="replay-writer", ack_timeout=35.0, not_written=_NOT_WRITTEN
        )
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._admin: Any = None

    async def _ready_view(self) -> ReplayView:
        view = self._view
        if view is None:
            view = self._view = ReplayView(self._settings, client_id="hookline-api-replays")
            view.start()
        if not await view.wait_ready_async(timeout=10):
            raise Unavailable("the replays are still loading; retry shortly")
        return view

    def close(self) -> None:
        self._writer.close(10)
        if self._owns_view and self._view is not None:
            self._view.stop()

    async def start(self, account: str, webhook_id: str, body: dict[str, Any]) -> Replay:
        """Accept a replay of ``webhook_id`` for the window and events of ``body``; 409 while one runs."""
        hook = self._webhooks.get(account, webhook_id)
        from_ms, to_ms, events = parse_replay(body, int(self._clock() * 1000))
        subscribed = [s.event for s in hook.subscriptions if s.disabled_at is None]
        if events is None:
            events = tuple(e for e in EVENT_TYPES if e in subscribed)
        missing = [e for e in events if e not in subscribed]
        if missing:
            raise InvalidRequest(
                "event_not_subscribed",
                f"the webhook is not subscribed to {missing[0]} (or that subscription is disabled)",
            )
        if not hook.active:
            raise ApiError("webhook_inactive", "the webhook is inactive; activate it to replay", status=409)
        view = await self._ready_view()
        async with self._locks.setdefault(webhook_id, asyncio.Lock()):
            await view.catch_up_async(self._clock() * 1000)  # a replay another instance just accepted
            running = view.latest(webhook_id)
            if running is not None and not running.done:
                raise ApiError(
                    "replay_running",
                    f"replay {running.id} of this webhook is still running; wait until it is done",
                    status=409,
                )
            try:
                spans, earliest = await asyncio.to_thread(self._plan, from_ms, to_ms)
            except Exception as exc:
                self._admin = None  # ask with a new client next time (a broker may have moved leaders)
                log.warning("replay: could not read the event topics' offsets: %s", exc)
                raise Unavailable("the event topics did not answer; retry shortly") from None
            now = int(self._clock() * 1000)
            replay = Replay(
                id=new_replay_id(),
                webhook_id=hook.id,
                account_id=hook.account_id,
                from_ms=from_ms,
                to_ms=to_ms,
                events=events,
                spans=tuple(spans),
                created_at=now,
                updated_at=now,
                earliest_available_ms=earliest,
            )
            if not self._writer.started:
                await asyncio.to_thread(self._writer.start)
            written = await self._writer.send(replay.key, replay.encode())
            await view.wait_applied_async(written.partition, written.offset)
        log.info(
            "replay %s of webhook %s requested by account %s: %d records to read",
            replay.id,
            hook.id,
            account,
            replay.events_total,
        )
        return replay

    def _plan(self, from_ms: int, to_ms: int | None) -> tuple[list[Any], int | None]:
        if self._admin is None:
            self._admin = admin_client(self._settings)
        return plan(self._admin, self._settings, from_ms, to_ms)

    async def latest(self, account: str, webhook_id: str) -> Replay | None:
        """The webhook's latest replay, running or not (404 for another account's webhook)."""
        self._webhooks.get(account, webhook_id)
        return (await self._ready_view()).latest(webhook_id)

    async def get(self, account: str, webhook_id: str, replay_id: str) -> Replay:
        replay = await self.latest(account, webhook_id)
        if replay is None or replay.id != replay_id:
            raise ApiError(
                "replay_not_found",
                "no such replay of this webhook (only its latest replay is kept)",
                status=404,
            )
        return replay


def _time(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("invalid_type", f"{name} must be a string")
    try:
        when = datetime.fromisoformat(value) if len(value) <= 64 and "T" in value.upper() else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidRequest(
            f"invalid_{name}", f"{name} must be an RFC 3339 time with an offset, e.g. 2024-06-01T00:00:00Z"
        )
    return int(when.timestamp() * 1000)


def parse_replay(body: dict[str, Any], now_ms: int) -> tuple[int, int | None, tuple[str, ...] | None]:
    """``(from, to, events)`` of a replay request body: epoch ms, and None where left out."""
    unknown = sorted(k for k in body if k not in _FIELDS)
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "..."
        raise InvalidRequest("unknown_field", f"unknown field {shown!r}; allowed: {', '.join(_FIELDS)}")
    from_ms = _time(body, "from")
    if from_ms is None:
        raise InvalidRequest("from_required", "give from: an RFC 3339 time, e.g. 2024-06-01T00:00:00Z")
    to_ms = _time(body, "to")
    if from_ms >= now_ms:
        raise InvalidRequest("invalid_window", "from must be in the past")
    if to_ms is not None and to_ms <= from_ms:
        raise InvalidRequest("invalid_window", "to must be later than from")
    raw = body.get("events")
    if raw is None:
        return from_ms, to_ms, None
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
        raise InvalidRequest("invalid_type", "events must be a non-empty list of event names")
    for e in raw:
        if e not in EVENT_TYPES:
            shown = e if len(e) <= 64 else e[:64] + "..."
            raise InvalidRequest(
                "invalid_event_type", f"unknown event {shown!r}; events are {', '.join(EVENT_TYPES)}"
            )
    return from_ms, to_ms, tuple(e for e in EVENT_TYPES if e in raw)


def present_replay(r: Replay) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": r.id,
        "webhookId": r.webhook_id,
        "status": r.status,
        "done": r.done,
        "from": rfc3339(r.from_ms),
        "to": None if r.to_ms is None else rfc3339(r.to_ms),
        "events": list(r.events),
        "eventsScanned": r.events_scanned,
        "eventsTotal": r.events_total,
        "tasksProduced": r.tasks_produced,
        "createdAt": rfc3339(r.created_at),
        "updatedAt": rfc3339(r.updated_at),
        "finishedAt": None if r.finished_at is None else rfc3339(r.finished_at),
        "reason": r.reason,
        "earliestAvailable": None,
        "notice": None,
    }
    if r.earliest_available_ms is not None:
        doc["earliestAvailable"] = rfc3339(r.earliest_available_ms)
        doc["notice"] = (
            f"events published before {doc['earliestAvailable']} are no longer kept (the event topics'"
            " retention): the replay sends what is still there, from that time on"
        )
    return doc


# -- OpenAPI documentation models ---------------------------------------------------------------


class ReplayRequest(BaseModel):
    model_config = {"populate_by_name": True}

    from_: str = Field(
        alias="from", description="RFC 3339 time with an offset: events published then or later."
    )
    to: str | None = Field(
        default=None, description="RFC 3339 time: events published before it (default: up to now)."
    )
    events: list[EventName] | None = Field(
        default=None,
        description="Event types to replay, among the webhook's subscriptions (default: all of them).",
    )


class ReplayOut(BaseModel):
    id: str
    webhookId: str
    status: str = Field(description="running, done, or canceled (the webhook was deleted or switched off).")
    done: bool
    from_: str = Field(alias="from")
    to: str | None
    events: list[EventName]
    eventsScanned: int = Field(description="Records of the event topics read so far (every account's).")
    eventsTotal: int = Field(description="Records of the event topics the replay reads in all.")
    tasksProduced: int = Field(description="Messages sent to the webhook so far (trigger replay).")
    createdAt: str
    updatedAt: str
    finishedAt: str | None
    reason: str | None = Field(description="Why it was canceled.")
    earliestAvailable: str | None = Field(
        description="Set when `from` is older than the topics keep events: the earliest time still available."
    )
    notice: str | None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.state.replays.close()


router = APIRouter(prefix="/api", tags=["deliveries"], lifespan=_lifespan)


def _replays(request: Request) -> ReplayService:
    service: ReplayService = request.app.state.replays
    return service


@router.post(
    "/webhooks/{webhook_id}/replay",
    status_code=202,
    summary="Send again the events published in a time window, from the event log (trigger replay)",
    responses={
        202: {"model": ReplayOut},
        404: {"model": ErrorBody, "description": "No such webhook for this account"},
        409: {"model": ErrorBody, "description": "The webhook is inactive, or a replay of it is running"},
        422: {"model": ErrorBody, "description": "A field is invalid (see error.code)"},
        503: {"model": ErrorBody, "description": "Still loading, or the broker did not answer"},
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {JSON: {"schema": ReplayRequest.model_json_schema()}}}
    },
)
async def replay(request: Request, account_id: Account, webhook_id: str) -> Response:
    service = _replays(request)
    request.app.state.service.get(account_id, webhook_id)  # 404 before judging someone else's body
    started = await service.start(account_id, webhook_id, await _read_json(request, (JSON,)))
    return JSONResponse(
        present_replay(started),
        status_code=202,
        headers={"Location": f"/api/webhooks/{webhook_id}/replays/{started.id}"},
    )


@router.get(
    "/webhooks/{webhook_id}/replays/{replay_id}",
    summary="How far a replay got",
    responses={
        200: {"model": ReplayOut},
        404: {"model": ErrorBody, "description": "No such webhook, or not its latest replay"},
    },
)
async def get_replay(request: Request, account_id: Account, webhook_id: str, replay_id: str) -> Response:
    return JSONResponse(present_replay(await _replays(request).get(account_id, webhook_id, replay_id)))


def install_replays(app: FastAPI, settings: Settings) -> None:
    """Add the replay endpoints to ``app``; the service lives and closes with it (the router's lifespan)."""
    app.state.replays = ReplayService(settings, app.state.service)
    app.include_router(router)
