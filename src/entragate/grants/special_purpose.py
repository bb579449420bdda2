"""Address space no sign-in Entra evaluates comes from: one table, ours.

The address policy (docs/design.md#grant-model) refuses every block listed here,
whatever its registry flags say. The "globally reachable" service addresses of the
registries (PCP and TURN anycast, AS112, AMT relays, ORCHID and DET identifiers) are
not the source address of a person signing in, so a grant for one would open a
location to nobody we know. Python's ``ipaddress.is_global`` is not consulted: its
answer for 6to4, Teredo, NAT64 or ORCHID changes between patch releases, and a grant
must be accepted or refused the same way on every host.

Sources, by name (keep this table in step with them when they change):

- the IANA IPv4 Special-Purpose Address Registry and the IANA IPv6 Special-Purpose
  Address Registry (RFC 6890, updated by RFC 8190), including their 2024–2025
  additions: 3fff::/20 (RFC 9637), 5f00::/16 (RFC 9602), 2001:1::3/128 (RFC 9665),
  100:0:0:1::/64 (RFC 9780);
- the IANA IPv4 Multicast Address Space Registry and the IANA IPv6 Multicast Address
  Space Registry (multicast is never a source address);
- the IANA Internet Protocol Version 6 Address Space registry: only 2000::/3 is
  allocated as global unicast; fec0::/10 (site-local) is deprecated by RFC 3879.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    """One refused block: ``what`` completes "X is …" in a refusal message."""

    network: IPNetwork
    what: str
    rfc: str


def _blocks(rows: tuple[tuple[str, str, str], ...]) -> tuple[SpecialBlock, ...]:
    # Widest block first at each address, so a partial overlap names the enclosing space.
    blocks = (SpecialBlock(ipaddress.ip_network(cidr), what, rfc) for cidr, what, rfc in rows)
    return tuple(sorted(blocks, key=lambda b: (int(b.network.network_address), b.network.prefixlen)))


_IETF = "IETF protocol assignment space"

IPV4_SPECIAL: tuple[SpecialBlock, ...] = _blocks((
    ("0.0.0.0/8", "'this network' address space", "RFC 791"),
    ("0.0.0.0/32", "the unspecified address ('this host on this network')", "RFC 1122"),
    ("10.0.0.0/8", "private address space", "RFC 1918"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598"),
    ("127.0.0.0/8", "loopback address space", "RFC 1122"),
    ("169.254.0.0/16", "link-local address space", "RFC 3927"),
    ("172.16.0.0/12", "private address space", "RFC 1918"),
    ("192.0.0.0/24", _IETF, "RFC 6890"),
    ("192.0.0.0/29", f"the IPv4 service continuity prefix (DS-Lite, {_IETF})", "RFC 7335"),
    ("192.0.0.8/32", f"the IPv4 dummy address ({_IETF})", "RFC 7600"),
    ("192.0.0.9/32", f"the Port Control Protocol anycast address ({_IETF})", "RFC 7723"),
    ("192.0.0.10/32", f"the TURN anycast address ({_IETF})", "RFC 8155"),
    ("192.0.0.170/32", f"a NAT64/DNS64 discovery address ({_IETF})", "RFC 8880"),
    ("192.0.0.171/32", f"a NAT64/DNS64 discovery address ({_IETF})", "RFC 8880"),
    ("192.0.2.0/24", "documentation address space (TEST-NET-1)", "RFC 5737"),
    ("192.31.196.0/24", "AS112 DNS sink address space", "RFC 7535"),
    ("192.52.193.0/24", "AMT relay anycast address space", "RFC 7450"),
    ("192.88.99.0/24", "reserved (deprecated 6to4 relay anycast) address space", "RFC 7526"),
    ("192.88.99.2/32", "the 6a44 relay anycast address", "RFC 6751"),
    ("192.168.0.0/16", "private address space", "RFC 1918"),
    ("192.175.48.0/24", "AS112 direct delegation address space", "RFC 7534"),
    ("198.18.0.0/15", "benchmarking address space", "RFC 2544"),
    ("198.51.100.0/24", "documentation address space (TEST-NET-2)", "RFC 5737"),
    ("203.0.113.0/24", "documentation address space (TEST-NET-3)", "RFC 5737"),
    ("224.0.0.0/4", "multicast address space", "RFC 5771"),
    ("240.0.0.0/4", "reserved address space", "RFC 1112"),
    ("255.255.255.255/32", "the limited broadcast address (reserved)", "RFC 919"),
))

IPV6_SPECIAL: tuple[SpecialBlock, ...] = _blocks((
    ("::/128", "the unspecified address", "RFC 4291"),
    ("::1/128", "the loopback address", "RFC 4291"),
    ("::ffff:0:0/96", "IPv4-mapped address space (use the plain IPv4 form)", "RFC 4291"),
    ("64:ff9b::/96", "NAT64 well-known prefix space (the gateway's IPv4 address is what Entra sees)",
     "RFC 6052"),
    ("64:ff9b:1::/48", "local-use NAT64 address space", "RFC 8215"),
    ("100::/64", "discard-only address space", "RFC 6666"),
    ("100:0:0:1::/64", "the dummy IPv6 prefix", "RFC 9780"),
    ("2001::/23", _IETF, "RFC 2928"),
    ("2001::/32", "Teredo tunnel address space", "RFC 4380"),
    ("2001:1::1/128", f"the Port Control Protocol anycast address ({_IETF})", "RFC 7723"),
    ("2001:1::2/128", f"the TURN anycast address ({_IETF})", "RFC 8155"),
    ("2001:1::3/128", f"the DNS-SD service registration anycast address ({_IETF})", "RFC 9665"),
    ("2001:2::/48", "benchmarking address space", "RFC 5180"),
    ("2001:3::/32", "AMT relay address space", "RFC 7450"),
    ("2001:4:112::/48", "AS112 DNS sink address space", "RFC 7535"),
    ("2001:10::/28", "deprecated ORCHID identifier space", "RFC 4843"),
    ("2001:20::/28", "ORCHIDv2 identifier space (not routable)", "RFC 7343"),
    ("2001:30::/28", "drone remote ID (DET) identifier space", "RFC 9374"),
    ("2001:db8::/32", "documentation address space", "RFC 3849"),
    ("2002::/16", "6to4 address space (the relay's IPv4 address is what Entra sees)", "RFC 3056"),
    ("2620:4f:8000::/48", "AS112 direct delegation address space", "RFC 7534"),
    ("3fff::/20", "documentation address space", "RFC 9637"),
    ("5f00::/16", "segment routing (SRv6) SID space", "RFC 9602"),
    ("fc00::/7", "unique local (private) address space", "RFC 4193"),
    ("fe80::/10", "link-local address space", "RFC 4291"),
    ("fec0::/10", "deprecated site-local address space", "RFC 3879"),
    ("ff00::/8", "multicast address space", "RFC 4291"),
))

IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def containing_block(net: IPNetwork) -> SpecialBlock | None:
    """The most specific special-purpose block ``net`` lies entirely in, if any."""
    table = IPV4_SPECIAL if net.version == 4 else IPV6_SPECIAL
    inside = [b for b in table if net.subnet_of(b.network)]  # type: ignore[arg-type]
    return max(inside, key=lambda b: b.network.prefixlen, default=None)


def overlapping_block(net: IPNetwork) -> SpecialBlock | None:
    """The first (lowest, widest) special-purpose block that shares an address with ``net``."""
    table = IPV4_SPECIAL if net.version == 4 else IPV6_SPECIAL
    return next((b for b in table if net.overlaps(b.network)), None)


def why_not_public(net: IPNetwork) -> str | None:
    """Why ``net`` is not entirely public address space ("is …" / "includes …"), or None."""
    block = containing_block(net)
    if block is not None:
        return f"is {block.what}"
    block = overlapping_block(net)
    if block is not None:
        return f"includes {block.what} ({block.network})"
    if net.version == 6 and not net.subnet_of(IPV6_GLOBAL_UNICAST):
        return f"is outside IPv6 global unicast space ({IPV6_GLOBAL_UNICAST})"
    return None
