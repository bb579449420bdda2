"""Validation of grant input: addresses, TTLs, users, ACL names."""

from __future__ import annotations

import copy
import ipaddress
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entragate.grants import (
    InvalidGrant,
    check_ttl,
    format_ttl,
    parse_cidr,
    parse_ttl,
    validate_acl,
    validate_user,
)
from entragate.grants.validation import REASONS

# ---------------------------------------------------------------- addresses accepted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("81.2.69.142", "81.2.69.142/32"),
        ("  81.2.69.142\n", "81.2.69.142/32"),
        ("81.2.69.142/32", "81.2.69.142/32"),
        ("81.2.69.0/24", "81.2.69.0/24"),
        ("81.0.0.0/9", "81.0.0.0/9"),
        ("2a00:1450:4001:80b::200e", "2a00:1450:4001:80b::200e/128"),
        ("2A00:1450:4001:080B:0:0:0:200E", "2a00:1450:4001:80b::200e/128"),
        ("2a00:1450::/32", "2a00:1450::/32"),
        ("2a00::/16", "2a00::/16"),
    ],
)
def test_accepts_public_addresses(text: str, expected: str) -> None:
    assert str(parse_cidr(text)) == expected


def test_host_becomes_single_address_network() -> None:
    assert parse_cidr("81.2.69.142").prefixlen == 32
    assert parse_cidr("2a00:1450:4001:80b::200e").prefixlen == 128


# ---------------------------------------------------------------- addresses refused


@pytest.mark.parametrize(
    ("text", "reason", "fragment"),
    [
        ("", "invalid_ip", "empty"),
        ("   ", "invalid_ip", "empty"),
        ("alice.example.com", "invalid_ip", "not an IP address"),
        ("81.2.69", "invalid_ip", "not an IP address"),
        ("081.2.69.142", "invalid_ip", "not an IP address"),
        ("81.2.69.142/33", "invalid_ip", "at most /32"),
        ("81.2.69.0/255.255.255.0", "invalid_ip", "prefix length"),
        ("81.2.69.142/", "invalid_ip", "prefix length"),
        ("81.2.69.142 /32", "invalid_ip", "not an IP address"),
        ("fe80::1%eth0", "zone_id", "zone id"),
        ("2a00:1450:4001:80b::200e%2", "zone_id", "zone id"),
        ("81.2.69.142/24", "host_bits_set", "81.2.69.0/24"),
        ("2a00:1450::1/64", "host_bits_set", "2a00:1450::/64"),
        ("81.0.0.0/7", "host_bits_set", "80.0.0.0/7"),
        ("80.0.0.0/7", "prefix_too_short", "/9"),
        ("81.0.0.0/8", "prefix_too_short", "/9"),
        ("2a00::/15", "prefix_too_short", "/16"),
        ("10.0.0.5", "forbidden_range", "private"),
        ("172.16.4.1", "forbidden_range", "private"),
        ("192.168.1.10", "forbidden_range", "private"),
        ("127.0.0.1", "forbidden_range", "loopback"),
        ("169.254.1.1", "forbidden_range", "link-local"),
        ("100.64.0.1", "forbidden_range", "shared address space"),
        ("198.18.0.1", "forbidden_range", "benchmarking"),
        ("198.19.255.0/24", "forbidden_range", "benchmarking"),
        ("192.0.2.10", "forbidden_range", "documentation"),
        ("198.51.100.7", "forbidden_range", "documentation"),
        ("203.0.113.7", "forbidden_range", "documentation"),
        ("224.0.0.251", "forbidden_range", "multicast"),
        ("240.0.0.1", "forbidden_range", "reserved"),
        ("255.255.255.255", "forbidden_range", "reserved"),
        ("0.0.0.0", "forbidden_range", "unspecified"),
        ("192.0.0.8", "forbidden_range", "IETF"),
        ("::", "forbidden_range", "unspecified"),
        ("::1", "forbidden_range", "loopback"),
        ("fe80::1", "forbidden_range", "link-local"),
        ("fd00::1", "forbidden_range", "unique local"),
        ("ff02::1", "forbidden_range", "multicast"),
        ("2001:db8::1", "forbidden_range", "documentation"),
        ("3fff::1", "forbidden_range", "documentation"),
        ("::ffff:81.2.69.142", "forbidden_range", "IPv4-mapped"),
        ("4000::1", "forbidden_range", "global unicast"),
        # a network that is partly public still includes forbidden space
        ("172.0.0.0/11", "forbidden_range", "includes private address space (172.16.0.0/12)"),
        ("192.0.0.0/16", "forbidden_range", "includes"),
        ("100.64.0.0/10", "forbidden_range", "shared address space"),
    ],
)
def test_refuses_with_reason_and_message(text: str, reason: str, fragment: str) -> None:
    with pytest.raises(InvalidGrant) as exc:
        parse_cidr(text)
    err = exc.value
    assert err.reason == reason
    assert fragment in err.message
    assert "\n" not in err.message
    if text.strip():
        assert text.strip() in err.message  # the message names the input


def test_private_message_reads_well() -> None:
    with pytest.raises(InvalidGrant) as exc:
        parse_cidr("10.0.0.5")
    assert exc.value.message == (
        "10.0.0.5 is private address space; Entra only sees public source addresses"
    )


def test_minimum_prefix_is_configurable() -> None:
    assert str(parse_cidr("81.2.0.0/16", min_prefix_v4=16)) == "81.2.0.0/16"
    with pytest.raises(InvalidGrant) as exc:
        parse_cidr("81.2.0.0/16", min_prefix_v4=24)
    assert exc.value.reason == "prefix_too_short"
    with pytest.raises(InvalidGrant):
        parse_cidr("2a00:1450::/32", min_prefix_v6=48)


def test_non_string_is_invalid_ip() -> None:
    with pytest.raises(InvalidGrant) as exc:
        parse_cidr(1234)
    assert exc.value.reason == "invalid_ip"


@settings(deadline=None, max_examples=300)
@given(st.ip_addresses())
def test_any_address_is_accepted_iff_global(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    try:
        net = parse_cidr(str(addr))
    except InvalidGrant as exc:
        assert exc.reason == "forbidden_range"
        assert str(addr) in exc.message
    else:
        assert net.network_address == addr
        assert net.prefixlen == addr.max_prefixlen
        assert addr.is_global and net.is_global


@settings(deadline=None, max_examples=300)
@given(st.ip_addresses(v=4), st.integers(min_value=9, max_value=32))
def test_accepted_networks_are_entirely_global(addr: ipaddress.IPv4Address, prefix: int) -> None:
    net = ipaddress.IPv4Network((int(addr), prefix), strict=False)
    try:
        got = parse_cidr(str(net))
    except InvalidGrant as exc:
        assert exc.reason == "forbidden_range"
        return
    assert got == net
    assert net.network_address.is_global and net.broadcast_address.is_global
    for special in (
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
    ):
        assert not net.overlaps(ipaddress.IPv4Network(special))


# ---------------------------------------------------------------- TTL


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600),
        (3600.0, 3600),
        ("3600", 3600),
        (" 90s ", 90),
        ("15m", 900),
        ("8h", 28800),
        ("8H", 28800),
        ("7d", 604800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
    ],
)
def test_parse_ttl(value: str | int | float, seconds: int) -> None:
    assert parse_ttl(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        "0",
        "-5",
        "",
        "h",
        "8x",
        "8 h",
        "1.5h",
        "1h1h",
        1.5,
        float("nan"),
        float("inf"),
        True,
        None,
    ],
)
def test_parse_ttl_refuses(value: object) -> None:
    with pytest.raises(InvalidGrant) as exc:
        parse_ttl(value)
    assert exc.value.reason == "invalid_ttl"


def test_check_ttl() -> None:
    assert check_ttl(3600, 86400) == 3600
    assert check_ttl(86400, 86400) == 86400
    assert check_ttl(10**9, None) == 10**9
    with pytest.raises(InvalidGrant) as exc:
        check_ttl(86401, 86400)
    assert exc.value.reason == "ttl_too_long"
    assert "max_ttl 1d" in exc.value.message
    for bad in (0, -3):
        with pytest.raises(InvalidGrant) as exc:
            check_ttl(bad, 86400)
        assert exc.value.reason == "invalid_ttl"


@given(st.integers(min_value=1, max_value=10**8))
def test_format_ttl_round_trips(seconds: int) -> None:
    assert parse_ttl(format_ttl(seconds)) == seconds


# ---------------------------------------------------------------- users and ACLs


def test_users() -> None:
    assert validate_user("alice") == "alice"
    assert validate_user("  alice@example.com ") == "alice@example.com"
    assert validate_user("Zoë O'Brien") == "Zoë O'Brien"
    assert validate_user("x" * 256) == "x" * 256
    for bad in ("", "   ", "x" * 257, "al\nice", "al\x00ice", "a\u200bb", 42, None):
        with pytest.raises(InvalidGrant) as exc:
            validate_user(bad)
        assert exc.value.reason == "invalid_user"


def test_acls() -> None:
    assert validate_acl("staff") == "staff"
    assert validate_acl("vpn-users.eu_1") == "vpn-users.eu_1"
    for bad in ("", "a/b", "x" * 129, "st\taff", None):
        with pytest.raises(InvalidGrant) as exc:
            validate_acl(bad)
        assert exc.value.reason == "invalid_acl"


# ---------------------------------------------------------------- the exception


def test_invalid_grant_is_immutable_and_well_behaved() -> None:
    err = InvalidGrant("invalid_ip", "nope is not an IP address or CIDR", "nope")
    assert str(err) == err.message
    assert err.to_dict() == {"code": "invalid_ip", "message": "nope is not an IP address or CIDR"}
    with pytest.raises(AttributeError):
        err.reason = "capacity"
    assert pickle.loads(pickle.dumps(err)) == err
    assert copy.copy(err) == err
    assert err.reason in REASONS
    with pytest.raises(ValueError):
        InvalidGrant("no_such_reason", "x")
    try:  # raising, chaining and tracebacks work
        try:
            raise KeyError("x")
        except KeyError as inner:
            raise err from inner
    except InvalidGrant as caught:
        assert isinstance(caught.__cause__, KeyError)
        assert caught.__traceback__ is not None


def test_non_ascii_digits_are_refused_not_crashed() -> None:
    for text in ("81.2.69.142/²", "81.2.69.142/٣٢", "８１.2.69.142"):
        with pytest.raises(InvalidGrant) as info:
            parse_cidr(text)
        assert info.value.reason == "invalid_ip"
