"""The 9:00 storm on a virtual clock: 50,000 grants in 10 minutes over 25 shards, under
Graph's 1 request/second, and their expiries eight hours later.

Real time would need eight hours and a tenant; this drives the writer's own planning
code (``AclDesired``, ``most_due``, ``passed_over``: the same objects the engine uses)
slot by slot on a virtual clock instead. One slot per second (``rate = 1``), each
writing one shard, visible a Graph round trip later (30 ms, or ``--rtt``). Arrivals
follow a 9:00 rush (a beta distribution over 10 minutes, peaking in the first two);
each session lasts 8 h plus up to 30 minutes, so the expiries are scattered over every
shard. The planner's CPU per slot is measured for real and reported: it must fit in a
slot for the virtual clock to be honest.

    .venv/bin/python bench/storm.py [--json]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import emit, percentile, scattered
from entragate.sync.desired import AclDesired
from entragate.sync.shard import most_due, passed_over

PH = "192.0.2.255/32"
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def run(grants: int, window: float, shards: int, rtt: float, spread: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    max_ranges = -(-grants // shards)
    cidrs = [f"{a}/32" for a in scattered(grants)]
    arrivals = sorted(rng.betavariate(1.3, 4.0) * window for _ in range(grants))
    events = [(at, 1, f"u{i}", cidrs[i]) for i, at in enumerate(arrivals)]
    events += [(at + 8 * 3600 + rng.uniform(0, spread), 0, f"u{i}", cidrs[i]) for i, at in enumerate(arrivals)]
    events.sort()
    desired = AclDesired("staff", [], max_ranges=max_ranges, max_locations=shards, placeholder=PH)
    granted_at: dict[str, float] = {}
    removed_at: dict[int, list[tuple[str, float]]] = {}  # shard -> removals not yet written
    visible: list[float] = []
    gone: list[float] = []
    cpu: list[float] = []
    dirty_seen = 0
    slots = 0
    k = 0
    clock = 0.0
    while k < len(events) or most_due(desired.shards) is not None:
        if most_due(desired.shards) is None:
            clock = max(clock, events[k][0])  # idle until the next change
        started = time.perf_counter()
        while k < len(events) and events[k][0] <= clock:
            at, grant, user, cidr = events[k]
            if grant:
                desired.add(user, cidr, now=at, created_at=T0 + timedelta(seconds=at))
                granted_at[cidr] = at
            else:
                index = desired.location_of(cidr)
                desired.remove(user, cidr, now=at)
                if index is not None:
                    removed_at.setdefault(index, []).append((cidr, at))
            k += 1
        shard = most_due(desired.shards)
        if shard is not None:
            dirty_seen = max(dirty_seen, sum(1 for s in desired.shards if s.dirty))
            passed_over(desired.shards, shard)
            ticket = shard.take()
            shard.settle(ticket, written=True)
            cpu.append(time.perf_counter() - started)
            done = clock + rtt
            visible.extend(done - granted_at[c] for c in ticket.fresh)
            gone.extend(done - at for _, at in removed_at.pop(shard.index, []))
            slots += 1
            clock += 1.0  # the next slot
    return {
        "grants": grants,
        "window_s": window,
        "shards": shards,
        "max_ranges": max_ranges,
        "rate_per_s": 1.0,
        "rtt_s": rtt,
        "expiry_spread_s": spread,
        "slots": slots,
        "visible_p50_s": percentile(visible, 0.5),
        "visible_p99_s": percentile(visible, 0.99),
        "visible_max_s": percentile(visible, 1.0),
        "expiry_removed_p50_s": percentile(gone, 0.5),
        "expiry_removed_p99_s": percentile(gone, 0.99),
        "expiry_removed_max_s": percentile(gone, 1.0),
        "max_dirty_shards": dirty_seen,
        "bound_removal_s": round(dirty_seen + 1 + rtt, 3),
        "planner_cpu_per_slot_ms": {"p50": round(1000 * (percentile(cpu, 0.5) or 0), 2),
                                    "max": round(1000 * (percentile(cpu, 1.0) or 0), 2)},
        "peak_arrivals_per_s": max(
            sum(1 for a in arrivals if s <= a < s + 1) for s in range(0, int(window), 10)
        ),
        "virtual_clock": True,
    }


def table(r: dict[str, Any]) -> list[str]:
    return [
        f"9:00 storm (virtual clock): {r['grants']} grants in {r['window_s']:g} s over {r['shards']} shards "
        f"x {r['max_ranges']}, 1 req/s, rtt {r['rtt_s']} s",
        f"  arrivals peak        {r['peak_arrivals_per_s']}/s",
        f"  grant -> visible     p50 {r['visible_p50_s']} s  p99 {r['visible_p99_s']} s  max {r['visible_max_s']} s",
        f"  expiry -> removed    p50 {r['expiry_removed_p50_s']} s  p99 {r['expiry_removed_p99_s']} s  "
        f"max {r['expiry_removed_max_s']} s  (expiries spread over {r['expiry_spread_s']:g} s)",
        f"  dirty shards at most {r['max_dirty_shards']}: bound (L + 1) slots + rtt = {r['bound_removal_s']} s",
        f"  slots {r['slots']}; planner CPU per slot p50 {r['planner_cpu_per_slot_ms']['p50']} ms, "
        f"max {r['planner_cpu_per_slot_ms']['max']} ms",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=50_000)
    parser.add_argument("--window", type=float, default=600.0, help="seconds over which they arrive")
    parser.add_argument("--shards", type=int, default=25)
    parser.add_argument("--rtt", type=float, default=0.030)
    parser.add_argument("--spread", type=float, default=1800.0, help="expiries scattered over this many seconds")
    parser.add_argument("--seed", type=int, default=900)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    emit(run(args.grants, args.window, args.shards, args.rtt, args.spread, args.seed), args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
