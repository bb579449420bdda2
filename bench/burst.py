"""Burst benchmark: N users granted within about a second, under Graph's 1 request/second.

Runs against the emulated tenant with its Conditional Access throttle on and 30 ms of
injected latency, twice: entragate's agent (through its HTTP API), then a naive client
that PATCHes the full list once per grant event (what per-event agents do), each on
its own tenant of the same emulator. Visibility is read from the emulator's write log:
a grant's latency runs from the moment its request was sent to the first successful
write that contains it (grants whose request was never acknowledged are not counted).

    .venv/bin/python bench/burst.py            # 1000 grants, human summary
    .venv/bin/python bench/burst.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from entragate.config import AclConfig, AgentConfig, Config, ConnectTo, Secret
from entragate.emulator import Emulator, EmulatorFault
from entragate.errors import EntraError, Throttled
from entragate.logs import configure_logging
from entragate.sync.pacer import full_jitter
from entragate.sync.ranges import RangeSet

LOCATION = "Bench staff"


def addresses(n: int, *, scattered: bool = False) -> list[str]:
    """Globally routable (81.0.0.0/8 onwards), never documentation space. Neighbours
    collapse into a few ranges; ``scattered`` ones (as from many ISPs) never do."""
    if scattered:
        return [f"{81 + i // 62500}.{(i // 250) % 250}.{i % 250}.1" for i in range(n)]
    return [f"81.{2 + i // 62500}.{(i // 250) % 250}.{1 + i % 250}" for i in range(n)]


def bench_config(emu: Emulator, app: Any, workdir: Path) -> Config:
    return Config(
        tenant_id=app.tenant_id,
        client_id=app.client_id,
        client_secret=Secret(app.secret),
        ca_bundle=Path(emu.ca_bundle_path),
        ca_bundle_origin="ca_bundle",
        connect_to=tuple(ConnectTo.parse(e) for e in emu.connect_to()),
        timeout=10.0,
        acls={"staff": AclConfig(name="staff", location=LOCATION)},
        agent=AgentConfig(
            listen="127.0.0.1:0",
            api_token=Secret("bench-token-Mw5Qs8Dk1Vz3Yr7Lh2Bn6Tc"),
            store=f"sqlite:///{workdir / 'grants.db'}",
            rate=1.0,
            verify_interval=3600.0,
        ),
    )


def visibility(emu: Emulator, tenant: str, acked: dict[str, float]) -> list[float]:
    writes = [(w.time, RangeSet(w.ranges or ())) for w in sorted(emu.writes(tenant), key=lambda w: w.time)]
    latencies = []
    for cidr, at in acked.items():
        seen = next((t for t, ranges in writes if t >= at and ranges.covers(cidr)), None)
        if seen is not None:
            latencies.append(seen - at)
    return latencies


def graph_requests(emu: Emulator, tenant: str, since: float) -> int:
    return sum(
        1 for r in emu.requests if r.tenant == tenant and r.time >= since and "namedLocations" in r.path
    )


def summarise(latencies: list[float], requests_made: int, total: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    if not ordered:
        return {"graph_requests": requests_made, "p50_s": None, "p99_s": None, "max_s": None, "visible": 0}
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "graph_requests": requests_made,
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(p99, 3),
        "max_s": round(ordered[-1], 3),
        "visible": len(ordered),
        "not_visible": total - len(ordered),
    }


def _client_worker(url: str, token: str, jobs: list[tuple[int, str]], t0: float, n: int) -> list[tuple[str, float]]:
    """One load-generating process: grant i is sent at t0 + i/n (open loop)."""
    local = threading.local()

    def grant(job: tuple[int, str]) -> tuple[str, float] | None:
        i, address = job
        scheduled = t0 + i / n
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(
            f"{url}/v1/grants",
            json={"acl": "staff", "ip": address, "user": f"user{i:04d}", "ttl": 3600},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return (response.json()["cidr"], scheduled) if response.status_code == 201 else None

    with ThreadPoolExecutor(max_workers=6) as pool:
        return [r for r in pool.map(grant, jobs) if r is not None]


def run_entragate(
    emu: Emulator, n: int, workdir: Path, timeout: float, processes: int, scattered: bool
) -> dict[str, Any]:
    from entragate.agent import Agent

    tenant = emu.add_tenant()
    app = emu.add_app(tenant, secret="Bench~Secret.Value-0123456789abcdefGHIJ")
    emu.create_location(tenant, LOCATION, ["192.0.2.255/32"])
    config = bench_config(emu, app, workdir / "entragate")
    wanted = addresses(n, scattered=scattered)
    with Agent(config) as agent:
        deadline = time.monotonic() + 30
        while not agent.engine.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        since = time.time()
        t0 = since + 1.0  # let the client processes start
        slices = [[(i, wanted[i]) for i in range(k, n, processes)] for k in range(processes)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            results = pool.starmap(
                _client_worker, [(agent.api_url, agent.token, jobs, t0, n) for jobs in slices]
            )
        acked = {cidr: scheduled for chunk in results for cidr, scheduled in chunk}
        burst_seconds = time.time() - t0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = RangeSet(r["cidrAddress"] for loc in emu.locations(tenant) for r in loc["ipRanges"])
            if all(current.covers(cidr) for cidr in acked):
                break
            time.sleep(0.05)
    result = summarise(visibility(emu, tenant, acked), graph_requests(emu, tenant, since), n)
    result["acknowledged"] = len(acked)
    result["burst_s"] = round(burst_seconds, 3)
    return result


def run_naive(emu: Emulator, n: int, timeout: float, scattered: bool) -> dict[str, Any]:
    """One PATCH of the full list per grant event, in order, retrying 429s with backoff."""
    from entragate.graph import GraphClient

    tenant = emu.add_tenant()
    app = emu.add_app(tenant, secret="Naive~Secret.Value-0123456789abcdefGHIJ")
    emu.create_location(tenant, LOCATION, ["192.0.2.255/32"])
    with tempfile.TemporaryDirectory() as tmp:
        graph = GraphClient(bench_config(emu, app, Path(tmp)))
    location = graph.find_location(LOCATION)
    assert location is not None
    wanted = [f"{a}/32" for a in addresses(n, scattered=scattered)]
    # The same open-loop burst: event i arrives at t0 + i/n, and is PATCHed in turn.
    since = time.time()
    acked = {cidr: since + i / n for i, cidr in enumerate(wanted)}
    deadline = time.monotonic() + timeout
    for i in range(n):
        attempt = 0
        while time.monotonic() < deadline:
            try:
                graph.replace_ranges(location, wanted[: i + 1])
                break
            except Throttled:
                attempt += 1
                time.sleep(full_jitter(attempt, cap=8.0))
            except EntraError:
                attempt += 1
                time.sleep(full_jitter(attempt, cap=8.0))
        if time.monotonic() >= deadline:
            break
    result = summarise(visibility(emu, tenant, acked), graph_requests(emu, tenant, since), n)
    result["stopped_after_s"] = timeout
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.030, help="injected Graph latency, seconds")
    parser.add_argument("--naive-timeout", type=float, default=60.0,
                        help="stop the naive client after this many seconds (it needs ~1 s per grant)")
    parser.add_argument("--processes", type=int, default=2, help="load-generating client processes")
    parser.add_argument("--scattered", action="store_true",
                        help="addresses that never collapse into wider ranges (as from many ISPs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(json_lines=True, stream=open("/dev/null", "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="entragate-bench-") as tmp:
        workdir = Path(tmp)
        emu = Emulator(state_dir=workdir / "emulator", rate_limit=1.0)
        emu.start()
        try:
            emu.set_fault(EmulatorFault(kind="latency", host="graph", seconds=args.latency))
            ours = run_entragate(emu, args.grants, workdir, timeout=120.0, processes=args.processes,
                                 scattered=args.scattered)
            naive = run_naive(emu, args.grants, timeout=args.naive_timeout, scattered=args.scattered)
        finally:
            emu.stop()
    report = {"entragate": ours, "naive": naive, "grants": args.grants}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.grants} grants from {args.grants} users, 1 req/s/tenant throttle, "
              f"{args.latency * 1000:.0f} ms Graph latency")
        for name, r in (("entragate", ours), ("naive", naive)):
            print(f"  {name:9s} graph requests {r['graph_requests']:5d}   visible {r['visible']:5d}/{args.grants}"
                  f"   p50 {r['p50_s']} s   p99 {r['p99_s']} s   max {r['max_s']} s")
        print(f"  entragate API burst took {ours['burst_s']} s; naive stopped after {naive['stopped_after_s']} s "
              "(latencies of never-visible grants are not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
