"""Revoke under churn: is revoked access gone promptly while new grants keep arriving?

``max_ranges = 100``, ``max_locations = 4``, 300 grants seeded, then one revoke and one
new grant every 0.5 s for 60 s, under Graph's 1 request/second (emulated tenant, 30 ms
latency; the agent as its own process). A revoke's latency runs from the moment its
DELETE was sent to the first write of its location without the address.

    .venv/bin/python bench/churn.py [--json]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    Job,
    WriteLog,
    agent_process,
    emit,
    emulated_tenant,
    percentile,
    run_load,
    scattered,
    wait_until,
)


def run(seeded: int, seconds: float, every: float, max_ranges: int, shards: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="entragate-churn-") as tmp:
        workdir = Path(tmp)
        with emulated_tenant(workdir) as t, agent_process(
            t, workdir, max_ranges=max_ranges, max_locations=shards
        ) as agent:
            pool = scattered(seeded + int(seconds / every) + 1)
            t0 = time.time() + 2.0
            jobs = [Job(t0 + i / 100, "POST", "/v1/grants", {"acl": "staff", "ip": a, "user": f"u{i}", "ttl": 3600})
                    for i, a in enumerate(pool[:seeded])]
            held = list(range(seeded))
            churn_start = t0 + seeded / 100 + 8.0  # the seed is written by then
            revokes: list[tuple[str, float]] = []
            for k in range(int(seconds / every)):
                at = churn_start + k * every
                gone = held.pop(rng.randrange(len(held)))
                jobs.append(Job(at, "DELETE", "/v1/grants", {"acl": "staff", "ip": pool[gone]}))
                revokes.append((f"{pool[gone]}/32", at))
                new = seeded + k
                jobs.append(Job(at, "POST", "/v1/grants", {"acl": "staff", "ip": pool[new], "user": f"u{new}", "ttl": 3600}))
                held.append(new)
            results = run_load(agent.url, jobs)
            failed = sum(1 for r in results if r[0] not in (200, 201))
            revoked = {cidr for cidr, _ in revokes}

            def settled() -> bool:
                now = {r["cidrAddress"] for loc in t.emu.locations(t.tenant) for r in loc["ipRanges"]}
                return not (now & revoked)

            wait_until(settled, timeout=60)
        log = WriteLog(t)
    per_location: dict[str, list[float]] = {}
    for cidr, sent in revokes:
        seen = log.visible(cidr)
        if seen is None:
            continue
        gone = log.removed(seen[0], cidr, sent)
        per_location.setdefault(seen[0], []).append((gone if gone is not None else float("inf")) - sent)
    return {
        "seeded": seeded,
        "seconds": seconds,
        "revokes": len(revokes),
        "failed_requests": failed,
        "shards": shards,
        "max_ranges": max_ranges,
        "revoke_removed": {
            loc: {"p99_s": percentile(v, 0.99), "max_s": percentile(v, 1.0), "n": len(v)}
            for loc, v in sorted(per_location.items())
        },
        "revoke_removed_max_s": percentile([x for v in per_location.values() for x in v], 1.0),
        "graph_writes": log.writes,
    }


def table(r: dict[str, Any]) -> list[str]:
    lines = [
        f"revoke under churn: {r['seeded']} seeded, 1 revoke + 1 grant every 0.5 s for {r['seconds']:g} s, "
        f"{r['shards']} locations x {r['max_ranges']} ranges, 1 req/s",
        f"  {'location':22s} {'revokes':>8s} {'p99 s':>8s} {'max s':>8s}",
    ]
    for loc, v in r["revoke_removed"].items():
        lines.append(f"  {loc:22s} {v['n']:8d} {v['p99_s']:8} {v['max_s']:8}")
    lines.append(f"  worst revoke -> removed {r['revoke_removed_max_s']} s; {r['graph_writes']} writes; "
                 f"{r['failed_requests']} failed requests")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeded", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--max-ranges", type=int, default=100)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    emit(run(args.seeded, args.seconds, args.every, args.max_ranges, args.shards, args.seed), args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
