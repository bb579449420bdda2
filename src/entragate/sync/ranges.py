"""Desired ranges of an ACL and their sticky placement over shard locations.

Pure functions, no I/O. Everything works on exact address sets: nothing here
ever places an address that is not in ``static ∪ granted``.

Placement (docs/design.md#placement): the ACL's named locations are ``NAME``, ``NAME (2)``, … A
desired range keeps living in the location that already holds its addresses;
only addresses that no location holds are "new", and all new addresses go to one
location with room (preferably one that is being written anyway), so one new
grant changes one location. Collapsing may merge a new grant with a range that
lives elsewhere; the plan then keeps the old part where it is and places only the
new part, so the merge never forces a second location to be rewritten.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from entragate.grants.validation import MIN_PREFIX_V4, MIN_PREFIX_V6, InvalidGrant

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PLACEHOLDER = "192.0.2.255/32"


def net_key(net: IPNetwork) -> tuple[int, int, int]:
    """Deterministic order: IPv4 before IPv6, then address, then prefix length."""
    return (net.version, int(net.network_address), net.prefixlen)


def _as_net(value: str | IPNetwork) -> IPNetwork:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    return ipaddress.ip_network(str(value).strip(), strict=True)


def collapse(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    """Exact minimal cover per family (``ipaddress.collapse_addresses``), sorted."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for n in nets:
        if isinstance(n, ipaddress.IPv4Network):
            v4.append(n)
        else:
            v6.append(n)
    out: list[IPNetwork] = []
    # A merge may never produce a range Graph refuses (IPv4 masks must exceed /8):
    # such a network is split back into exact halves of the smallest allowed size.
    for merged in ipaddress.collapse_addresses(v4):
        out.extend(merged.subnets(new_prefix=MIN_PREFIX_V4) if merged.prefixlen < MIN_PREFIX_V4 else [merged])
    for merged6 in ipaddress.collapse_addresses(v6):
        out.extend(merged6.subnets(new_prefix=MIN_PREFIX_V6) if merged6.prefixlen < MIN_PREFIX_V6 else [merged6])
    return sorted(out, key=net_key)


def desired_ranges(
    static: Iterable[str | IPNetwork], granted: Iterable[str | IPNetwork]
) -> list[IPNetwork]:
    """``static ∪ granted``, deduplicated and collapsed, IPv4 first, sorted.

    Collapsing only merges exact sibling halves and contained networks, so the
    result covers exactly the same addresses as the input. Strings must be
    canonical networks (host bits clear); a bad entry raises ``ValueError``.
    """
    return collapse([_as_net(x) for x in (*static, *granted)])


def location_name(base: str, index: int) -> str:
    """Display name of shard ``index`` (0-based): ``NAME``, ``NAME (2)``, ``NAME (3)`` …"""
    if index < 0:
        raise ValueError(f"location index must be >= 0, got {index}")
    return base if index == 0 else f"{base} ({index + 1})"


def location_suffix(index: int) -> str:
    return "" if index == 0 else f" ({index + 1})"


def is_placeholder_only(ranges: Iterable[str], placeholder: str = DEFAULT_PLACEHOLDER) -> bool:
    """True when a location holds nothing but the placeholder (status shows it empty)."""
    items = {_normalise(r) for r in ranges}
    return items == {_normalise(placeholder)}


def _normalise(text: str) -> str:
    try:
        return str(_as_net(text))
    except ValueError:
        return str(text).strip()


def capacity(max_ranges: int, max_locations: int) -> int:
    return max(0, max_ranges) * max(0, max_locations)


def make_capacity_check(
    static: Iterable[str | IPNetwork], *, max_ranges: int, max_locations: int, acl: str = ""
) -> Callable[[Sequence[str]], None]:
    """A ``capacity_check`` for ``GrantStore.add``: refuses (``InvalidGrant("capacity")``)
    when the ACL's desired ranges would no longer fit in its locations.

    O(1) far from the limit: the store passes a lazy list whose ``at_most`` bounds its
    length, and the list is read only when that bound does not already fit."""
    static_nets = [_as_net(s) for s in static]
    limit = capacity(max_ranges, max_locations)

    def check(cidrs: Sequence[str]) -> None:
        at_most = getattr(cidrs, "at_most", None)
        if (len(cidrs) if at_most is None else at_most) + len(static_nets) <= limit:
            return  # collapsing only ever lowers the count: no need to compute it
        count = len(desired_ranges(static_nets, cidrs))
        if count > limit:
            where = f"acl {acl}" if acl else "this acl"
            raise InvalidGrant(
                "capacity",
                f"{where} would need {count} ranges but its locations hold at most {limit} "
                f"({max_locations} location(s) x {max_ranges} ranges); raise max_locations "
                "or end other grants",
            )

    return check


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class LocationPlan:
    """What to write to one location. ``ranges`` is the complete list for the PATCH."""

    index: int
    name_suffix: str
    ranges: list[str]
    added: list[str]
    removed: list[str]
    changed: bool
    exists: bool = True  # False: create it (index >= len(current))
    retired: bool = False  # index >= max_locations: drained to the placeholder
    placeholder_only: bool = False  # holds nothing real (status shows it empty)

    def name(self, base: str) -> str:
        return base + self.name_suffix


@dataclass(frozen=True)
class Plan:
    locations: list[LocationPlan]
    overflow: list[str]  # desired addresses that fit nowhere: refuse their grants (Code.ENTRA007)
    desired: list[str]

    @property
    def changed(self) -> bool:
        return any(lp.changed for lp in self.locations)

    @property
    def changes(self) -> list[LocationPlan]:
        return [lp for lp in self.locations if lp.changed]


class RangeSet:
    """Networks searchable by address: which parts of a network they cover, in O(log n).

    Collapsed on construction, so the networks are disjoint and sorted; networks that
    overlap a query then form one contiguous run found by bisection. (A linear scan
    made placement quadratic: over a second for 1,000 scattered grants.)
    """

    def __init__(self, nets: Iterable[str | IPNetwork]) -> None:
        self.nets = collapse(_as_net(n) for n in nets)
        self._starts = [(n.version, int(n.network_address)) for n in self.nets]

    def within(self, target: IPNetwork) -> list[IPNetwork]:
        """The parts of ``target`` these networks cover (sorted, disjoint)."""
        start, end = int(target.network_address), int(target.broadcast_address)
        # the run may begin with a network that starts before target and contains it
        k = max(0, bisect.bisect_right(self._starts, (target.version, start)) - 1)
        out: list[IPNetwork] = []
        while k < len(self.nets):
            n = self.nets[k]
            version, n_start = self._starts[k]
            if version > target.version or (version == target.version and n_start > end):
                break
            if version == target.version and n.overlaps(target):
                # two CIDR networks that overlap are nested
                out.append(n if n.prefixlen >= target.prefixlen else target)
            k += 1
        return out

    def covers(self, cidr: str | IPNetwork) -> bool:
        """Whether every address of ``cidr`` is in these networks."""
        target = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else cidr
        return self.within(target) == [target]


def _subtract(pieces: Sequence[IPNetwork], nets: Sequence[IPNetwork]) -> list[IPNetwork]:
    """Addresses of ``pieces`` not covered by ``nets``, as networks."""
    current = list(pieces)
    for n in nets:
        nxt: list[IPNetwork] = []
        for p in current:
            if p.version != n.version or not p.overlaps(n):
                nxt.append(p)
            elif p.subnet_of(n):  # type: ignore[arg-type]
                continue
            else:  # n lies strictly inside p
                nxt.extend(p.address_exclude(n))  # type: ignore[arg-type]
        current = nxt
    return collapse(current)


def plan_locations(
    desired: Iterable[str | IPNetwork],
    current: Sequence[Iterable[str]],
    *,
    max_ranges: int,
    max_locations: int,
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> Plan:
    """Place ``desired`` over the ACL's locations, sticking to where things are now.

    ``current[i]`` is what location ``i`` (``NAME``, ``NAME (2)``, …) holds now, or
    held at the last write. Locations beyond ``len(current)`` do not exist yet and
    appear in the plan only when they receive ranges (location 0 always appears).
    Locations at ``index >= max_locations`` are drained to the placeholder
    (``retired``). Addresses that fit nowhere are listed in ``Plan.overflow``.
    """
    if max_ranges < 1:
        raise ValueError(f"max_ranges must be >= 1, got {max_ranges}")
    if max_locations < 1:
        raise ValueError(f"max_locations must be >= 1, got {max_locations}")
    placeholder_s = str(_as_net(placeholder))
    want = collapse({_as_net(d) for d in desired})
    ph_net = _as_net(placeholder_s)
    placeholder_wanted = any(
        w.version == ph_net.version and ph_net.subnet_of(w)  # type: ignore[arg-type]
        for w in want
    )

    # What each existing location holds: normalised strings and parsed networks.
    held_str: list[set[str]] = []
    held_raw: list[dict[str, str]] = []  # normalised -> as held (for "removed")
    held_net: list[RangeSet] = []
    for entries in current:
        strs: set[str] = set()
        raw: dict[str, str] = {}
        nets: list[IPNetwork] = []
        for entry in entries:
            norm = _normalise(entry)
            strs.add(norm)
            raw.setdefault(norm, str(entry))
            if norm == placeholder_s and not placeholder_wanted:
                continue
            try:
                nets.append(_as_net(norm))
            except ValueError:
                continue  # junk (hand-edited, host bits set …): removed, never sticky
        held_str.append(strs)
        held_raw.append(raw)
        held_net.append(RangeSet(nets))

    usable = max_locations
    n_slots = max(len(current), 1, usable)
    assigned: list[list[IPNetwork]] = [[] for _ in range(n_slots)]

    # 1. Sticky: the part of each desired range a location already holds stays there.
    new_pieces: list[IPNetwork] = []
    for d in want:
        rest: list[IPNetwork] = [d]
        for i in range(min(len(current), usable)):
            if not rest:
                break
            covered = [p for r in rest for p in held_net[i].within(r)]
            if covered:
                assigned[i].extend(covered)
                rest = _subtract(rest, covered)
        new_pieces.extend(rest)

    # A location may not keep more than max_ranges: evict the excess as new.
    for i in range(n_slots):
        kept = collapse(assigned[i])
        if len(kept) > max_ranges:
            new_pieces.extend(kept[max_ranges:])
            kept = kept[:max_ranges]
        assigned[i] = kept
    new_pieces = collapse(new_pieces)

    def final_strings(i: int) -> set[str]:
        return {str(n) for n in assigned[i]}

    def is_changed(i: int) -> bool:
        final = final_strings(i) or {placeholder_s}
        if i >= len(current):
            return bool(assigned[i])
        return final != held_str[i]

    # 2. New addresses: one location with room, preferably one already being written.
    counts = [len(a) for a in assigned]
    changed_now = [i < usable and is_changed(i) for i in range(n_slots)]
    overflow: list[IPNetwork] = []
    order = [i for i in range(usable) if changed_now[i]] + [
        i for i in range(usable) if not changed_now[i]
    ]
    # All new addresses into one location when one has room for them all …
    whole = next((i for i in order if counts[i] + len(new_pieces) <= max_ranges), None)
    for piece in new_pieces:
        target = whole
        if target is None:  # … else piece by piece, changed locations first.
            order = [i for i in range(usable) if changed_now[i]] + [
                i for i in range(usable) if not changed_now[i]
            ]
            target = next((i for i in order if counts[i] < max_ranges), None)
        if target is None:
            overflow.append(piece)
            continue
        assigned[target].append(piece)
        counts[target] += 1
        changed_now[target] = True

    # 3. Build the per-location plans.
    plans: list[LocationPlan] = []
    for i in range(n_slots):
        exists = i < len(current)
        nets = collapse(assigned[i])
        if not exists and not nets and i > 0:
            continue
        ranges = [str(n) for n in nets]
        placeholder_only = not ranges
        if placeholder_only:
            ranges = [placeholder_s]
        final = set(ranges)
        before = held_str[i] if exists else set()
        added = sorted(final - before, key=_sort_key_str)
        removed_norm = sorted(before - final, key=_sort_key_str)
        removed = [held_raw[i][r] for r in removed_norm] if exists else []
        plans.append(
            LocationPlan(
                index=i,
                name_suffix=location_suffix(i),
                ranges=ranges,
                added=added,
                removed=removed,
                changed=(final != before) or not exists,
                exists=exists,
                retired=i >= usable,
                placeholder_only=placeholder_only,
            )
        )
    return Plan(
        locations=plans,
        overflow=[str(n) for n in collapse(overflow)],
        desired=[str(n) for n in want],
    )


def _sort_key_str(text: str) -> tuple[int, int, int, str]:
    try:
        n = _as_net(text)
    except ValueError:
        return (9, 0, 0, text)
    return (n.version, int(n.network_address), n.prefixlen, "")
