"""The address policy's own table of special-purpose space decides, on every Python.

The expectations below are a fixed table written from the IANA special-purpose
registries, not computed from ``ipaddress``: ``is_global`` answers 6to4, Teredo,
NAT64 and ORCHID differently between Python patch releases, and a grant must not.
"""

from __future__ import annotations

import ipaddress

import pytest

from entragate.grants import InvalidGrant, parse_cidr
from entragate.grants.special_purpose import (
    IPV4_SPECIAL,
    IPV6_GLOBAL_UNICAST,
    IPV6_SPECIAL,
    SpecialBlock,
    why_not_public,
)

# (address or network, a fragment of the refusal message)
REFUSED: list[tuple[str, str]] = [
    # IPv6: the ones Python's answer has changed for
    ("2002::1", "6to4"),
    ("2002:5102:458e::1", "6to4"),
    ("2002::/16", "6to4"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3f7f:fdd2", "Teredo"),
    ("64:ff9b::5102:458e", "NAT64"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2001:10::1", "ORCHID"),
    ("2001:20::1", "ORCHIDv2"),
    ("2001:2f:ffff::1", "ORCHIDv2"),
    ("2001:30::1", "DET"),
    ("2001:db8::1", "documentation"),
    ("2001:db8:ffff::/48", "documentation"),
    ("3fff::1", "documentation"),
    ("3fff:fff:ffff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001:3::1", "AMT"),
    ("2001:4:112::1", "AS112"),
    ("2620:4f:8000::1", "AS112"),
    ("2001:1::1", "Port Control Protocol"),
    ("2001:1::2", "TURN"),
    ("2001:1::3", "DNS-SD"),
    ("2001:1::4", "IETF protocol assignment"),
    ("2001:1ff:ffff::1", "IETF protocol assignment"),
    ("5f00::1", "SRv6"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy IPv6 prefix"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:81.2.69.142", "IPv4-mapped"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("4000::1", "outside IPv6 global unicast"),
    ("1000::1", "outside IPv6 global unicast"),
    ("2001::/16", "includes IETF protocol assignment space (2001::/23)"),
    ("2620:4f::/32", "includes AS112 direct delegation address space (2620:4f:8000::/48)"),
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "'this network'"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "shared address space"),
    ("100.127.255.255", "shared address space"),
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.31.255.255", "private"),
    ("192.0.0.1", "service continuity"),
    ("192.0.0.8", "dummy"),
    ("192.0.0.9", "Port Control Protocol"),
    ("192.0.0.10", "TURN"),
    ("192.0.0.170", "NAT64/DNS64 discovery"),
    ("192.0.0.171", "NAT64/DNS64 discovery"),
    ("192.0.0.200", "IETF protocol assignment"),
    ("192.0.2.1", "TEST-NET-1"),
    ("192.31.196.1", "AS112"),
    ("192.52.193.1", "AMT"),
    ("192.88.99.1", "6to4 relay"),
    ("192.88.99.2", "6a44"),
    ("192.168.0.1", "private"),
    ("192.175.48.6", "AS112"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.1", "TEST-NET-2"),
    ("203.0.113.1", "TEST-NET-3"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("192.0.0.0/16", "includes IETF protocol assignment space (192.0.0.0/24)"),
    ("198.0.0.0/11", "includes benchmarking address space (198.18.0.0/15)"),
]

ACCEPTED: list[str] = [
    "81.2.69.142",
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "192.0.3.0",
    "192.31.195.255",
    "192.52.194.0",
    "192.88.98.255",
    "192.167.255.255",
    "192.169.0.0",
    "192.175.49.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "81.2.69.0/24",
    "2a00:1450:4001:80b::200e",
    "2001:200::1",
    "2001:4860:4860::8888",
    "2001:dc8::1",
    "2003::1",
    "2600::1",
    "2620:4f:7fff::1",
    "2620:4f:8001::1",
    "3fff:1000::1",
    "3ffe:ffff::1",
    "2a00::/16",
]


@pytest.mark.parametrize(("text", "fragment"), REFUSED)
def test_special_purpose_space_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidGrant) as exc:
        parse_cidr(text)
    assert exc.value.reason == "forbidden_range"
    assert fragment in exc.value.message
    assert text in exc.value.message


@pytest.mark.parametrize("text", ACCEPTED)
def test_public_space_is_accepted(text: str) -> None:
    assert parse_cidr(text) == ipaddress.ip_network(text)


def test_the_named_blocks_of_the_issue_are_in_the_table() -> None:
    v6 = {str(b.network) for b in IPV6_SPECIAL}
    v4 = {str(b.network) for b in IPV4_SPECIAL}
    assert {"2002::/16", "2001::/32", "64:ff9b::/96", "64:ff9b:1::/48", "2001:20::/28"} <= v6
    assert {"2001:db8::/32", "3fff::/20", "2001:2::/48"} <= v6
    assert {"100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15"} <= v4


@pytest.mark.parametrize("block", IPV4_SPECIAL + IPV6_SPECIAL, ids=lambda b: str(b.network))
def test_every_block_is_refused_to_its_edges_and_not_beyond(block: SpecialBlock) -> None:
    """Each block's first and last address is refused naming that block (or a more
    specific one inside it); the addresses just outside are refused only by another
    block, never by an off-by-one of this one."""
    net = block.network
    for edge in (net.network_address, net.broadcast_address):
        why = why_not_public(ipaddress.ip_network(edge))
        assert why is not None and why.startswith("is ")
    for outside in (int(net.network_address) - 1, int(net.broadcast_address) + 1):
        if not 0 <= outside < 2**net.max_prefixlen:
            continue
        host = ipaddress.ip_network((outside, net.max_prefixlen))
        table = IPV4_SPECIAL if host.version == 4 else IPV6_SPECIAL
        containing = [b for b in table if host.subnet_of(b.network)]
        assert block not in containing
        unicast = host.version == 4 or host.subnet_of(IPV6_GLOBAL_UNICAST)
        if not containing and unicast:
            assert why_not_public(host) is None, host

