"""The web page: an account owner's Settings > Webhooks, server-rendered next to the API.

Routes (HTML, none in the OpenAPI document)::

    GET  /                                              -> the webhook list, or sign in
    GET  /signin            POST /signin                sign in with an API key
    POST /signout
    GET  /settings/webhooks                             the list, with each last delivery
    GET  /settings/webhooks/new          POST ...        create (a generated secret is shown once)
    GET  /settings/webhooks/{id}/edit    POST ...        edit
    GET  /settings/webhooks/{id}/delete  POST ...        delete, after a confirmation page
    POST /settings/webhooks/{id}/test                   send a test event
    GET  /settings/webhooks/{id}/logs                   deliveries, filtered by status and event
    GET  /settings/webhooks/{id}/logs/{message_id}      every attempt of one delivery
    POST /settings/webhooks/{id}/logs/{message_id}/redeliver
    POST /settings/webhooks/{id}/recover                send again what failed in the last hours
    GET  /settings/webhooks/{id}/replay  POST ...        replay the events of the last hours (api/replays.py)
    GET  /static/...                                    CSS and JS (no inline script anywhere)

Every POST carries the session's CSRF token (see :mod:`api.sessions`); every page is
rendered by Jinja2 with autoescaping, sent with a script-free Content-Security-Policy, framing
denied and ``Cache-Control: no-store``. The page calls the same services as the JSON API, so
account isolation, validation and the write path are the API's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.staticfiles import StaticFiles

from api.errors import ApiError, InvalidRequest, TooManyAuthFailures
from api.forms import EVENT_LABELS, MAX_FORM_BYTES, FieldErrors, FormData, WebhookForm, parse_form
from api.replays import ReplayService, present_replay
from api.service import WebhookService
from api.sessions import (
    PRESESSION_COOKIE,
    PRESESSION_SECONDS,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SessionCodec,
)
from api.throttle import admit, refused
from api.validation import UrlRules, WebhookChanges
from hookline.logstore import STATUSES, LastDelivery, MessageDetail, MessagePage
from hookline.settings import Settings
from hookline.timestamps import rfc3339
from hookline.webhooks import EVENT_TYPES, Webhook

__all__ = ["DeliveryLogs", "install_pages"]

log = logging.getLogger("hookline.api")

LOGS_PAGE_SIZE = 25

#: Headers of every page. No inline script or style is allowed: the page's JS is /static/page.js.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Notices a redirect may ask the next page to show (fixed texts: no user input travels in a URL).
NOTICES = {
    "created": "Webhook created.",
    "saved": "Webhook saved.",
    "deleted": "Webhook deleted.",
    "enabled": "Webhook switched back on. Its failure streak starts again from zero.",
    "test_sent": "Test event sent. It shows up below as soon as its first attempt is made.",
    "redelivered": "Redelivery queued. The new attempt shows up below as soon as it is made.",
    "recovered": "Recover queued: the failed messages of that period are sent again, oldest first.",
    "recovered_more": "Recover queued for as many messages as one call sends; more remain: recover again.",
    "recovered_none": "No failed messages in that period to send again.",
    "replay_started": "Replay started: the events of that period are read from the event log and sent again.",
    "signed_out": "You are signed out.",
}


class DeliveryLogs(Protocol):
    """What the page needs of the delivery logs (``api.deliveries.DeliveryLogService``)."""

    async def list_deliveries(
        self,
        account: str,
        webhook_id: str,
        status: str | None,
        event: str | None,
        limit: int,
        starting_after: str | None,
    ) -> MessagePage: ...

    async def get_delivery(self, account: str, webhook_id: str, message_id: str) -> MessageDetail: ...

    async def last_deliveries(self, account: str) -> dict[str, LastDelivery]: ...

    async def redeliver(self, account: str, webhook_id: str, message_id: str) -> Any: ...

    async def send_test(self, account: str, webhook_id: str, event_type: str) -> Any: ...

    async def recover(self, account: str, webhook_id: str, since_ms: int, *, limit: int) -> Any: ...


class _PageError(Exception):
    """Answer with the error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message


class _SignInRequired(Exception):
    """No valid session: send the browser to the sign-in page."""


@dataclass(frozen=True, slots=True)
class _Context:
    """What a signed-in page handler works with."""

    request: Request
    session: Session
    csrf: str

    @property
    def account(self) -> str:
        return self.session.account


# -- rendering -----------------------------------------------------------------------------------


def _when(moment: datetime | int | None) -> str:
    """A time for people; an int is epoch milliseconds (a config record's ``disabledAt``)."""
    if moment is None:
        return ""
    if isinstance(moment, int):
        moment = datetime.fromtimestamp(moment / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _body_text(raw: bytes) -> str:
    """A request or response body for display: pretty JSON when it is JSON, else text."""
    text = raw.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("api", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["body_text"] = _body_text
    env.globals["EVENT_TYPES"] = EVENT_TYPES
    env.globals["EVENT_LABELS"] = EVENT_LABELS
    env.globals["STATUSES"] = STATUSES
    return env


_TEMPLATES = _environment()


def _render(
    name: str, context: Mapping[str, Any], *, status: int = 200, ctx: _Context | None = None
) -> HTMLResponse:
    values = {
        "account": ctx.account if ctx else None,
        "csrf": ctx.csrf if ctx else "",
        "notice": None,
        **context,
    }
    html = _TEMPLATES.get_template(name).render(values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


# -- state of the app ----------------------------------------------------------------------------


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.sessions
    return codec


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.service
    return service


def _rules(request: Request) -> UrlRules:
    rules: UrlRules = request.app.state.url_rules
    return rules


def _logs(request: Request) -> DeliveryLogs | None:
    logs: DeliveryLogs | None = getattr(request.app.state, "deliveries", None)
    return logs


def _signed_in(request: Request) -> _Context:
    codec = _codec(request)
    session = codec.decode(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise _SignInRequired()
    return _Context(request, session, codec.csrf_token(session))


async def _read_form(request: Request) -> FormData:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in ("application/x-www-form-urlencoded", "") or (
        not media and request.headers.get("content-length", "0") != "0"
    ):
        raise _PageError(415, "Unsupported form", "This form must be sent by the page itself.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise _PageError(413, "Form too large", f"A form may carry at most {MAX_FORM_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _PageError(413, "Form too large", f"A form may carry at most {MAX_FORM_BYTES} bytes.")
    try:
        return parse_form(bytes(body))
    except ValueError:  # more fields than any of our forms has
        raise _PageError(400, "Form refused", "This form has too many fields.") from None


def _refuse_csrf() -> NoReturn:
    raise _PageError(
        403,
        "Form refused",
        "This form did not come from this page, or your session changed since it was loaded. "
        "Go back, reload the page and try again.",
    )


async def _posted(request: Request) -> tuple[_Context, FormData]:
    """The signed-in context and the form of a POST whose CSRF token matches the session."""
    ctx = _signed_in(request)
    form = await _read_form(request)
    if not _codec(request).check_csrf(ctx.session, form.first("csrf")):
        _refuse_csrf()
    return ctx, form


def _owned(ctx: _Context, webhook_id: str) -> Webhook:
    try:
        return _service(ctx.request).get(ctx.account, webhook_id)
    except ApiError as exc:
        _raise_page(exc)


def _raise_page(exc: ApiError) -> NoReturn:
    if exc.status == 404:
        raise _PageError(
            404, "Not found", "There is no such webhook (or delivery) in your account."
        ) from None
    if exc.status == 503:
        raise _PageError(503, "Try again shortly", _sentence(exc.message)) from None
    raise _PageError(exc.status, "Refused", _sentence(exc.message)) from None


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _list_url(notice: str) -> str:
    return f"/settings/webhooks?notice={notice}"


def _cookie_secure(request: Request) -> bool:
    # Browsers refuse Secure cookies on plain http (but for localhost); set it whenever TLS is in use.
    return request.url.scheme == "https"


# -- routes --------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(request: Request) -> Response:
    signed_in = _codec(request).decode(request.cookies.get(SESSION_COOKIE)) is not None
    return _redirect("/settings/webhooks" if signed_in else "/signin")


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    codec = _codec(request)
    if codec.decode(request.cookies.get(SESSION_COOKIE)) is not None:
        return _redirect("/settings/webhooks")
    return _signin_page(request, error=None, status=200)


def _signin_page(request: Request, *, error: str | None, status: int) -> Response:
    codec = _codec(request)
    pre = codec.decode(request.cookies.get(PRESESSION_COOKIE), anonymous=True)
    fresh = pre is None
    if pre is None:
        pre = codec.presession()
    response = _render(
        "signin.html",
        {"error": error, "csrf": codec.csrf_token(pre), "notice": _notice(request)},
        status=status,
    )
    if fresh:
        response.set_cookie(
            PRESESSION_COOKIE,
            codec.encode(pre),
            max_age=PRESESSION_SECONDS,
            path="/signin",
            httponly=True,
            samesite="strict",
            secure=_cookie_secure(request),
        )
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    codec = _codec(request)
    form = await _read_form(request)
    pre = codec.decode(request.cookies.get(PRESESSION_COOKIE), anonymous=True)
    if pre is None or not codec.check_csrf(pre, form.first("csrf")):
        _refuse_csrf()
    try:
        client = admit(request)
    except TooManyAuthFailures as exc:
        page = _signin_page(
            request,
            error=(
                "Too many wrong API keys were tried from your address. "
                f"Try again in {exc.retry_after} seconds."
            ),
            status=429,
        )
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    presented = form.first("api_key").strip()
    session = codec.sign_in(presented)
    if session is None:
        refused(request, client, presented)
        return _signin_page(request, error="This API key is not valid.", status=401)
    log.info("web page: account %s signed in", session.account)
    response = _redirect("/settings/webhooks")
    response.set_cookie(
        SESSION_COOKIE,
        codec.encode(session),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
    )
    response.delete_cookie(PRESESSION_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    ctx, _ = await _posted(request)
    _codec(request).revoke(ctx.session)
    response = _redirect("/signin?notice=signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/settings/webhooks")
async def webhook_list(request: Request) -> Response:
    ctx = _signed_in(request)
    try:
        hooks, _ = _service(request).list(ctx.account, 10_000, None)
    except ApiError as exc:
        _raise_page(exc)
    logs = _logs(request)
    last: dict[str, LastDelivery] = {}
    if logs is not None:
        try:
            last = await logs.last_deliveries(ctx.account)
        except Exception as exc:  # the list stays usable while the log store is down
            log.warning("web page: last deliveries unavailable (%s)", type(exc).__name__)
    return _render("list.html", {"hooks": hooks, "last": last, "notice": _notice(request)}, ctx=ctx)


@router.get("/settings/webhooks/new")
async def new_form(request: Request) -> Response:
    ctx = _signed_in(request)
    return _form_page(ctx, WebhookForm(), {}, hook=None)


def _form_page(
    ctx: _Context,
    form: WebhookForm,
    errors: FieldErrors,
    *,
    hook: Webhook | None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    return _render(
        "form.html",
        {"form": form, "errors": errors, "hook": hook, "problem": problem},
        status=status,
        ctx=ctx,
    )


@router.post("/settings/webhooks/new")
async def create(request: Request) -> Response:
    ctx, data = await _posted(request)
    form = WebhookForm.from_form(data)
    new, errors = form.to_new(_rules(request))
    if new is None:
        return _form_page(
            ctx, form, errors, hook=None, problem="Please correct the fields marked below.", status=422
        )
    try:
        hook, generated = await _service(request).create(ctx.account, new)
    except ApiError as exc:
        return _form_page(ctx, form, {}, hook=None, problem=_sentence(exc.message), status=exc.status)
    if generated is None:
        return _redirect(_list_url("created"))
    # Shown in this response only: it is never stored in the clear, so it cannot be shown again.
    return _render("created.html", {"hook": hook, "secret": generated}, status=201, ctx=ctx)


@router.get("/settings/webhooks/{webhook_id}/edit")
async def edit_form(request: Request, webhook_id: str) -> Response:
    ctx = _signed_in(request)
    hook = _owned(ctx, webhook_id)
    return _form_page(ctx, WebhookForm.from_webhook(hook), {}, hook=hook)


@router.post("/settings/webhooks/{webhook_id}/edit")
async def edit(request: Request, webhook_id: str) -> Response:
    ctx, data = await _posted(request)
    hook = _owned(ctx, webhook_id)
    form = WebhookForm.from_form(data)
    changes, errors = form.to_changes(_rules(request))
    if changes is None:
        return _form_page(
            ctx, form, errors, hook=hook, problem="Please correct the fields marked below.", status=422
        )
    try:
        await _service(request).update(ctx.account, webhook_id, changes)
    except ApiError as exc:
        if exc.status == 404:
            _raise_page(exc)
        return _form_page(ctx, form, {}, hook=hook, problem=_sentence(exc.message), status=exc.status)
    return _redirect(_list_url("saved"))


@router.post("/settings/webhooks/{webhook_id}/enable")
async def enable(request: Request, webhook_id: str) -> Response:
    """The banner's one click: switch a webhook the platform disabled back on (PATCH {"active": true})."""
    ctx, _ = await _posted(request)
    try:
        await _service(request).update(ctx.account, webhook_id, WebhookChanges(active=True))
    except ApiError as exc:
        _raise_page(exc)
    return _redirect(_list_url("enabled"))


@router.get("/settings/webhooks/{webhook_id}/delete")
async def delete_form(request: Request, webhook_id: str) -> Response:
    ctx = _signed_in(request)
    return _render("delete.html", {"hook": _owned(ctx, webhook_id)}, ctx=ctx)


@router.post("/settings/webhooks/{webhook_id}/delete")
async def delete(request: Request, webhook_id: str) -> Response:
    ctx, _ = await _posted(request)
    try:
        await _service(request).delete(ctx.account, webhook_id)
    except ApiError as exc:
        _raise_page(exc)
    return _redirect(_list_url("deleted"))


def _require_logs(request: Request) -> DeliveryLogs:
    logs = _logs(request)
    if logs is None:
        raise _PageError(503, "Logs unavailable", "Delivery logs are not available on this server.")
    return logs


@router.get("/settings/webhooks/{webhook_id}/logs")
async def logs_page(request: Request, webhook_id: str) -> Response:
    ctx = _signed_in(request)
    hook = _owned(ctx, webhook_id)
    logs = _require_logs(request)
    status = request.query_params.get("status") or None
    event = request.query_params.get("event") or None
    after = request.query_params.get("after") or None
    if status not in (None, *STATUSES):
        status = None
    if event not in (None, *EVENT_TYPES):
        event = None
    try:
        try:
            page = await logs.list_deliveries(ctx.account, webhook_id, status, event, LOGS_PAGE_SIZE, after)
        except InvalidRequest as exc:
            if exc.code != "invalid_cursor":
                raise
            # The cursor's message was purged (or the link was edited): start from the newest.
            after = None
            page = await logs.list_deliveries(ctx.account, webhook_id, status, event, LOGS_PAGE_SIZE, None)
    except ApiError as exc:
        _raise_page(exc)
    notice = request.query_params.get("notice", "")
    live = notice in ("test_sent", "redelivered") or any(m.status == "retrying" for m in page.items)
    return _render(
        "logs.html",
        {
            "hook": hook,
            "page": page,
            "status": status or "",
            "event": event or "",
            "after": after,
            "notice": NOTICES.get(notice),
            "live": live and after is None,
        },
        ctx=ctx,
    )


@router.get("/settings/webhooks/{webhook_id}/logs/{message_id}")
async def delivery_page(request: Request, webhook_id: str, message_id: str) -> Response:
    ctx = _signed_in(request)
    hook = _owned(ctx, webhook_id)
    logs = _require_logs(request)
    try:
        detail = await logs.get_delivery(ctx.account, webhook_id, message_id)
    except ApiError as exc:
        _raise_page(exc)
    notice = request.query_params.get("notice", "")
    return _render(
        "delivery.html",
        {
            "hook": hook,
            "detail": detail,
            "notice": NOTICES.get(notice),
            "live": notice == "redelivered" or detail.message.status == "retrying",
        },
        ctx=ctx,
    )


@router.post("/settings/webhooks/{webhook_id}/test")
async def send_test(request: Request, webhook_id: str) -> Response:
    ctx, form = await _posted(request)
    _owned(ctx, webhook_id)
    event = form.first("event")
    if event not in EVENT_TYPES:
        raise _PageError(422, "Unknown event", "Choose one of the six events to send a test of.")
    try:
        await _require_logs(request).send_test(ctx.account, webhook_id, event)
    except ApiError as exc:
        _raise_page(exc)
    return _redirect(f"/settings/webhooks/{webhook_id}/logs?notice=test_sent")


@router.post("/settings/webhooks/{webhook_id}/logs/{message_id}/redeliver")
async def redeliver(request: Request, webhook_id: str, message_id: str) -> Response:
    ctx, _ = await _posted(request)
    _owned(ctx, webhook_id)
    try:
        await _require_logs(request).redeliver(ctx.account, webhook_id, message_id)
    except ApiError as exc:
        _raise_page(exc)
    return _redirect(f"/settings/webhooks/{webhook_id}/logs/{message_id}?notice=redelivered")


#: The periods the logs page offers to recover, in hours.
RECOVER_HOURS = (1, 24, 72, 168)


@router.post("/settings/webhooks/{webhook_id}/recover")
async def recover(request: Request, webhook_id: str) -> Response:
    ctx, form = await _posted(request)
    _owned(ctx, webhook_id)
    hours = form.first("hours")
    if hours not in {str(h) for h in RECOVER_HOURS}:
        raise _PageError(422, "Unknown period", "Choose one of the periods offered.")
    since_ms = int((datetime.now(UTC).timestamp() - int(hours) * 3600) * 1000)
    try:
        done = await _require_logs(request).recover(
            ctx.account, webhook_id, since_ms, limit=request.app.state.recover_max
        )
    except ApiError as exc:
        _raise_page(exc)
    notice = "recovered_more" if done.has_more else "recovered" if done.count else "recovered_none"
    return _redirect(f"/settings/webhooks/{webhook_id}/logs?notice={notice}")


#: The periods the replay page offers, in hours, with their labels (the event topics keep 7 days).
REPLAY_PERIODS = ((1, "hour"), (24, "24 hours"), (72, "3 days"), (168, "7 days"))


def _replays(request: Request) -> ReplayService:
    service: ReplayService = request.app.state.replays
    return service


@router.get("/settings/webhooks/{webhook_id}/replay")
async def replay_page(request: Request, webhook_id: str) -> Response:
    ctx = _signed_in(request)
    hook = _owned(ctx, webhook_id)
    try:
        latest = await _replays(request).latest(ctx.account, webhook_id)
    except ApiError as exc:
        _raise_page(exc)
    return _render(
        "replay.html",
        {
            "hook": hook,
            "replay": present_replay(latest) if latest else None,
            "REPLAY_PERIODS": REPLAY_PERIODS,
            "notice": _notice(request),
        },
        ctx=ctx,
    )


@router.post("/settings/webhooks/{webhook_id}/replay")
async def replay(request: Request, webhook_id: str) -> Response:
    ctx, form = await _posted(request)
    _owned(ctx, webhook_id)
    hours = form.first("hours")
    if hours not in {str(h) for h, _label in REPLAY_PERIODS}:
        raise _PageError(422, "Unknown period", "Choose one of the periods offered.")
    events = form.all("events")
    if not events:
        raise _PageError(422, "No events", "Choose at least one event to replay.")
    since_ms = int((datetime.now(UTC).timestamp() - int(hours) * 3600) * 1000)
    try:
        await _replays(request).start(ctx.account, webhook_id, {"from": rfc3339(since_ms), "events": events})
    except ApiError as exc:
        _raise_page(exc)
    return _redirect(f"/settings/webhooks/{webhook_id}/replay?notice=replay_started")


# -- wiring --------------------------------------------------------------------------------------


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _PageError)
    session = _codec(request).decode(request.cookies.get(SESSION_COOKIE))
    ctx = _Context(request, session, _codec(request).csrf_token(session)) if session else None
    return _render("error.html", {"title": exc.title, "message": exc.message}, status=exc.status, ctx=ctx)


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    return _redirect("/signin")


def install_pages(app: FastAPI, settings: Settings) -> None:
    """Mount the web page on ``app`` (whose state holds the API's service and URL rules)."""
    app.state.sessions = SessionCodec.from_settings(settings)
    app.add_exception_handler(_PageError, _page_error)
    app.add_exception_handler(_SignInRequired, _sign_in_required)
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("api", "static")]), name="static")
