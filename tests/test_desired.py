"""The incremental desired state (placement over shards) and the fair, removal-first
choice of the next shard to write. Bounds are counted in slots, never in seconds."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from entragate.sync.cidrs import collapse_cidrs, net_bounds, subtract_cidrs
from entragate.sync.desired import AclDesired
from entragate.sync.ranges import collapse
from entragate.sync.shard import most_due, passed_over

PH = "192.0.2.255/32"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def make(max_ranges: int = 3, max_locations: int = 3, static: tuple[str, ...] = ()) -> AclDesired:
    return AclDesired(
        "staff", list(static), max_ranges=max_ranges, max_locations=max_locations, placeholder=PH
    )


def addresses(cidrs: list[str]) -> set[int]:
    found: set[int] = set()
    for cidr in cidrs:
        if cidr != PH:
            net = ipaddress.ip_network(cidr)
            found.update(int(a) for a in net)
    return found


def host(i: int) -> str:
    return f"81.2.{i // 100}.{(i % 100) * 2}/32"  # never neighbours: nothing collapses


def write_slot(desired: AclDesired) -> int | None:
    """One pacing slot: the most due shard is written (the write always succeeds here)."""
    shard = most_due(desired.shards)
    if shard is None:
        return None
    passed_over(desired.shards, shard)
    shard.settle(shard.take(), written=True)
    return shard.index


def test_net_bounds_parses_canonical_cidrs_only() -> None:
    assert net_bounds("81.2.69.0/24") == (4, int(ipaddress.IPv4Address("81.2.69.0")), int(ipaddress.IPv4Address("81.2.69.255")), 24)
    assert net_bounds("2a00:1450::/32")[0] == 6
    for bad in ("81.2.69.1/24", "81.2.69/24", "81.2.69.300/32", "x/32", "81.2.69.1/33", "81.2.069.1/32"):
        try:
            net_bounds(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


@settings(deadline=None, max_examples=300)
@given(
    nets=st.lists(
        st.one_of(
            st.tuples(st.just(4), st.integers(min_value=0, max_value=2**12 - 1), st.integers(min_value=9, max_value=32)),
            st.tuples(st.just(6), st.integers(min_value=0, max_value=2**12 - 1), st.integers(min_value=16, max_value=128)),
        ),
        max_size=40,
    )
)
def test_fast_collapse_agrees_with_ipaddress(nets: list[tuple[int, int, int]]) -> None:
    texts = []
    for version, offset, prefix in nets:
        base, bits = (int(ipaddress.IPv4Address("81.0.0.0")), 32) if version == 4 else (int(ipaddress.IPv6Address("2a00::")), 128)
        size = 1 << (bits - prefix)
        first = (base + offset * size) & ~(size - 1) if prefix > 16 else base  # wide ones at the base: stay in range
        texts.append(str(ipaddress.ip_network((first, prefix))))
    assert collapse_cidrs(texts) == [str(n) for n in collapse(ipaddress.ip_network(t) for t in texts)]
    assert collapse_cidrs(["81.0.0.0/9", "81.128.0.0/9"]) == ["81.0.0.0/9", "81.128.0.0/9"]



def _networks(nets: list[tuple[int, int, int]]) -> list[str]:
    out = []
    for version, offset, prefix in nets:
        base = int(ipaddress.IPv4Address("81.0.0.0")) if version == 4 else int(ipaddress.IPv6Address("2a00::"))
        size = 1 << ((32 if version == 4 else 128) - prefix)
        out.append(str(ipaddress.ip_network(((base + offset * size) & ~(size - 1), prefix))))
    return out


_SMALL_NETS = st.lists(
    st.one_of(
        st.tuples(st.just(4), st.integers(min_value=0, max_value=63), st.integers(min_value=24, max_value=32)),
        st.tuples(st.just(6), st.integers(min_value=0, max_value=63), st.integers(min_value=120, max_value=128)),
    ),
    max_size=12,
)


@settings(deadline=None, max_examples=300)
@given(kept=_SMALL_NETS, cut=_SMALL_NETS)
def test_subtracting_leaves_exactly_the_addresses_outside_the_cuts(
    kept: list[tuple[int, int, int]], cut: list[tuple[int, int, int]]
) -> None:
    texts, removed = _networks(kept), _networks(cut)
    left = subtract_cidrs(texts, removed)

    def addresses(cidrs: list[str]) -> set[tuple[int, int]]:
        return {(n.version, int(a)) for n in map(ipaddress.ip_network, cidrs) for a in n}

    assert addresses(left) == addresses(texts) - addresses(removed)
    cuts = [ipaddress.ip_network(c) for c in removed]
    for text in texts:  # a range no cut touches comes back as it was
        if not any(ipaddress.ip_network(text).overlaps(c) for c in cuts if c.version == ipaddress.ip_network(text).version):
            assert text in left


def test_subtracting_one_address_from_a_block_leaves_the_fewest_blocks() -> None:
    assert subtract_cidrs(["81.2.69.150/31"], ["81.2.69.151/32"]) == ["81.2.69.150/32"]
    assert subtract_cidrs(["81.2.69.0/30", "2a00::/127"], ["81.2.69.1/32"]) == [
        "81.2.69.0/32", "81.2.69.2/31", "2a00::/127",
    ]
    assert subtract_cidrs(["81.2.69.0/24"], ["81.2.0.0/16"]) == []

def test_shards_open_only_when_needed_and_fill_in_order() -> None:
    desired = make(max_ranges=3, max_locations=4)
    for i in range(3):
        desired.add(f"u{i}", host(i), now=i)
    assert [s.opened for s in desired.shards] == [True, False, False, False]
    desired.add("u3", host(3), now=3)
    assert [s.opened for s in desired.shards] == [True, True, False, False]
    assert desired.location_of(host(3)) == 1


def test_new_ranges_go_to_the_shard_already_due() -> None:
    desired = make(max_ranges=3, max_locations=2)
    for i in range(4):
        desired.add(f"u{i}", host(i), now=i)
    while write_slot(desired) is not None:
        pass
    desired.remove("u0", host(0), now=10)  # shard 0 has room again, and is due
    desired.add("u4", host(4), now=11)
    assert desired.location_of(host(4)) == 0
    # nothing due: the first open shard with room takes it
    while write_slot(desired) is not None:
        pass
    desired.add("u5", host(5), now=12)
    assert desired.location_of(host(5)) == 1


def test_nested_grants_share_a_shard_and_renewals_change_nothing() -> None:
    desired = make(max_ranges=5, max_locations=3)
    desired.add("alice", "81.2.69.0/24", now=0)
    desired.add("bob", "81.2.69.7/32", now=1)
    desired.add("carol", "81.2.0.0/16", now=2)
    assert {desired.location_of(c) for c in ("81.2.69.0/24", "81.2.69.7/32", "81.2.0.0/16")} == {0}
    version = desired.shards[0].version
    desired.add("bob", "81.2.69.7/32", now=3)  # a renewal
    assert desired.shards[0].version == version
    assert desired.shards[0].ranges_to_write() == ["81.2.0.0/16"]


def test_rebuild_sticks_to_what_entra_holds() -> None:
    desired = make(max_ranges=3, max_locations=3)
    grants = [(f"u{i}", host(i), T0) for i in range(5)]
    applied: list[set[str] | None] = [{host(3), host(4), PH}, {host(0), host(1)}, None]
    desired.rebuild(grants, applied, now=0)
    assert desired.location_of(host(3)) == 0 and desired.location_of(host(0)) == 1
    assert desired.location_of(host(2)) in (0, 1)  # new: a shard with room, never a third
    assert not desired.shards[2].opened
    # Entra holding exactly the plan: nothing is pending
    written: list[set[str] | None] = [set(s.ranges_to_write()) for s in desired.shards[:2]] + [None]
    again = make(max_ranges=3, max_locations=3)
    again.rebuild(grants, written, now=1)
    assert most_due(again.shards) is None


def test_hand_edits_are_pending_removals() -> None:
    desired = make()
    desired.rebuild([("u0", host(0), T0)], [{host(0), "8.8.8.8/32"}, None, None], now=5)
    shard = most_due(desired.shards)
    assert shard is not None and shard.rank == (0, 5)


def test_removals_go_before_older_additions() -> None:
    desired = make(max_ranges=2, max_locations=3)
    for i in range(4):
        desired.add(f"u{i}", host(i), now=i)
    while write_slot(desired) is not None:
        pass
    desired.add("new", host(10), now=20)  # an addition, older
    desired.remove("u0", host(0), now=30)  # a removal, newer
    assert write_slot(desired) == desired.location_of(host(1))  # u0's shard first
    assert write_slot(desired) == desired.location_of(host(10))


def test_a_change_during_a_write_stays_pending() -> None:
    desired = make()
    desired.add("u0", host(0), now=0)
    shard = desired.shards[0]
    ticket = shard.take()
    desired.add("u1", host(1), now=1)  # arrives while the PATCH is in flight
    shard.settle(ticket, written=True)
    assert shard.rank == (1, 1)
    failed = shard.take()
    shard.settle(failed, written=False)  # a failed write keeps everything pending
    assert shard.rank == (1, 1)


@settings(deadline=None, max_examples=60)
@given(locations=st.integers(min_value=1, max_value=8), seed=st.integers(), slots=st.integers(min_value=20, max_value=120))
def test_every_removal_is_written_within_dirty_locations_plus_one_slots(locations: int, seed: int, slots: int) -> None:
    """Churn without end: every slot brings new grants and ends old ones; a removal still
    waits at most (L + 1) slots, L being the shards dirty when it happened."""
    rng = random.Random(seed)
    desired = make(max_ranges=50, max_locations=locations)
    held: list[tuple[str, str]] = []
    serial = 0
    for _ in range(locations * 40):
        held.append((f"u{serial}", host(serial)))
        desired.add(*held[-1], now=0)
        serial += 1
    while write_slot(desired) is not None:
        pass
    waiting: list[tuple[int, int, int]] = []  # (shard, slot of the removal, dirty shards then)
    adding: list[tuple[int, int]] = []  # (shard, slot of the grant): additions do not starve
    for slot in range(slots):
        now = slot + 0.5
        for _ in range(rng.randint(0, 6)):  # new grants keep coming
            if len(held) < locations * 50:
                held.append((f"u{serial}", host(serial)))
                desired.add(*held[-1], now=now)
                index = desired.location_of(held[-1][1])
                assert index is not None
                adding.append((index, slot))
                serial += 1
        for _ in range(rng.randint(0, 2)):
            if held:
                user, cidr = held.pop(rng.randrange(len(held)))
                index = desired.location_of(cidr)
                desired.remove(user, cidr, now=now)
                assert index is not None
                dirty = sum(1 for s in desired.shards if s.dirty)
                waiting.append((index, slot, dirty))
        written = write_slot(desired)
        still = []
        for index, at, dirty in waiting:
            if written == index:
                assert slot - at + 1 <= dirty + 1, (slot, at, dirty)
            else:
                still.append((index, at, dirty))
        waiting = still
        adding = [(index, at) for index, at in adding if index != written]
        for _index, at in adding:
            assert slot - at + 1 <= 2 * locations + 1, "an addition starved"
    for _index, at, dirty in waiting:
        assert slots - at <= dirty + 1


@settings(deadline=None, max_examples=150)
@given(
    events=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=2)), max_size=80),
    lim=st.tuples(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=4)),
)
def test_shards_hold_exactly_the_granted_addresses_and_nothing_moves(
    events: list[tuple[bool, int, int]], lim: tuple[int, int]
) -> None:
    max_ranges, max_locations = lim
    desired = make(max_ranges=max_ranges, max_locations=max_locations)
    holders: dict[str, set[str]] = {}
    where: dict[str, int] = {}
    for step, (grant, n, user) in enumerate(events):
        cidr = f"81.2.69.{n}/32" if n % 3 else f"81.2.69.{n - n % 2}/31"  # some nest
        if grant:
            desired.add(f"u{user}", cidr, now=step)
            holders.setdefault(cidr, set()).add(f"u{user}")
        else:
            desired.remove(f"u{user}", cidr, now=step)
            holders.get(cidr, set()).discard(f"u{user}")
            if not holders.get(cidr):
                holders.pop(cidr, None)
                where.pop(cidr, None)
        for c in holders:
            index = desired.location_of(c)
            if index is not None:
                assert where.setdefault(c, index) == index, "a placed range moved"
        placed = [r for s in desired.shards if s.opened for r in s.ranges_to_write()]
        granted = addresses(list(holders))
        assert addresses(placed) <= granted, "an address nobody was granted"
        assert addresses(placed) | addresses(sorted(desired.overflow)) == granted, "an address was dropped"
        for shard in desired.shards:
            assert len(shard.ranges_to_write()) <= max_ranges


def test_new_ranges_avoid_a_shard_whose_writes_fail_for_good() -> None:
    desired = make(max_ranges=3, max_locations=3)
    for i in range(4):
        desired.add(f"u{i}", host(i), now=i)
    desired.shards[1].blocked = True  # e.g. parked: someone deleted it and create is off
    desired.add("u4", host(4), now=5)
    assert desired.location_of(host(4)) == 2  # not the parked one, though it is due and has room
