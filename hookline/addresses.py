"""Outbound address safety: which addresses a delivery may connect to (docs/architecture.md §6, §9).

A delivery resolves its host once with :func:`resolve`, which returns only addresses that pass
the :class:`AddressPolicy`, and then connects to one of those, never to the name again (a
second lookup could answer differently). ``ipaddress``'s ``is_global`` is not used: it calls
``64:ff9b::7f00:1``, ``::127.0.0.1``, ``2002:7f00:1::`` and multicast global.

Errors::

    AddressError (ValueError)    the target address cannot be used
    ├── BlockedAddress           it is not public and no allowed network contains it
    └── DnsError                 the host name does not resolve
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Sequence
from typing import TypeAlias

__all__ = [
    "AddressError",
    "AddressPolicy",
    "BlockedAddress",
    "DnsError",
    "IPAddress",
    "is_public_address",
    "looks_internal_hostname",
    "parse_host_literal",
    "resolve",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressError(ValueError):
    """The target address of a delivery cannot be used."""

    #: The ``errorClass`` of the attempt's result record (see :mod:`hookline.policy`).
    error_class = "connect"


class BlockedAddress(AddressError):
    """The address is not public and no allowed network contains it."""

    error_class = "blocked_address"

    def __init__(self, reason: str, address: IPAddress | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.address = address


class DnsError(AddressError):
    """The host name did not resolve to any address."""

    error_class = "dns"

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"cannot resolve {host!r}: {detail}")
        self.host = host
        self.detail = detail


def _v4(table: Sequence[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(net), why) for net, why in table)


def _v6(table: Sequence[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(net), why) for net, why in table)


# First match wins, so the specific entries come before the ranges that contain them.
_V4_REFUSED = _v4(
    [
        ("0.0.0.0/32", "unspecified"),
        ("255.255.255.255/32", "broadcast"),
        ("169.254.169.254/32", "cloud metadata"),
        ("169.254.170.2/32", "cloud metadata"),  # AWS ECS task metadata
        ("100.100.100.200/32", "cloud metadata"),  # Alibaba Cloud
        # Azure's WireServer answers VMs on this public-looking address with platform secrets.
        ("168.63.129.16/32", "cloud metadata"),
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ]
)

_V6_REFUSED = _v6(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS, IPv6
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment"),
        ("3fff::/20", "documentation"),
        ("100::/64", "discard-only"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
)

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
# Every global unicast allocation comes from 2000::/3; the rest is special or unassigned.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def _refusal_v4(ip: ipaddress.IPv4Address) -> str | None:
    for net, why in _V4_REFUSED:
        if ip in net:
            return why
    return None


def _refusal(ip: IPAddress) -> str | None:
    """Return why ``ip`` is not public, or None when it is."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _refusal_v4(ip)
    if ip.scope_id:
        return "scoped (has a zone index)"
    # The embeddings that reach an IPv4 host are judged by the IPv4 address they carry.
    embedded: tuple[str, ipaddress.IPv4Address] | None = None
    if ip in _MAPPED:
        embedded = ("IPv4-mapped", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    elif ip in _NAT64:
        embedded = ("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    elif ip in _SIXTOFOUR:
        embedded = ("6to4", ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    if embedded is not None:
        form, v4 = embedded
        why = _refusal_v4(v4)
        return None if why is None else f"{form} {why} {v4}"
    for net, why in _V6_REFUSED:
        if ip in net:
            return why
    if ip in _COMPATIBLE:
        return "IPv4-compatible (deprecated)"
    if ip not in _GLOBAL_UNICAST:
        return "not global unicast"
    return None


def is_public_address(ip: IPAddress) -> bool:
    """Return whether a delivery may connect to ``ip`` without an allow-list entry."""
    return _refusal(ip) is None


class AddressPolicy:
    """Refuse non-public addresses, except inside explicitly allowed networks.

    ``allow_networks`` are CIDRs (``127.0.0.0/8`` for local development and tests); an
    IPv4-mapped IPv6 address is matched by the IPv4 address it maps.
    """

    __slots__ = ("_allowed",)

    def __init__(self, allow_networks: Sequence[str] = ()) -> None:
        if isinstance(allow_networks, str):
            raise TypeError("allow_networks must be a sequence of CIDRs, not one string")
        self._allowed = tuple(ipaddress.ip_network(net, strict=False) for net in allow_networks)

    def __repr__(self) -> str:
        return f"AddressPolicy({[str(n) for n in self._allowed]!r})"

    def _is_allowed(self, ip: IPAddress) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self._allowed)

    def check(self, ip: IPAddress) -> None:
        """Raise :class:`BlockedAddress` unless ``ip`` is public or in an allowed network."""
        if self._allowed and self._is_allowed(ip):
            return
        why = _refusal(ip)
        if why is not None:
            raise BlockedAddress(f"{ip} is not a public address ({why})", ip)


# Full stops that IDNA mapping turns into "." (ideographic, fullwidth, halfwidth ideographic).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_V4_PART = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _v4_number(part: str) -> int | None:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if all(c in "01234567" for c in part) else None
    # More than ten decimal digits is more than 32 bits (and int() refuses very long strings).
    return int(part) if len(part) <= 10 else None


def parse_host_literal(host: str) -> IPAddress | None:
    """Return the address an IP-literal ``host`` really denotes, or None for a host name.

    IPv4 follows ``inet_aton``, which ``getaddrinfo`` and so every HTTP client use:
    ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1`` and ``127.0.1`` all denote
    127.0.0.1. IPv6 may be bracketed and carry a ``%25``-encoded zone.
    """
    text = unicodedata.normalize("NFKC", host).translate(_DOTS).strip().lower()
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed:
        text = text[1:-1]
    elif "[" in text or "]" in text:
        return None
    if bracketed or ":" in text:
        try:
            return ipaddress.IPv6Address(text.replace("%25", "%", 1))
        except ValueError:
            return None
    if text.endswith("."):
        text = text[:-1]  # a fully qualified literal, as URL parsers read it
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    numbers = [_v4_number(p) for p in parts]
    value = 0
    for n in numbers[:-1]:
        if n is None or n > 0xFF:
            return None
        value = value << 8 | n
    last, free_bytes = numbers[-1], 5 - len(parts)
    if last is None or last >= 1 << (8 * free_bytes):
        return None
    return ipaddress.IPv4Address(value << (8 * free_bytes) | last)


async def resolve(host: str, port: int, policy: AddressPolicy) -> list[IPAddress]:
    """Resolve ``host`` once and return the addresses ``policy`` allows, in resolver order.

    Raise :class:`DnsError` when nothing resolves and :class:`BlockedAddress` when every
    address is refused. Connect to one of the returned addresses, not to ``host``.
    """
    candidates: list[IPAddress] = []
    literal = parse_host_literal(host)
    if literal is not None:
        candidates.append(literal)
    else:
        if not host:
            raise DnsError(host, "empty host")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise DnsError(host, str(exc) or type(exc).__name__) from exc
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                ip = ipaddress.ip_address(sockaddr[0])
                if ip not in candidates:
                    candidates.append(ip)
        if not candidates:
            raise DnsError(host, "no IPv4 or IPv6 address")
    allowed: list[IPAddress] = []
    refused: list[BlockedAddress] = []
    for ip in candidates:
        try:
            policy.check(ip)
        except BlockedAddress as exc:
            refused.append(exc)
        else:
            allowed.append(ip)
    if not allowed:
        first = refused[0]
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        raise BlockedAddress(f"{host} resolves to {first.reason}{more}", first.address)
    return allowed


# Names that never resolve publicly, or that resolvers expand with internal search domains.
_INTERNAL_SUFFIXES = (
    "localhost",
    "localdomain",
    "local",  # mDNS; also covers Kubernetes' cluster.local
    "internal",  # reserved for private use (ICANN, 2024); metadata.google.internal
    "intranet",
    "lan",
    "home",
    "corp",
    "private",
    "home.arpa",
    "svc",  # Kubernetes service names such as kafka.default.svc
)


def looks_internal_hostname(host: str) -> bool:
    """Return whether ``host`` names something inside the sender's own network.

    Used to refuse such URLs early, when a webhook is saved; the address check at delivery
    time is what keeps them out. Single-label names count (search domains complete them),
    and an IP literal counts when its address is not public.
    """
    literal = parse_host_literal(host)
    if literal is not None:
        return not is_public_address(literal)
    name = unicodedata.normalize("NFKC", host).translate(_DOTS).strip().lower().rstrip(".")
    if "." not in name:
        return True
    return any(name == suffix or name.endswith("." + suffix) for suffix in _INTERNAL_SUFFIXES)
