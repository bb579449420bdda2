"""Planner CPU at tenant scale: 100,000 active grants over 50 shard locations.

Measures the writer's planning alone (no Graph, no HTTP), in this process:

- one change: a revoke plus a new grant, applied to the desired state (O(log n) each);
- a slot's plan: the complete, collapsed list of the one shard being written;
- the capacity check of one grant (O(1) far from the limit);
- a full reconcile: the desired state rebuilt from every grant against what Entra
  holds (as after a verify read), and a cold start (Entra holds nothing yet);
- reading the 100,000 grants from a SQLite store, reported apart: it is the store's
  cost, not the planner's;
- peak RSS of the process.

    .venv/bin/python bench/plan.py [--json]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from common import emit, scattered
from entragate.grants.batch import HeldCidrs
from entragate.grants.sqlite import SQLiteGrantStore
from entragate.sync.desired import AclDesired
from entragate.sync.ranges import make_capacity_check

PH = "192.0.2.255/32"


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(grants: int, locations: int, changes: int, store_read: bool) -> dict[str, Any]:
    max_ranges = -(-grants // locations)
    created = datetime.now(UTC)
    cidrs = [f"{a}/32" for a in scattered(grants + changes)]
    rows = [(f"user{i:06d}", cidrs[i], created) for i in range(grants)]
    first = AclDesired("staff", [], max_ranges=max_ranges, max_locations=locations, placeholder=PH)
    cold = timed(partial(first.rebuild, rows, [None] * locations, now=0.0))
    applied: list[set[str] | None] = [set(s.ranges_to_write()) for s in first.shards]
    del first  # an agent holds one desired state per ACL
    gc.collect()
    fresh = AclDesired("staff", [], max_ranges=max_ranges, max_locations=locations, placeholder=PH)
    reconcile = [timed(lambda: fresh.rebuild(rows, applied, now=1.0)) for _ in range(3)]
    change_times: list[float] = []
    slot_times: list[float] = []
    for k in range(changes):
        user, cidr, _ = rows[k]
        new = cidrs[grants + k]

        def change(user: str = user, cidr: str = cidr, new: str = new, k: int = k) -> None:
            fresh.remove(user, cidr, now=2.0 + k)
            fresh.add(f"new{k}", new, now=2.0 + k, created_at=created)

        change_times.append(timed(change))
        index = fresh.location_of(new)
        assert index is not None
        shard = fresh.shards[index]
        slot_times.append(timed(lambda shard=shard: shard.settle(shard.take(), written=True)))
    check = make_capacity_check([], max_ranges=max_ranges, max_locations=locations)
    held = HeldCidrs(grants - 1, lambda: [])
    capacity = statistics.median(timed(lambda: check(held)) for _ in range(1000))
    read_s = None
    if store_read:
        with tempfile.TemporaryDirectory(prefix="entragate-plan-") as tmp:
            store = SQLiteGrantStore(Path(tmp) / "grants.db")
            conn = store._connection()  # bulk seeding: one transaction, not 100,000 grants
            expires = store._db_time(created + timedelta(hours=8))
            now_us = store._db_time(created)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO entragate_grants VALUES (?, ?, ?, ?, ?, 'bench', '')",
                [("staff", u, c, expires, now_us) for u, c, _ in rows],
            )
            conn.execute("COMMIT")
            read_s = round(timed(lambda: store.active("staff")), 3)
            store.close()
    return {
        "grants": grants,
        "locations": locations,
        "max_ranges": max_ranges,
        "one_change_ms": {
            "median": round(1000 * statistics.median(change_times), 3),
            "max": round(1000 * max(change_times), 3),
        },
        "slot_plan_ms": {
            "median": round(1000 * statistics.median(slot_times), 2),
            "max": round(1000 * max(slot_times), 2),
        },
        "capacity_check_us": round(1e6 * capacity, 2),
        "full_reconcile_s": round(statistics.median(reconcile), 3),
        "cold_start_s": round(cold, 3),
        "store_read_s": read_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def table(r: dict[str, Any]) -> list[str]:
    return [
        f"planner: {r['grants']} active grants over {r['locations']} locations of {r['max_ranges']} ranges",
        f"  one change (revoke + grant)   median {r['one_change_ms']['median']} ms   max {r['one_change_ms']['max']} ms",
        f"  a slot's plan (one shard)     median {r['slot_plan_ms']['median']} ms   max {r['slot_plan_ms']['max']} ms",
        f"  capacity check                {r['capacity_check_us']} µs",
        f"  full reconcile (rebuild)      {r['full_reconcile_s']} s   (cold start {r['cold_start_s']} s)",
        f"  store read of every grant     {r['store_read_s']} s (SQLite; not planner time)",
        f"  peak RSS                      {r['peak_rss_mb']} MB",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--locations", type=int, default=50)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--no-store", action="store_true", help="skip the SQLite read")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    emit(run(args.grants, args.locations, args.changes, not args.no_store), args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
