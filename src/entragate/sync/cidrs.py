"""CIDR arithmetic on integers, for the hot paths of the planner (docs/design.md#placement).

``ipaddress`` objects cost microseconds each to build; a full reconcile handles
100,000 ranges and every slot collapses a shard of up to 2,000. These functions
work on ``(version, first, last, prefix)`` tuples and agree exactly with
:func:`entragate.sync.ranges.collapse` (the tests compare them).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from entragate.grants.validation import MIN_PREFIX_V4, MIN_PREFIX_V6

BITS = {4: 32, 6: 128}
MIN_PREFIX = {4: MIN_PREFIX_V4, 6: MIN_PREFIX_V6}


def net_bounds(text: str) -> tuple[int, int, int, int]:
    """``(version, first, last, prefix)`` of a canonical CIDR; ``ValueError`` otherwise.

    IPv4 goes through ``inet_pton`` (strict dotted quads), far faster than ``ipaddress``."""
    if ":" not in text:
        address, _, length = text.partition("/")
        try:
            first = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        except OSError:
            raise ValueError(f"not an IPv4 CIDR: {text!r}") from None
        if not length.isdigit() or int(length) > 32:
            raise ValueError(f"not an IPv4 CIDR: {text!r}")
        prefix = int(length)
        if first & ((1 << (32 - prefix)) - 1):
            raise ValueError(f"not a canonical IPv4 CIDR: {text!r}")
        return 4, first, first | ((1 << (32 - prefix)) - 1), prefix
    net = ipaddress.IPv6Network(text)  # strict: host bits set is refused
    return 6, int(net.network_address), int(net.broadcast_address), net.prefixlen


def format_net(version: int, first: int, prefix: int) -> str:
    if version == 4:
        return f"{first >> 24}.{first >> 16 & 255}.{first >> 8 & 255}.{first & 255}/{prefix}"
    return f"{ipaddress.IPv6Address(first)}/{prefix}"


def collapse_cidrs(texts: Iterable[str]) -> list[str]:
    """The exact minimal cover of canonical CIDRs, IPv4 first, in address order, never
    with a mask shorter than Graph accepts (/9 for IPv4, /16 for IPv6)."""
    spans = sorted(net_bounds(t)[:3] for t in texts)
    out: list[str] = []
    k = 0
    while k < len(spans):
        version, first, last = spans[k]
        k += 1
        while k < len(spans) and spans[k][0] == version and spans[k][1] <= last + 1:
            last = max(last, spans[k][2])
            k += 1
        out.extend(_blocks(version, first, last))
    return out


def _blocks(version: int, first: int, last: int) -> list[str]:
    """[first, last] as the fewest aligned CIDR blocks, none wider than the minimum prefix."""
    bits = BITS[version]
    widest = bits - MIN_PREFIX[version]
    out = []
    while first <= last:
        size = (first & -first).bit_length() - 1 if first else bits
        size = min(size, widest, (last - first + 1).bit_length() - 1)
        out.append(format_net(version, first, bits - size))
        first += 1 << size
    return out


def subtract_cidrs(texts: Iterable[str], removed: Iterable[str]) -> list[str]:
    """The addresses of ``texts`` outside every range of ``removed`` (docs/design.md#outages:
    narrowing without the store). A range no cut touches comes back as it was; one that
    is cut comes back as the fewest blocks of what is left."""
    cuts = sorted(net_bounds(t)[:3] for t in removed)
    out: list[str] = []
    for text in texts:
        version, first, last, _prefix = net_bounds(text)
        start, touched = first, False
        for cut_version, cut_first, cut_last in cuts:
            if cut_version != version or cut_last < start or cut_first > last:
                continue
            touched = True
            if cut_first > start:
                out.extend(_blocks(version, start, cut_first - 1))
            start = max(start, cut_last + 1)
            if start > last:
                break
        if not touched:
            out.append(text)
        elif start <= last:
            out.extend(_blocks(version, start, last))
    return out
