"""One HTTP attempt to a receiver, with the outbound safety rules of docs/architecture.md §6.

- The host is resolved once (:func:`hookline.addresses.resolve`, which refuses non-public
  addresses outside the allow-list) and the request goes to an address that was checked: the URL
  carries the IP, the ``Host`` header and TLS SNI and certificate verification carry the name.
- A total deadline covers everything (lookup, connect, request, response, body); connecting has
  its own, shorter one. Redirects are never followed; cookies are never kept; no proxy from the
  environment is used.
- At most :data:`~hookline.records.EXCERPT_BYTES` of the body are read; past that the
  connection is closed, so a huge response is never buffered.

httpx is the client API; the transport is aiohttp's (``httpx-aiohttp``) over one shared
connection pool, because httpx's own pool costs 4-10x more CPU per request and degrades as it
grows (measured; see the README). Pool entries are keyed by (IP, port, TLS, SNI name), so a
connection verified for one name never carries a request for another.
"""

from __future__ import annotations

import asyncio
import base64
import http.cookiejar
import ssl
import time
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from hookline.addresses import AddressPolicy, BlockedAddress, DnsError, IPAddress, resolve
from hookline.logs import redact
from hookline.records import EXCERPT_BYTES, Exchange
from hookline.signing import redact_headers
from processors.deliver.exchange import bounded_headers, public_url

__all__ = ["HttpSender", "Sender", "classify_error"]

#: Parsed webhook URLs (and their per-address forms) kept at most; the cache starts over when full.
_URL_CACHE_SIZE = 10_000
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Encoded header names (a handful in practice: the signing scheme's), shared by every request.
_NAMES: dict[str, bytes] = {}
_MAX_NAMES = 256


class Sender(Protocol):
    """Sends one attempt and reports it; never raises for anything the receiver or network does."""

    async def send(
        self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *, attempt_id: str
    ) -> Exchange: ...


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify_error(exc: BaseException) -> str:
    """The ``errorClass`` of an attempt that got no response, from the exception and its causes.

    httpx-aiohttp maps aiohttp's errors loosely (it calls every one of them ``ConnectTimeout``: a
    refused connection, a reset after the request went out, a server that hung up without an
    answer), so the aiohttp and OS errors underneath decide. ``connect`` is a connection that could
    not be made; one that was made and then broke (reset, closed without an answer) is ``protocol``.
    """
    chain = _chain(exc)

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if has(BlockedAddress):
        return "blocked_address"
    if has(DnsError, aiohttp.ClientConnectorDNSError):
        return "dns"
    if has(ssl.SSLError, ssl.CertificateError, aiohttp.ClientSSLError):
        return "tls"
    if has(TimeoutError, aiohttp.ServerTimeoutError):
        return "timeout"
    if has(
        aiohttp.ClientConnectorError, ConnectionRefusedError, httpx.ConnectError, httpx.UnsupportedProtocol
    ):
        return "connect"
    # Connected, then broken: a reset, a hang-up without an answer, a malformed response.
    if has(aiohttp.ClientError, ConnectionError):
        return "protocol"
    if has(httpx.TimeoutException):
        return "timeout"
    return "protocol"


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class HttpSender:
    """Send attempts with httpx over one shared aiohttp pool. Use as an async context manager."""

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        connect_timeout: float,
        attempt_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float = 30.0,
    ) -> None:
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._attempt_timeout = attempt_timeout
        self._ssl = ssl_context or httpx.create_ssl_context(trust_env=True)
        self._keepalive = keepalive
        self._client: httpx.AsyncClient | None = None
        # httpx.URL is immutable: parse each webhook URL (and its form per checked address) once.
        self._targets: dict[str, httpx.URL] = {}
        self._addressed: dict[tuple[str, IPAddress], httpx.URL] = {}
        self._ext_cache: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> HttpSender:
        connector = aiohttp.TCPConnector(
            limit=0,  # the worker's own global and per-webhook limits bound concurrency
            limit_per_host=0,
            use_dns_cache=False,  # URLs carry checked IPs; nothing for aiohttp to resolve
            ssl=self._ssl,
            keepalive_timeout=self._keepalive,
        )
        session = aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(client=session, verify=self._ssl),
            # No read/write timeouts: the attempt's own deadline (send) covers them, and a read
            # timeout would make aiohttp re-arm a timer on every chunk of every response.
            timeout=httpx.Timeout(
                None,
                connect=self._connect_timeout,
                pool=self._connect_timeout,
            ),
            follow_redirects=False,
            trust_env=False,
            # A jar that refuses every cookie (httpx would keep them and send them back otherwise).
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
            # Identity, so that the stored excerpt is readable and nothing is decompressed.
            headers={"Accept": "*/*", "Accept-Encoding": "identity"},
        )
        # httpx's default "Connection: keep-alive" says nothing on HTTP/1.1, where connections persist
        # unless one side sends "close" (aiohttp sends none either); each header costs every request
        # in flight ~0.3 KiB in httpx's and aiohttp's copies of it.
        del self._client.headers["Connection"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *, attempt_id: str
    ) -> Exchange:
        """POST ``body`` to ``url`` with ``headers``; report what happened.

        One coroutine for the whole attempt (lookup, addresses, request, excerpt), and what the
        result shows of the request is taken before it is sent: every attempt in flight keeps its
        frames and their locals alive while it waits, so they hold only what is still needed.
        """
        assert self._client is not None, "use HttpSender as an async context manager"
        client = self._client
        attempted_at_ms = int(time.time() * 1000)
        started = time.perf_counter()
        shown = redact_headers(headers)
        status: int | None = None
        response_headers: dict[str, str] | None = None
        excerpt = b""
        truncated = False
        error: BaseException | None = None
        try:
            async with asyncio.timeout(self._attempt_timeout):
                target = self._target(url)
                host = target.host
                addresses = await resolve(host, target.port or _DEFAULT_PORTS[target.scheme], self._policy)
                extensions = self._extensions(target.scheme, host)
                request = client.build_request(
                    "POST",
                    self._at(url, target, addresses[0]),
                    content=body,
                    headers=_with_host(headers, target),
                    extensions=extensions,
                )
                del headers  # the request has them now; ``shown`` is what the result keeps
                # Try the checked addresses in resolver order (at most 4), moving on only when a
                # connection could not be made at all (nothing was sent), as happy eyeballs would.
                tried = 1
                while True:
                    try:
                        response = await client.send(request, stream=True, follow_redirects=False)
                        break
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        if tried >= min(4, len(addresses)) or classify_error(exc) != "connect":
                            raise
                    request = client.build_request(
                        "POST",
                        self._at(url, target, addresses[tried]),
                        content=body,
                        headers=request.headers,  # the same headers, Host (the name) included
                        extensions=extensions,
                    )
                    tried += 1
                try:
                    status = response.status_code
                    # Raw pairs keep the receiver's spelling of each name, as a log viewer should show it.
                    response_headers = bounded_headers(
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
                    )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_raw():
                        room = EXCERPT_BYTES - size
                        if len(chunk) > room:
                            chunks.append(chunk[:room])
                            truncated = True
                            break  # closing the response now drops the connection; the rest is never read
                        chunks.append(chunk)
                        size += len(chunk)
                    excerpt = b"".join(chunks)
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            error = exc
        except (httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
            # ValueError covers BlockedAddress/DnsError (AddressError) and malformed URLs.
            error = exc
        latency = time.perf_counter() - started
        error_class = message = None
        if error is not None:
            message = _describe(error, self._attempt_timeout)
            if status is None:
                error_class = classify_error(error)
        return Exchange(
            attempt_id=attempt_id,
            attempted_at_ms=attempted_at_ms,
            url=public_url(url),
            request_headers=shown,
            latency=latency,
            status=status,
            response_headers=response_headers or {},
            excerpt=excerpt,
            truncated=truncated,
            error_class=error_class,
            error_message=message,
        )

    def _target(self, url: str) -> httpx.URL:
        target = self._targets.get(url)
        if target is None:
            target = httpx.URL(url)
            if len(self._targets) >= _URL_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        if target.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"scheme {target.scheme!r} is not http or https")
        return target

    def _extensions(self, scheme: str, host: str) -> dict[str, Any]:
        """The request extensions (SNI name for https, timeouts), one shared dict per name.

        httpx copies a request's extensions; passing its ``timeout`` entry here saves it making
        that dict anew for every request.
        """
        key = host if scheme == "https" else ""
        extensions = self._ext_cache.get(key)
        if extensions is None:
            assert self._client is not None
            extensions = {"timeout": self._client.timeout.as_dict()}
            if key:
                extensions["sni_hostname"] = host
            if len(self._ext_cache) >= _URL_CACHE_SIZE:
                self._ext_cache.clear()
            self._ext_cache[key] = extensions
        return extensions

    def _at(self, url: str, target: httpx.URL, ip: IPAddress) -> httpx.URL:
        addressed = self._addressed.get((url, ip))
        if addressed is None:
            addressed = _at(target, ip)
            if len(self._addressed) >= _URL_CACHE_SIZE:
                self._addressed.clear()
            self._addressed[(url, ip)] = addressed
        return addressed


def _with_host(headers: Sequence[tuple[str, str]], target: httpx.URL) -> list[tuple[bytes, bytes]]:
    """The attempt's headers plus ``Host`` (the name, not the address) and any URL credentials.

    As bytes, with one shared copy of each header name: httpx keeps bytes given to it as they are,
    so the names cost nothing per request (it would encode every name and value of every request).
    """
    out = [(_name(k), v.encode("ascii")) for k, v in headers]
    out.append((b"Host", target.netloc))
    if target.username or target.password:
        token = base64.b64encode(f"{target.username}:{target.password}".encode()).decode("ascii")
        out.append((b"Authorization", f"Basic {token}".encode("ascii")))
    return out


def _name(name: str) -> bytes:
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = name.encode("ascii")
        if len(_NAMES) < _MAX_NAMES:
            _NAMES[name] = encoded
    return encoded


def _at(url: httpx.URL, ip: IPAddress) -> httpx.URL:
    """``url`` with the checked address as its host and no credentials (sent as a header)."""
    return url.copy_with(host=str(ip), username=None, password=None)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no complete response within {timeout:g} s"
    chain = _chain(exc)
    # The innermost error says most (``Connect call failed``, ``certificate verify failed``).
    inner = chain[-1]
    text = str(inner) or type(inner).__name__
    if inner is not exc and str(exc) and str(exc) not in text:
        text = f"{exc}: {text}"
    return redact(f"{type(inner).__name__}: {text}")[:1000]
