"""The web page without a browser: sessions, CSRF, escaping, isolation and the form's field errors.

One API for the module (on its own topic prefix and log store); each test signs in with httpx,
which keeps cookies like a browser and follows no redirect unless told.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from markupsafe import escape

from api.sessions import PRESESSION_COOKIE, SESSION_COOKIE
from hookline.clients import create_topics
from hookline.settings import Secret, load_settings
from hookline.topics import CONFIG, all_topics
from tests.api.conftest import KEY_A, KEY_B, RunningApi, api_settings, start_api

pytestmark = pytest.mark.kafka

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def page_api(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    home = tmp_path_factory.mktemp("page-home")
    base = load_settings(
        {},
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"p{uuid.uuid4().hex[:10]}.",
        home=home,
    )
    create_topics(base, [s for s in all_topics(base) if s.name == CONFIG])
    api = start_api(api_settings(base, allow_networks=(), database_url=_sqlite(home / "logs.sqlite3")))
    yield api
    api.stop()


def _sqlite(path: Path) -> Secret:
    return Secret(f"sqlite:///{path}")


def browser(api: RunningApi) -> httpx.Client:
    return api.client(api_key=None)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(api: RunningApi, key: str = KEY_A) -> tuple[httpx.Client, str]:
    """A client signed in with ``key`` and the session's CSRF token."""
    c = browser(api)
    form = c.get("/signin")
    assert form.status_code == 200
    done = c.post("/signin", data={"csrf": csrf_of(form.text), "api_key": key})
    assert done.status_code == 303 and done.headers["location"] == "/settings/webhooks", done.text
    page = c.get("/settings/webhooks")
    assert page.status_code == 200
    return c, csrf_of(page.text)


def create_hook(c: httpx.Client, csrf: str, name: str = "Orders", **fields: str | list[str]) -> str:
    data: dict[str, str | list[str]] = {
        "csrf": csrf,
        "name": name,
        "url": "https://hooks.example.com/in",
        "secret": "a-secret-of-mine",
        "subscriptions": ["SALE_NEW"],
        "active": "on",
    }
    data.update(fields)
    done = c.post("/settings/webhooks/new", data=data)
    assert done.status_code == 303, done.text
    listing = c.get("/settings/webhooks").text
    ids: list[str] = re.findall(r'data-webhook-id="([^"]+)"', listing)
    return next(i for i in ids if f'/settings/webhooks/{i}/edit">{_escaped(name)}<' in listing)


def _escaped(text: str) -> str:
    return str(escape(text))


# -- sign in -------------------------------------------------------------------------------------


def test_pages_need_a_session_and_send_the_browser_to_sign_in(page_api: RunningApi) -> None:
    c = browser(page_api)
    for path in (
        "/",
        "/settings/webhooks",
        "/settings/webhooks/new",
        f"/settings/webhooks/{uuid.uuid4()}/logs",
    ):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/signin", path
    # The API key header does not open the page: the page has its own session.
    r = page_api.client().get("/settings/webhooks")
    assert r.status_code == 303


def test_sign_in_with_a_wrong_key_is_refused(page_api: RunningApi) -> None:
    c = browser(page_api)
    form = c.get("/signin")
    r = c.post("/signin", data={"csrf": csrf_of(form.text), "api_key": "not-a-key"})
    assert r.status_code == 401
    assert "This API key is not valid." in r.text
    assert SESSION_COOKIE not in c.cookies
    assert "not-a-key" not in r.text  # a typed key is never echoed
    assert c.get("/settings/webhooks").status_code == 303


def test_session_cookie_is_signed_httponly_strict_and_carries_no_key(page_api: RunningApi) -> None:
    c = browser(page_api)
    form = c.get("/signin")
    pre = form.headers["set-cookie"]
    assert pre.startswith(f"{PRESESSION_COOKIE}=") and "HttpOnly" in pre and "SameSite=strict" in pre
    r = c.post("/signin", data={"csrf": csrf_of(form.text), "api_key": KEY_A})
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = c.cookies[SESSION_COOKIE]
    assert KEY_A not in value and KEY_A not in cookie
    import base64

    payload = value.split(".")[0]
    assert KEY_A.encode() not in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))

    # A tampered cookie (another account's name under the same signature) is refused.
    forged_payload = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(b"acct-a", b"acct-b")
        )
        .decode()
        .rstrip("=")
    )
    forged = browser(page_api)
    forged.cookies.set(SESSION_COOKIE, f"{forged_payload}.{value.split('.')[1]}")
    assert forged.get("/settings/webhooks").status_code == 303


def test_sign_out_ends_the_session_even_for_a_copied_cookie(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    copied = c.cookies[SESSION_COOKIE]
    r = c.post("/signout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/signin?notice=signed_out"
    replay = browser(page_api)
    replay.cookies.set(SESSION_COOKIE, copied)
    assert replay.get("/settings/webhooks").status_code == 303


# -- CSRF ----------------------------------------------------------------------------------------


def test_posts_without_or_with_a_wrong_csrf_token_are_refused(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    hook_id = create_hook(c, csrf, name="CSRF target")
    _, other_csrf = sign_in(page_api)  # a second session of the same account: its token differs
    assert other_csrf != csrf
    fields = {
        "name": "Hijacked",
        "url": "https://evil.example.com/",
        "subscriptions": "SALE_NEW",
        "active": "on",
    }
    posts = [
        ("/settings/webhooks/new", fields),
        (f"/settings/webhooks/{hook_id}/edit", fields),
        (f"/settings/webhooks/{hook_id}/delete", {}),
        (f"/settings/webhooks/{hook_id}/test", {"event": "SALE_NEW"}),
        (f"/settings/webhooks/{hook_id}/logs/msg_x/redeliver", {}),
        (f"/settings/webhooks/{hook_id}/recover", {"hours": "24"}),
        ("/signout", {}),
    ]
    for path, data in posts:
        for token in (None, "", "wrong", other_csrf, csrf + "x"):
            body = dict(data) if token is None else {**data, "csrf": token}
            r = c.post(path, data=body)
            assert r.status_code == 403, (path, token, r.status_code)
            assert "Form refused" in r.text
    # Nothing changed: the webhook is still there, under its name, and the session still works.
    listing = c.get("/settings/webhooks")
    assert listing.status_code == 200 and "CSRF target" in listing.text and "Hijacked" not in listing.text
    # A JSON or multipart body (what a cross-site fetch could send) is not a form this page accepts.
    r = c.post(f"/settings/webhooks/{hook_id}/delete", json={"csrf": csrf})
    assert r.status_code == 415


def test_sign_in_form_is_protected_too(page_api: RunningApi) -> None:
    c = browser(page_api)
    c.get("/signin")
    assert c.post("/signin", data={"api_key": KEY_A}).status_code == 403
    assert c.post("/signin", data={"csrf": "forged", "api_key": KEY_A}).status_code == 403
    # No pre-session cookie at all (a cross-site form post with SameSite=Strict cookies withheld).
    fresh = browser(page_api)
    token = csrf_of(c.get("/signin").text)
    assert fresh.post("/signin", data={"csrf": token, "api_key": KEY_A}).status_code == 403
    assert SESSION_COOKIE not in fresh.cookies and SESSION_COOKIE not in c.cookies


# -- escaping, headers ---------------------------------------------------------------------------


def test_user_input_is_escaped_on_every_page(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    name = "<script>alert(1)</script>"
    hook_id = create_hook(
        c, csrf, name=name, url='https://hooks.example.com/in?q="><img/src=x/onerror=alert(2)>'
    )
    for path in (
        "/settings/webhooks",
        f"/settings/webhooks/{hook_id}/edit",
        f"/settings/webhooks/{hook_id}/delete",
        f"/settings/webhooks/{hook_id}/logs",
    ):
        r = c.get(path)
        assert r.status_code == 200, path
        assert name not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text, path
        assert "<img/src=x" not in r.text, path
    # Field errors echo typed values escaped too.
    r = c.post(
        "/settings/webhooks/new",
        data={"csrf": csrf, "name": "</textarea><script>x()</script>", "url": '"><script>y()</script>'},
    )
    assert r.status_code == 422
    assert "<script>x()" not in r.text and "<script>y()" not in r.text
    assert 'value="&#34;&gt;&lt;script&gt;y()&lt;/script&gt;"' in r.text


def test_pages_send_security_headers(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    for path in ("/signin", "/settings/webhooks", "/settings/webhooks/new"):
        r = (c if path != "/signin" else browser(page_api)).get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in r.text and " style=" not in r.text  # nothing inline for the CSP to block
    # The generated secret's page in particular.
    r = c.post(
        "/settings/webhooks/new",
        data={"csrf": csrf, "name": "Gen", "url": "https://gen.example.com/", "subscriptions": "SALE_NEW"},
    )
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'id="secret-value" class="secret">(whsec_[A-Za-z0-9+/=]+)<', r.text)
    assert secret, r.text
    # Shown once: no later page carries it.
    for path in ("/settings/webhooks",):
        assert secret.group(1) not in c.get(path).text
    assert c.get("/static/page.js").status_code == 200
    assert c.get("/static/page.css").status_code == 200


# -- the form ------------------------------------------------------------------------------------


def test_bad_input_shows_errors_next_to_fields_and_keeps_what_was_typed(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    typed = {
        "csrf": csrf,
        "name": "My CRM hook",
        "url": "ftp://crm.example.com/hooks",
        "secret": "short",
        "active": "on",
    }  # and no event checked
    r = c.post("/settings/webhooks/new", data=typed)
    assert r.status_code == 422
    html = r.text
    assert 'value="My CRM hook"' in html
    assert 'value="ftp://crm.example.com/hooks"' in html
    assert 'value="short"' in html
    # Each message sits in its field's block, and the input points at it.
    url_block = _field_block(html, "url")
    assert 'class="error" id="url-error">URL must use https.<' in url_block
    assert 'aria-invalid="true"' in url_block
    assert 'id="subscriptions-error">Choose at least one event.<' in _field_block(html, "subscriptions")
    assert 'id="secret-error">Secret must be 8 to 512 characters long.<' in _field_block(html, "secret")
    assert "name-error" not in html
    assert "Please correct the fields marked below." in html
    assert _field_block(html, "active").count("checked") == 1

    # Keeps checked events too, and reports a private address with the API's message.
    r = c.post(
        "/settings/webhooks/new",
        data={
            "csrf": csrf,
            "name": "",
            "url": "http://10.0.0.8/x",
            "subscriptions": ["SALE_NEW", "CONTACT_OPT_IN"],
        },
    )
    assert r.status_code == 422
    events = _field_block(r.text, "subscriptions")
    assert re.search(r'value="SALE_NEW" checked', events) and re.search(
        r'value="CONTACT_OPT_IN" checked', events
    )
    assert not re.search(r'value="CONTACT_CREATED" checked', events)
    assert "Name must not be empty or blank." in _field_block(r.text, "name")
    assert "URL must not point to a private or reserved address." in _field_block(r.text, "url")
    assert "checked" not in _field_block(r.text, "active")  # unchecked stays unchecked
    # Nothing was created.
    assert "My CRM hook" not in c.get("/settings/webhooks").text


def _field_block(html: str, field: str) -> str:
    """The HTML of one field's block (from its wrapper to the next field's)."""
    marker = {
        "name": 'for="name"',
        "url": 'for="url"',
        "secret": 'for="secret"',
        "subscriptions": "<legend>Events</legend>",
        "active": 'name="active"',
    }[field]
    start = html.index(marker)
    start = html.rindex('class="field', 0, start)
    end = html.find('class="field', start + 10)
    end = html.find('class="buttons"', start) if end == -1 else end
    return html[start:end]


def test_edit_shows_errors_and_keeps_input_then_saves(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    hook_id = create_hook(c, csrf, name="Editable")
    form = c.get(f"/settings/webhooks/{hook_id}/edit").text
    assert 'value="Editable"' in form and re.search(r'value="SALE_NEW" checked', form)
    r = c.post(
        f"/settings/webhooks/{hook_id}/edit",
        data={"csrf": csrf, "name": "Renamed", "url": "not a url", "subscriptions": "SALE_CANCELED"},
    )
    assert r.status_code == 422
    assert 'value="Renamed"' in r.text and 'value="not a url"' in r.text
    assert "URL must not contain whitespace" in _field_block(r.text, "url")
    assert re.search(r'value="SALE_CANCELED" checked', r.text) and not re.search(
        r'value="SALE_NEW" checked', r.text
    )
    r = c.post(
        f"/settings/webhooks/{hook_id}/edit",
        data={
            "csrf": csrf,
            "name": "Renamed",
            "url": "https://new.example.com/",
            "subscriptions": "SALE_CANCELED",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/settings/webhooks?notice=saved"
    hook = page_api.client().get(f"/api/webhooks/{hook_id}").json()
    assert hook["name"] == "Renamed" and hook["url"] == "https://new.example.com/" and hook["active"] is False
    assert [s["event"] for s in hook["subscriptions"]] == ["SALE_CANCELED"]


def test_delete_asks_for_confirmation_first(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    hook_id = create_hook(c, csrf, name="Doomed")
    confirm = c.get(f"/settings/webhooks/{hook_id}/delete")
    assert confirm.status_code == 200 and "Delete this webhook?" in confirm.text
    assert page_api.client().get(f"/api/webhooks/{hook_id}").status_code == 200  # the GET deleted nothing
    r = c.post(f"/settings/webhooks/{hook_id}/delete", data={"csrf": csrf_of(confirm.text)})
    assert r.status_code == 303 and r.headers["location"] == "/settings/webhooks?notice=deleted"
    assert page_api.client().get(f"/api/webhooks/{hook_id}").status_code == 404


# -- isolation -----------------------------------------------------------------------------------


def test_another_accounts_webhook_is_not_found(page_api: RunningApi) -> None:
    a, a_csrf = sign_in(page_api, KEY_A)
    hook_id = create_hook(a, a_csrf, name="A's private hook")
    b, b_csrf = sign_in(page_api, KEY_B)
    assert "A&#39;s private hook" not in b.get("/settings/webhooks").text
    never = str(uuid.uuid4())
    for wid in (hook_id, never):
        for path in (
            f"/settings/webhooks/{wid}/edit",
            f"/settings/webhooks/{wid}/delete",
            f"/settings/webhooks/{wid}/logs",
            f"/settings/webhooks/{wid}/logs/msg_whatever",
        ):
            r = b.get(path)
            assert r.status_code == 404, path
            assert "There is no such webhook" in r.text
        for path, data in (
            (
                f"/settings/webhooks/{wid}/edit",
                {"name": "B was here", "url": "https://b.example.com/", "subscriptions": "SALE_NEW"},
            ),
            (f"/settings/webhooks/{wid}/delete", {}),
            (f"/settings/webhooks/{wid}/test", {"event": "SALE_NEW"}),
            (f"/settings/webhooks/{wid}/logs/msg_whatever/redeliver", {}),
            (f"/settings/webhooks/{wid}/recover", {"hours": "24"}),
        ):
            assert b.post(path, data={**data, "csrf": b_csrf}).status_code == 404, path
    hook = page_api.client().get(f"/api/webhooks/{hook_id}").json()
    assert hook["name"] == "A's private hook"


def test_the_logs_page_offers_recover_and_says_what_it_did(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    hook_id = create_hook(c, csrf, name="Recover me")
    logs = c.get(f"/settings/webhooks/{hook_id}/logs")
    assert f'action="/settings/webhooks/{hook_id}/recover"' in logs.text
    assert "Recover failed messages" in logs.text
    done = c.post(f"/settings/webhooks/{hook_id}/recover", data={"hours": "24", "csrf": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == f"/settings/webhooks/{hook_id}/logs?notice=recovered_none"
    assert "No failed messages in that period" in c.get(done.headers["location"]).text
    wrong = c.post(f"/settings/webhooks/{hook_id}/recover", data={"hours": "5", "csrf": csrf})
    assert wrong.status_code == 422 and "Unknown period" in wrong.text


def test_rate_limit_is_set_shown_edited_and_refused_on_the_form(page_api: RunningApi) -> None:
    """Issue 12: the form sets the rate limit, the list and the edit form show it, empty removes it."""
    c, csrf = sign_in(page_api)
    message = "Rate limit must be a whole number of requests per second from 1 to 10000."
    for typed in ("abc", "0", "10001", "1.5", "-3"):
        r = c.post(
            "/settings/webhooks/new",
            data={"csrf": csrf, "name": "Paced", "url": "https://hooks.example.com/in",
                  "subscriptions": "SALE_NEW", "rate_limit": typed},
        )  # fmt: skip
        assert r.status_code == 422, typed
        block = r.text[r.text.index('for="rate_limit"') :]
        block = block[: block.index("</div>")]
        assert f'value="{_escaped(typed)}"' in block and 'aria-invalid="true"' in block
        assert f'id="rate_limit-error">{_escaped(message)}<' in block, block
    hook_id = create_hook(c, csrf, name="Paced", rate_limit="50")
    api = page_api.client()
    assert api.get(f"/api/webhooks/{hook_id}").json()["rateLimit"] == 50
    listing = c.get("/settings/webhooks").text
    assert 'data-rate-limit="50">at most 50 requests/s<' in listing
    form = c.get(f"/settings/webhooks/{hook_id}/edit").text
    assert re.search(r'name="rate_limit"[^>]*value="50"', form)
    base = {"csrf": csrf, "name": "Paced", "url": "https://hooks.example.com/in", "subscriptions": "SALE_NEW"}
    r = c.post(f"/settings/webhooks/{hook_id}/edit", data={**base, "rate_limit": " 120 "})
    assert r.status_code == 303 and api.get(f"/api/webhooks/{hook_id}").json()["rateLimit"] == 120
    r = c.post(f"/settings/webhooks/{hook_id}/edit", data={**base, "rate_limit": ""})
    assert r.status_code == 303 and api.get(f"/api/webhooks/{hook_id}").json()["rateLimit"] is None
    assert "data-rate-limit" not in c.get("/settings/webhooks").text
