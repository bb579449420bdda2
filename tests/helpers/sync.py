"""Waiting for and reading what the agent wrote to the emulated tenant."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entragate.emulator import Emulator

LOCATION = "Entragate staff"
PLACEHOLDER = "192.0.2.255/32"


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def remote_ranges(emu: Emulator, tenant: str, name: str = LOCATION) -> set[str] | None:
    """The location's addresses, one /32 or /128 each: the agent may collapse neighbours."""
    for location in emu.locations(tenant):
        if location["displayName"] == name:
            return expand(r["cidrAddress"] for r in location["ipRanges"])
    return None


def expand(cidrs: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        assert network.num_addresses <= 4096, cidr
        if network.num_addresses == 1:
            found.add(network.with_prefixlen)
        else:
            found.update(f"{a}/{network.max_prefixlen}" for a in network)
    return found


def public_addresses(n: int, second: int = 2) -> list[str]:
    return [f"81.{second}.{i // 250}.{1 + i % 250}" for i in range(n)]
