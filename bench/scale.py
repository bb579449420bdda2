"""Scale benchmark: a 9:00 rush of 8,000 grants at 200/s over 8 shard locations, then an
expiry storm of 2,000 grants 15 s after the ramp, under Graph's 1 request/second.

The agent runs as its own process (``entragate run``, SQLite store) against the emulated
tenant (throttle on, 30 ms Graph latency, 2,000 ranges per location); two client
processes send the grants open loop through the HTTP API over keep-alive connections.
``max_ranges = 1000`` so that the 8,000 scattered addresses really need all 8 shards.
The 2,000 that expire together are the first 2,000 granted (the first 10 s of the ramp):
their ranges sit in the first shards, as placement fills one shard before opening the
next (docs/design.md#placement). ``--scatter-expiring`` draws them from the whole ramp
instead, so every shard has removals at once: then the bound is (L + 1) slots with
L = 8. Latencies come from the emulator's write log.

    .venv/bin/python bench/scale.py            # table
    .venv/bin/python bench/scale.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
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
from entragate.grants import rfc3339


def run(
    grants: int, rate: float, expiring: int, after: float, shards: int, max_ranges: int, scatter: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="entragate-scale-") as tmp:
        workdir = Path(tmp)
        with emulated_tenant(workdir) as t, agent_process(
            t, workdir, max_ranges=max_ranges, max_locations=shards
        ) as agent:
            cpu_before = agent.cpu_seconds()
            wanted = scattered(grants)
            ending = set(random.Random(8).sample(range(grants), expiring)) if scatter else set(range(expiring))
            t0 = time.time() + 2.0  # let the client processes start
            ramp = grants / rate
            expiry = t0 + ramp + after
            jobs = []
            for i, address in enumerate(wanted):
                body: dict[str, Any] = {"acl": "staff", "ip": address, "user": f"user{i:05d}"}
                if i in ending:
                    body["expires_at"] = rfc3339(datetime.fromtimestamp(expiry, UTC))
                else:
                    body["ttl"] = 3600
                jobs.append(Job(t0 + i / rate, "POST", "/v1/grants", body))
            results = run_load(agent.url, jobs)
            acked = [(f"{wanted[i]}/32", r[1], r[2]) for i, r in enumerate(results) if r[0] == 201]
            in_ramp = [a for a in acked if a[2] <= t0 + ramp]
            everything = {c for c, _, _ in acked}
            expired = {f"{wanted[i]}/32" for i in ending} & everything

            def settled() -> bool:
                held = {r["cidrAddress"] for loc in t.emu.locations(t.tenant) for r in loc["ipRanges"]}
                return everything - expired <= held and not (held & expired) and time.time() > expiry

            wait_until(settled, timeout=ramp + after + 120)
            cpu = agent.cpu_seconds() - cpu_before
            rss = agent.peak_rss_mb()
            status = agent.status()
        log = WriteLog(t)
        requests_made = sum(1 for r in t.emu.requests if r.tenant == t.tenant and "namedLocations" in r.path)
    visible: list[float] = []
    placed: dict[str, str] = {}
    for cidr, sent, _ in acked:
        seen = log.visible(cidr)
        if seen is not None:
            placed[cidr] = seen[0]
            visible.append(seen[1] - sent)
    removal: dict[str, list[float]] = {}
    for cidr in expired:
        location = placed.get(cidr)
        if location is not None:
            gone = log.removed(location, cidr, expiry)
            removal.setdefault(location, []).append((gone if gone is not None else float("inf")) - expiry)
    ungranted = log.every_range_written() - everything - {"192.0.2.255/32"}
    moved = [c for c in everything if len(log.holders(c)) > 1]
    return {
        "grants": grants,
        "rate_per_s": rate,
        "shards": shards,
        "acked": len(acked),
        "acked_within_ramp": len(in_ramp),
        "acked_within_ramp_pct": round(100 * len(in_ramp) / grants, 1),
        "ack_rate_per_s": round(len(in_ramp) / ramp, 1),
        "ack_p99_s": percentile([a[2] - a[1] for a in acked], 0.99),
        "visible_p50_s": percentile(visible, 0.5),
        "visible_p99_s": percentile(visible, 0.99),
        "visible_max_s": percentile(visible, 1.0),
        "not_visible": len(acked) - len(visible),
        "expiring": len(expired),
        "expiring_scattered": scatter,
        "expiry_removed_p99_s": {loc: percentile(v, 0.99) for loc, v in sorted(removal.items())},
        "locations_used": len(log.by_location),
        "max_locations_per_second": log.locations_per_second(),
        "graph_writes": log.writes,
        "graph_requests": requests_made,
        "agent_cpu_s": round(cpu, 1),
        "agent_peak_rss_mb": rss,
        "pace": status.get("pace"),
        "ungranted_addresses": len(ungranted),
        "moved_addresses": len(moved),
    }


def table(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r['grants']} grants at {r['rate_per_s']:g}/s over {r['shards']} shards, 1 req/s, 30 ms Graph latency",
        f"  acked within ramp   {r['acked_within_ramp']} ({r['acked_within_ramp_pct']} %), "
        f"{r['ack_rate_per_s']}/s, ack p99 {r['ack_p99_s']} s",
        f"  grant -> visible    p50 {r['visible_p50_s']} s  p99 {r['visible_p99_s']} s  max {r['visible_max_s']} s"
        f"  (not visible: {r['not_visible']})",
        f"  expiry storm        {r['expiring']} grants; removed p99 per location:",
    ]
    lines += [f"      {loc:22s} {p99} s" for loc, p99 in r["expiry_removed_p99_s"].items()]
    lines += [
        f"  locations used      {r['locations_used']}  (max {r['max_locations_per_second']} written in any second)",
        f"  graph               {r['graph_requests']} requests, {r['graph_writes']} writes",
        f"  agent               {r['agent_cpu_s']} CPU s, peak RSS {r['agent_peak_rss_mb']} MB",
        f"  safety              ungranted addresses {r['ungranted_addresses']}, moved {r['moved_addresses']}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=8000)
    parser.add_argument("--rate", type=float, default=200.0, help="grants offered per second")
    parser.add_argument("--expiring", type=int, default=2000)
    parser.add_argument("--after", type=float, default=15.0, help="seconds after the ramp they expire")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--max-ranges", type=int, default=1000)
    parser.add_argument("--scatter-expiring", action="store_true",
                        help="the expiring grants drawn at random from the whole ramp (every shard)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.grants, args.rate, args.expiring, args.after, args.shards, args.max_ranges,
                 args.scatter_expiring)
    emit(report, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
