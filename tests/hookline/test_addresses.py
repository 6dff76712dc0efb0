"""hookline.addresses: which addresses a delivery may reach. Pure, except resolve() of localhost."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookline.addresses import (
    AddressError,
    AddressPolicy,
    BlockedAddress,
    DnsError,
    IPAddress,
    is_public_address,
    looks_internal_hostname,
    parse_host_literal,
    resolve,
)

ip = ipaddress.ip_address

# (address, public?). Public rows are only classified here; no traffic is ever sent.
ADDRESSES: list[tuple[str, bool]] = [
    # IPv4 public
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("93.184.216.34", True),
    ("100.63.255.255", True),  # just below CGNAT
    ("100.128.0.0", True),  # just above CGNAT
    ("172.15.255.255", True),  # just below 172.16/12
    ("172.32.0.0", True),  # just above 172.16/12
    ("192.169.0.1", True),
    ("223.255.255.255", True),  # just below multicast
    ("168.63.129.15", True),  # next to Azure's WireServer
    # IPv4 refused
    ("0.0.0.0", False),
    ("0.1.2.3", False),
    ("10.0.0.1", False),
    ("10.255.255.255", False),
    ("100.64.0.1", False),  # CGNAT: is_global already False, is_private False
    ("100.100.100.200", False),  # Alibaba metadata
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("169.254.0.1", False),
    ("169.254.169.254", False),
    ("169.254.170.2", False),
    ("168.63.129.16", False),
    ("172.16.0.1", False),
    ("172.31.255.255", False),
    ("192.0.0.8", False),
    ("192.0.0.9", False),  # is_global says True (PCP anycast); never a receiver
    ("192.0.2.1", False),
    ("192.88.99.1", False),
    ("192.168.1.1", False),
    ("198.18.0.1", False),
    ("198.19.255.255", False),
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("224.0.0.1", False),  # is_global says True
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    # IPv6 public
    ("2606:4700:4700::1111", True),
    ("2001:4860:4860::8888", True),
    ("2a00:1450:4001:80b::200e", True),
    ("::ffff:8.8.8.8", True),  # is_global says False on some Pythons
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("2001:200::1", True),  # just past the IETF protocol block
    # IPv6 refused
    ("::", False),
    ("::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:100.64.0.1", False),
    ("::ffff:0.0.0.0", False),
    ("::127.0.0.1", False),  # IPv4-compatible; is_global says True
    ("::8.8.8.8", False),  # IPv4-compatible is deprecated whatever it embeds
    ("::10.0.0.1", False),
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1; is_global says True
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ("64:ff9b:1::808:808", False),  # local-use NAT64; is_global says True
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1; is_global says True
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("2002:c0a8:101::", False),  # 6to4 of 192.168.1.1
    ("2001::1", False),  # Teredo
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo with a public server
    ("2001:2::1", False),  # benchmarking
    ("2001:10::1", False),  # ORCHID
    ("2001:db8::1", False),
    ("3fff::1", False),  # documentation since 2024
    ("100::1", False),  # discard-only
    ("fc00::1", False),
    ("fd12:3456:789a::1", False),
    ("fd00:ec2::254", False),  # AWS metadata
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    # A zone index names a local interface: refused for the zone alone, even around a public address.
    ("2606:4700:4700::1111%eth0", False),
    ("2a00:1450:4001:80b::200e%2", False),
    ("::1%lo", False),
    ("fec0::1", False),  # site-local
    ("ff02::1", False),
    ("ff0e::1", False),  # global-scope multicast; is_global says True
    ("5f00::1", False),  # SRv6 SIDs: outside 2000::/3
    ("4000::1", False),  # unassigned
    ("::2:1", False),  # unassigned, outside every allocation
]


def test_table_is_big_and_unique() -> None:
    assert len(ADDRESSES) >= 40
    assert len({a for a, _ in ADDRESSES}) == len(ADDRESSES)


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ip(address)) is public


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_default_policy_matches_table(address: str, public: bool) -> None:
    policy = AddressPolicy([])
    if public:
        policy.check(ip(address))
    else:
        with pytest.raises(BlockedAddress) as info:
            policy.check(ip(address))
        assert info.value.address == ip(address)
        assert str(ip(address)) in info.value.reason


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::7f00:1", "::127.0.0.1", "2002:7f00:1::", "ff0e::1", "224.0.0.1", "64:ff9b:1::808:808"],
)
def test_is_global_is_wrong_where_we_are_right(address: str) -> None:
    # docs/architecture.md §9: the stdlib's verdict cannot be used for these; the table above decides.
    assert ip(address).is_global
    assert not is_public_address(ip(address))


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "CGNAT"),
        ("::ffff:10.0.0.1", "IPv4-mapped private 10.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 loopback 127.0.0.1"),
        ("2002:7f00:1::", "6to4 loopback 127.0.0.1"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2001::1", "Teredo"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("2606:4700:4700::1111%eth0", "scoped"),
        ("2a00:1450:4001:80b::200e%2", "zone index"),
    ],
)
def test_refusals_say_why(address: str, words: str) -> None:
    with pytest.raises(BlockedAddress, match=words):
        AddressPolicy().check(ip(address))


# --- allow-list ---------------------------------------------------------------------------------------


def test_allow_list_opens_only_its_networks() -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    policy.check(ip("127.0.0.1"))
    policy.check(ip("127.1.2.3"))
    policy.check(ip("::ffff:127.0.0.1"))  # the same host, IPv4-mapped
    policy.check(ip("8.8.8.8"))  # public stays allowed
    for refused in ("10.0.0.1", "::1", "169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::"):
        with pytest.raises(BlockedAddress):
            policy.check(ip(refused))


def test_allow_list_ipv6_and_host_bits() -> None:
    policy = AddressPolicy(["::1/128", "fd00::1/64", "10.1.2.3/16"])  # host bits are tolerated
    policy.check(ip("::1"))
    policy.check(ip("fd00::abcd"))
    policy.check(ip("10.1.200.1"))
    with pytest.raises(BlockedAddress):
        policy.check(ip("10.2.0.1"))
    with pytest.raises(BlockedAddress):
        policy.check(ip("fd01::1"))


def test_policy_arguments() -> None:
    with pytest.raises(ValueError):
        AddressPolicy(["not-a-cidr"])
    with pytest.raises(TypeError):
        AddressPolicy("127.0.0.0/8")
    assert "127.0.0.0/8" in repr(AddressPolicy(["127.0.0.1/8"]))


def test_error_hierarchy() -> None:
    assert issubclass(BlockedAddress, AddressError)
    assert issubclass(DnsError, AddressError)
    assert issubclass(AddressError, ValueError)
    assert BlockedAddress("x").error_class == "blocked_address"
    assert DnsError("h", "d").error_class == "dns"


# --- literals -----------------------------------------------------------------------------------------

LITERALS: list[tuple[str, str | None]] = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.0000.0.01", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0.0x1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),  # WHATWG reads an empty hex part as 0
    ("167772161", "10.0.0.1"),
    ("10.1", "10.0.0.1"),
    ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("4294967295", "255.255.255.255"),
    ("8.8.8.8", "8.8.8.8"),
    ("134744072", "8.8.8.8"),
    ("\uff11\uff12\uff17.0.0.1", "127.0.0.1"),  # fullwidth digits, as IDNA mapping sees them
    ("127\u30020\u30020\u30021", "127.0.0.1"),  # ideographic full stops
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("[64:FF9B::7F00:1]", "64:ff9b::7f00:1"),
    ("[fe80::1%25eth0]", "fe80::1%eth0"),
    ("::1", "::1"),
    # not literals
    ("example.com", None),
    ("localhost", None),
    ("4294967296", None),  # too big
    ("256.0.0.1", None),
    ("1.2.3.4.5", None),
    ("1.2.3.256", None),
    ("1.2.65536", None),
    ("08.0.0.1", None),  # not octal
    ("0x7g.0.0.1", None),
    ("1..2", None),
    ("", None),
    ("[::1", None),
    ("[127.0.0.1]", None),
    ("[not-v6]", None),
    ("1e3", None),
    ("9" * 5000, None),  # no int() digit-limit error
]


@pytest.mark.parametrize(("host", "expected"), LITERALS)
def test_parse_host_literal(host: str, expected: str | None) -> None:
    parsed = parse_host_literal(host)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == ip(expected)


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.1", "0x7f.1", "167772161", "10.1"]
)
def test_literals_agree_with_inet_aton(host: str) -> None:
    # The libc resolver reads these the same way; that is why they matter.
    assert parse_host_literal(host) == ipaddress.IPv4Address(socket.inet_aton(host))


@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(["{:d}", "0x{:x}", "0{:o}"]))
def test_single_number_literals(value: int, form: str) -> None:
    assert parse_host_literal(form.format(value)) == ipaddress.IPv4Address(value)


@given(st.ip_addresses())
def test_canonical_forms_round_trip(address: IPAddress) -> None:
    text = f"[{address}]" if address.version == 6 else str(address)
    assert parse_host_literal(text) == address


# --- resolve ------------------------------------------------------------------------------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_resolve_localhost_blocked_without_allow_list() -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        _run(resolve("localhost", 443, AddressPolicy()))


def test_resolve_localhost_allowed_by_allow_list() -> None:
    got = _run(resolve("localhost", 443, AddressPolicy(["127.0.0.0/8", "::1/128"])))
    assert got
    assert all(a.is_loopback for a in got)
    assert len(got) == len(set(got))


def test_resolve_returns_only_allowed_addresses() -> None:
    got = _run(resolve("localhost", 80, AddressPolicy(["127.0.0.0/8"])))
    assert got and all(isinstance(a, ipaddress.IPv4Address) and a.is_loopback for a in got)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "[::1]", "[::ffff:127.0.0.1]"])
def test_resolve_literals_without_dns(host: str) -> None:
    with pytest.raises(BlockedAddress):
        _run(resolve(host, 80, AddressPolicy()))
    got = _run(resolve(host, 80, AddressPolicy(["127.0.0.0/8", "::1/128"])))
    assert len(got) == 1 and got[0] == parse_host_literal(host)


def test_resolve_public_literal_is_returned_as_is() -> None:
    assert _run(resolve("8.8.8.8", 443, AddressPolicy())) == [ip("8.8.8.8")]


@pytest.mark.parametrize("host", ["[2606:4700:4700::1111%25eth0]", "[2606:4700:4700::1111%eth0]"])
def test_resolve_refuses_a_public_literal_with_a_zone(host: str) -> None:
    # Without its zone the same address is public; with one, a request would leave by a chosen interface.
    assert _run(resolve("[2606:4700:4700::1111]", 443, AddressPolicy())) == [ip("2606:4700:4700::1111")]
    with pytest.raises(BlockedAddress, match="zone index"):
        _run(resolve(host, 443, AddressPolicy()))


def test_resolve_failure_is_dns_error() -> None:
    # .invalid never resolves (RFC 6761); the local resolver answers without the network.
    with pytest.raises(DnsError) as info:
        _run(resolve("nothing-here.invalid", 443, AddressPolicy()))
    assert info.value.host == "nothing-here.invalid"
    with pytest.raises(DnsError):
        _run(resolve("", 443, AddressPolicy()))


def test_resolve_mixed_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A resolver answer mixing public and internal addresses keeps only the public ones.
    answer = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 443, 0, 0)),
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:4700::6810:84e5", 443, 0, 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),  # duplicate
    ]

    async def fake_getaddrinfo(self: Any, host: str, port: int, **kwargs: Any) -> list[Any]:
        assert host == "mixed.example"
        return answer

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    got = _run(resolve("mixed.example", 443, AddressPolicy()))
    assert got == [ip("93.184.216.34"), ip("2606:4700::6810:84e5")]

    answer[:] = answer[:1] + answer[2:3]
    with pytest.raises(BlockedAddress, match="and 1 more"):
        _run(resolve("mixed.example", 443, AddressPolicy()))

    answer[:] = []
    with pytest.raises(DnsError):
        _run(resolve("mixed.example", 443, AddressPolicy()))


# --- host names ---------------------------------------------------------------------------------------

HOSTNAMES: list[tuple[str, bool]] = [
    ("localhost", True),
    ("LOCALHOST.", True),
    ("app.localhost", True),
    ("metadata.google.internal", True),
    ("anything.internal", True),
    ("printer.local", True),
    ("kafka.default.svc.cluster.local", True),
    ("kafka.default.svc", True),
    ("box.localdomain", True),
    ("nas.home.arpa", True),
    ("router.lan", True),
    ("intranet", True),
    ("metadata", True),  # single label: the search domains complete it
    ("", True),
    ("127.1", True),
    ("2130706433", True),
    ("[::1]", True),
    ("[fd00:ec2::254]", True),
    ("example.com", False),
    ("hooks.example.com", False),
    ("localhost.example.com", False),
    ("internal.example.com", False),
    ("mylocal.dev", False),
    ("8.8.8.8", False),
    ("[2606:4700:4700::1111]", False),
]


@pytest.mark.parametrize(("host", "internal"), HOSTNAMES)
def test_looks_internal_hostname(host: str, internal: bool) -> None:
    assert looks_internal_hostname(host) is internal
