"""Desired ranges and sticky shard placement (pure functions), examples and properties."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from entragate.grants import InvalidGrant
from entragate.sync.ranges import (
    DEFAULT_PLACEHOLDER,
    Plan,
    desired_ranges,
    is_placeholder_only,
    location_name,
    make_capacity_check,
    plan_locations,
)

PH = DEFAULT_PLACEHOLDER

# ---------------------------------------------------------------- helpers

V4_BASE = int(ipaddress.IPv4Address("81.2.69.0"))  # a small public /24
V6_BASE = int(ipaddress.IPv6Address("2a00:1450:4001:80b::"))  # and a small public /120


def addresses(cidrs: list[str] | list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> set:
    out: set[tuple[int, int]] = set()
    for c in cidrs:
        n = ipaddress.ip_network(c) if isinstance(c, str) else c
        out.update((n.version, int(a)) for a in n)
    return out


def placed(plan: Plan) -> list[str]:
    return [r for lp in plan.locations if not lp.placeholder_only for r in lp.ranges]


def apply(plan: Plan) -> list[set[str]]:
    """What the locations hold after the plan was written."""
    return [set(lp.ranges) for lp in plan.locations]


@st.composite
def small_net(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        prefix = draw(st.integers(min_value=28, max_value=32))
        size = 2 ** (32 - prefix)
        offset = draw(st.integers(min_value=0, max_value=255 // size)) * size
        return str(ipaddress.IPv4Network((V4_BASE + offset, prefix)))
    prefix = draw(st.integers(min_value=124, max_value=128))
    size = 2 ** (128 - prefix)
    offset = draw(st.integers(min_value=0, max_value=255 // size)) * size
    return str(ipaddress.IPv6Network((V6_BASE + offset, prefix)))


nets = st.lists(small_net(), max_size=40)
limits = st.tuples(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=4))


def check_invariants(plan: Plan, allowed: set, max_ranges: int) -> None:
    seen: set = set()
    for lp in plan.locations:
        assert 1 <= len(lp.ranges) <= max_ranges
        assert lp.ranges == sorted(
            lp.ranges,
            key=lambda r: (
                ipaddress.ip_network(r).version,
                int(ipaddress.ip_network(r).network_address),
            ),
        )
        if lp.placeholder_only:
            assert lp.ranges == [PH]
            continue
        mine = addresses(lp.ranges)
        assert not (mine & seen), "two locations hold the same address"
        seen |= mine
    assert seen <= allowed, "placed an address nobody was granted"
    assert seen | addresses(plan.overflow) == allowed, "an address was silently dropped"


# ---------------------------------------------------------------- desired_ranges


def test_desired_collapses_siblings_only() -> None:
    got = desired_ranges(
        ["81.2.69.0/31"],
        ["81.2.69.142/32", "81.2.69.143/32", "81.2.69.144/32", "81.2.69.1/32", "2a00:1450::/32"],
    )
    assert [str(n) for n in got] == [
        "81.2.69.0/31",
        "81.2.69.142/31",
        "81.2.69.144/32",
        "2a00:1450::/32",
    ]


def test_desired_never_widens() -> None:
    got = desired_ranges([], ["81.2.69.143/32", "81.2.69.144/32"])  # neighbours, not siblings
    assert [str(n) for n in got] == ["81.2.69.143/32", "81.2.69.144/32"]


def test_desired_rejects_non_canonical_strings() -> None:
    with pytest.raises(ValueError):
        desired_ranges([], ["81.2.69.142/24"])


@settings(deadline=None, max_examples=200)
@given(static=nets, granted=nets, seed=st.integers())
def test_desired_is_exact_and_order_free(static: list[str], granted: list[str], seed: int) -> None:
    got = desired_ranges(static, granted)
    assert addresses(got) == addresses(static + granted)
    shuffled = static + granted + granted[:3]
    random.Random(seed).shuffle(shuffled)
    assert desired_ranges([], shuffled) == got
    assert got == sorted(got, key=lambda n: (n.version, int(n.network_address)))
    for a, b in zip(got, got[1:], strict=False):
        assert not a.overlaps(b)


# ---------------------------------------------------------------- names, placeholder


def test_location_names() -> None:
    assert location_name("Staff", 0) == "Staff"
    assert location_name("Staff", 1) == "Staff (2)"
    assert location_name("Staff", 9) == "Staff (10)"
    with pytest.raises(ValueError):
        location_name("Staff", -1)


def test_is_placeholder_only() -> None:
    assert is_placeholder_only([PH])
    assert is_placeholder_only(["192.0.2.255/32"])
    assert not is_placeholder_only([PH, "81.2.69.142/32"])
    assert not is_placeholder_only([])
    assert is_placeholder_only(["198.51.100.1/32"], placeholder="198.51.100.1/32")


def test_empty_acl_gets_placeholder() -> None:
    plan = plan_locations([], [set()], max_ranges=10, max_locations=1)
    (lp,) = plan.locations
    assert lp.ranges == [PH] and lp.placeholder_only and lp.changed
    plan = plan_locations([], [{PH}], max_ranges=10, max_locations=1)
    assert not plan.changed
    plan = plan_locations([], [], max_ranges=10, max_locations=3)
    (lp,) = plan.locations  # location 0 always appears; others only when needed
    assert lp.exists is False and lp.changed and lp.ranges == [PH]


# ---------------------------------------------------------------- placement examples


def test_unchanged_when_current_equals_desired_in_any_order() -> None:
    desired = desired_ranges([], ["81.2.69.142/32", "2a00:1450:4001:80b::200e/128"])
    plan = plan_locations(
        desired,
        [{"2A00:1450:4001:80B::200E/128", "81.2.69.142/32"}],
        max_ranges=10,
        max_locations=1,
    )
    assert not plan.changed
    assert plan.locations[0].added == [] and plan.locations[0].removed == []


def test_first_grant_replaces_placeholder() -> None:
    plan = plan_locations(["81.2.69.142/32"], [{PH}], max_ranges=10, max_locations=1)
    (lp,) = plan.locations
    assert lp.ranges == ["81.2.69.142/32"]
    assert lp.added == ["81.2.69.142/32"] and lp.removed == [PH]
    assert lp.changed and not lp.placeholder_only


def test_last_grant_ending_restores_placeholder() -> None:
    plan = plan_locations([], [{"81.2.69.142/32"}], max_ranges=10, max_locations=1)
    (lp,) = plan.locations
    assert lp.ranges == [PH] and lp.removed == ["81.2.69.142/32"] and lp.added == [PH]


def test_sibling_merge_in_one_location() -> None:
    desired = desired_ranges([], ["81.2.69.142/32", "81.2.69.143/32"])
    plan = plan_locations(desired, [{"81.2.69.142/32"}], max_ranges=10, max_locations=1)
    (lp,) = plan.locations
    assert lp.ranges == ["81.2.69.142/31"]
    assert lp.added == ["81.2.69.142/31"] and lp.removed == ["81.2.69.142/32"]


def test_sibling_merge_across_locations_rewrites_nothing() -> None:
    desired = desired_ranges([], ["81.2.69.142/32", "81.2.69.143/32"])
    current = [{"81.2.69.142/32"}, {"81.2.69.143/32"}]
    plan = plan_locations(desired, current, max_ranges=1, max_locations=2)
    assert not plan.changed
    assert [lp.ranges for lp in plan.locations] == [["81.2.69.142/32"], ["81.2.69.143/32"]]


def test_pieces_of_one_collapsed_range_stay_where_they_are() -> None:
    # 81.2.69.140/30 is desired; its parts live in two locations, two of them in one
    current = [{"81.2.69.1/32"}, {"81.2.69.140/31", "81.2.69.142/32"}, {"81.2.69.143/32"}]
    desired = desired_ranges([], ["81.2.69.1/32", "81.2.69.140/30"])
    plan = plan_locations(desired, current, max_ranges=3, max_locations=3)
    assert not plan.changed


def test_new_range_goes_to_location_already_changing() -> None:
    current = [{"81.2.69.1/32"}, {"81.2.69.3/32", "81.2.69.5/32"}]
    # .5 ended (location 2 changes anyway) and .9 is new: it joins location 2
    plan = plan_locations(
        ["81.2.69.1/32", "81.2.69.3/32", "81.2.69.9/32"], current, max_ranges=5, max_locations=2
    )
    assert [lp.changed for lp in plan.locations] == [False, True]
    assert plan.locations[1].ranges == ["81.2.69.3/32", "81.2.69.9/32"]
    # without another change, the first location with room takes it
    plan = plan_locations(
        ["81.2.69.1/32", "81.2.69.3/32", "81.2.69.5/32", "81.2.69.9/32"],
        current,
        max_ranges=5,
        max_locations=2,
    )
    assert [lp.changed for lp in plan.locations] == [True, False]


def test_new_location_created_when_full_and_overflow_reported() -> None:
    current = [{"81.2.69.1/32", "81.2.69.3/32"}]
    desired = ["81.2.69.1/32", "81.2.69.3/32", "81.2.69.5/32"]
    plan = plan_locations(desired, current, max_ranges=2, max_locations=2)
    assert [(lp.index, lp.exists, lp.changed) for lp in plan.locations] == [
        (0, True, False),
        (1, False, True),
    ]
    assert plan.locations[1].ranges == ["81.2.69.5/32"]
    assert plan.locations[1].name("Staff") == "Staff (2)"
    plan = plan_locations(desired, current, max_ranges=2, max_locations=1)
    assert plan.overflow == ["81.2.69.5/32"]  # the newcomer, never a placed range
    assert not plan.changed


def test_retired_locations_are_drained() -> None:
    current = [{"81.2.69.1/32"}, {"81.2.69.3/32"}]
    plan = plan_locations(["81.2.69.1/32", "81.2.69.3/32"], current, max_ranges=5, max_locations=1)
    assert plan.locations[0].ranges == ["81.2.69.1/32", "81.2.69.3/32"]
    assert plan.locations[1].retired and plan.locations[1].ranges == [PH]


def test_junk_and_hand_edits_are_removed() -> None:
    current = [{"81.2.69.142/32", "81.2.69.7/24", "not-a-range", "8.8.8.8/32"}]
    plan = plan_locations(["81.2.69.142/32"], current, max_ranges=5, max_locations=1)
    (lp,) = plan.locations
    assert lp.ranges == ["81.2.69.142/32"]
    assert sorted(lp.removed) == sorted(["81.2.69.7/24", "not-a-range", "8.8.8.8/32"])


def test_covering_range_held_keeps_its_location() -> None:
    # location 2 holds a /30 (e.g. written before one grant ended); what is left stays there
    current = [{"81.2.69.64/32"}, {"81.2.69.140/30"}]
    desired = desired_ranges([], ["81.2.69.64/32", "81.2.69.140/31", "81.2.69.142/32"])
    plan = plan_locations(desired, current, max_ranges=5, max_locations=2)
    assert not plan.locations[0].changed
    assert plan.locations[1].ranges == ["81.2.69.140/31", "81.2.69.142/32"]


def test_capacity_check() -> None:
    check = make_capacity_check(["81.2.69.0/31"], max_ranges=2, max_locations=1, acl="staff")
    check(["81.2.69.142/32", "81.2.69.143/32"])  # collapses to one range
    with pytest.raises(InvalidGrant) as exc:
        check(["81.2.69.142/32", "81.2.69.150/32"])
    assert exc.value.reason == "capacity"
    assert "staff" in exc.value.message


# ---------------------------------------------------------------- placement properties


@settings(deadline=None, max_examples=300)
@given(
    static=nets,
    granted=nets,
    held=st.lists(st.sets(small_net(), max_size=8), max_size=5),
    lim=limits,
)
def test_plan_never_places_ungranted_addresses(
    static: list[str], granted: list[str], held: list[set[str]], lim: tuple[int, int]
) -> None:
    max_ranges, max_locations = lim
    desired = desired_ranges(static, granted)
    plan = plan_locations(desired, held, max_ranges=max_ranges, max_locations=max_locations)
    check_invariants(plan, addresses(static + granted), max_ranges)
    for lp in plan.locations:
        if lp.retired:
            assert lp.ranges == [PH]
        if lp.exists:
            before = {str(ipaddress.ip_network(r)) for r in held[lp.index]}
            assert lp.changed == (set(lp.ranges) != before)


@settings(deadline=None, max_examples=200)
@given(
    granted=nets,
    held=st.lists(st.sets(small_net(), max_size=8), max_size=4),
    lim=limits,
    seed=st.integers(),
)
def test_plan_ignores_input_order_and_duplicates(
    granted: list[str], held: list[set[str]], lim: tuple[int, int], seed: int
) -> None:
    max_ranges, max_locations = lim
    a = plan_locations(
        desired_ranges([], granted), held, max_ranges=max_ranges, max_locations=max_locations
    )
    shuffled = granted + granted[:5]
    random.Random(seed).shuffle(shuffled)
    held2 = [set(list(h)) for h in held]
    b = plan_locations(
        desired_ranges([], shuffled), held2, max_ranges=max_ranges, max_locations=max_locations
    )
    assert a == b


@settings(deadline=None, max_examples=300)
@given(granted=nets, new=small_net(), lim=limits)
def test_one_new_grant_changes_at_most_one_location(
    granted: list[str], new: str, lim: tuple[int, int]
) -> None:
    max_ranges, max_locations = lim
    assume(not (addresses([new]) & addresses(granted)))
    first = plan_locations(
        desired_ranges([], granted), [], max_ranges=max_ranges, max_locations=max_locations
    )
    assume(not first.overflow)
    stable = apply(first)
    again = plan_locations(
        desired_ranges([], granted), stable, max_ranges=max_ranges, max_locations=max_locations
    )
    assert not again.changed  # idempotent
    nxt = plan_locations(
        desired_ranges([], [*granted, new]),
        stable,
        max_ranges=max_ranges,
        max_locations=max_locations,
    )
    assert len(nxt.changes) <= 1
    check_invariants(nxt, addresses([*granted, new]), max_ranges)
    if nxt.overflow:
        assert nxt.overflow == [new] and not nxt.changed
    else:
        (changed,) = nxt.changes
        assert changed.added  # the new addresses landed there


@settings(deadline=None, max_examples=200)
@given(granted=st.lists(small_net(), min_size=1, max_size=30), lim=limits, data=st.data())
def test_ending_one_grant_changes_only_its_location(
    granted: list[str], lim: tuple[int, int], data: st.DataObject
) -> None:
    max_ranges, max_locations = lim
    # disjoint grants, so every grant maps to exactly one place
    disjoint: list[str] = []
    for g in granted:
        if not (addresses([g]) & addresses(disjoint)):
            disjoint.append(g)
    # ... and none that collapse together: ending one grant of a merged range splits it,
    # which can need more ranges than its location has room for (max_ranges=1)
    assume(len(desired_ranges([], disjoint)) == len(disjoint))
    first = plan_locations(
        desired_ranges([], disjoint), [], max_ranges=max_ranges, max_locations=max_locations
    )
    assume(not first.overflow)
    gone = data.draw(st.sampled_from(disjoint))
    rest = [g for g in disjoint if g != gone]
    nxt = plan_locations(
        desired_ranges([], rest), apply(first), max_ranges=max_ranges, max_locations=max_locations
    )
    assert len(nxt.changes) == 1
    check_invariants(nxt, addresses(rest), max_ranges)


@settings(deadline=None, max_examples=200)
@given(granted=nets, lim=limits)
def test_removing_all_grants_leaves_placeholder_only(
    granted: list[str], lim: tuple[int, int]
) -> None:
    max_ranges, max_locations = lim
    first = plan_locations(
        desired_ranges([], granted), [], max_ranges=max_ranges, max_locations=max_locations
    )
    after = plan_locations([], apply(first), max_ranges=max_ranges, max_locations=max_locations)
    assert after.locations
    for lp in after.locations:
        assert lp.ranges == [PH] and lp.placeholder_only
        assert is_placeholder_only(lp.ranges)
    assert after.overflow == []


@settings(deadline=None, max_examples=150)
@given(static=nets, granted=nets, lim=limits)
def test_capacity_check_agrees_with_the_planner(
    static: list[str], granted: list[str], lim: tuple[int, int]
) -> None:
    max_ranges, max_locations = lim
    check = make_capacity_check(static, max_ranges=max_ranges, max_locations=max_locations)
    plan = plan_locations(
        desired_ranges(static, granted), [], max_ranges=max_ranges, max_locations=max_locations
    )
    try:
        check(granted)
    except InvalidGrant:
        assert plan.overflow
    else:
        assert not plan.overflow


def test_collapsing_never_builds_a_range_graph_refuses() -> None:
    # two adjacent /9s would merge into 81.0.0.0/8; Microsoft accepts only masks longer than /8
    merged = desired_ranges(["81.0.0.0/9", "81.128.0.0/9"], [])
    assert [str(n) for n in merged] == ["81.0.0.0/9", "81.128.0.0/9"]
    merged6 = desired_ranges(["2a00::/16", "2a01::/16"], [])
    assert [str(n) for n in merged6] == ["2a00::/16", "2a01::/16"]
