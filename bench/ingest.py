"""Ingest: how many durable grants per second the store takes, thanks to group commit.

16 concurrent clients grant distinct addresses (each one validated, capacity-checked,
stored, and acknowledged only after its batch's transaction is durable):

- ``service``: 16 threads calling ``GrantService.grant`` as fast as they can (SQLite,
  WAL, ``synchronous = FULL``), then offered at 1,000 grants/s (open loop) for the
  acknowledgement latency;
- ``http``: 16 keep-alive HTTP clients (2 processes x 8 threads) against ``entragate
  run`` (SQLite), as fast as the agent answers;
- ``postgresql``: the service figure on a PostgreSQL 15 started for the run
  (``--no-postgres`` skips it).

    .venv/bin/python bench/ingest.py [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Job, agent_process, emit, emulated_tenant, percentile, run_load, scattered
from entragate.config import AclConfig, AgentConfig, Config
from entragate.grants import GrantStore, open_store
from entragate.logs import configure_logging
from entragate.service import GrantService

CLIENTS = 16


def service_for(store: GrantStore) -> GrantService:
    acl = AclConfig(name="staff", location="Bench staff", max_ranges=2000, max_locations=100)
    return GrantService(Config(acls={"staff": acl}, agent=AgentConfig(store="sqlite:///unused")), store)


def closed_loop(grant: Callable[[int], None], seconds: float) -> float:
    """Grants/s from CLIENTS threads granting back to back for ``seconds``."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    done = [0] * CLIENTS
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        while time.monotonic() < stop:
            with lock:
                i = next(counter)
            grant(i)
            done[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def open_loop(grant: Callable[[int], None], rate: float, count: int, offset: int) -> list[float]:
    """Acknowledgement latencies (s) of ``count`` grants offered at ``rate``/s by CLIENTS threads."""
    t0 = time.monotonic() + 0.2
    latencies: list[float] = []

    def client(k: int) -> None:
        for i in range(k, count, CLIENTS):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            grant(offset + i)
            latencies.append(time.monotonic() - due)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def service_figures(url: str, seconds: float) -> dict[str, Any]:
    store = open_store(url)
    service = service_for(store)
    pool = scattered(200_000)

    def grant(i: int) -> None:
        service.grant("staff", pool[i], f"user{i}", ttl=3600, source="bench")

    try:
        rate = closed_loop(grant, seconds)
        batches_before = store.batches
        latencies = open_loop(grant, 1000.0, int(1000 * seconds), offset=100_000)
        batches = store.batches - batches_before
    finally:
        store.close()
    ms = [1000 * x for x in latencies]
    return {
        "grants_per_s": round(rate, 1),
        "ack_p50_ms_at_1000": percentile(ms, 0.5),
        "ack_p99_ms_at_1000": percentile(ms, 0.99),
        "grants_per_batch_at_1000": round(len(latencies) / max(1, batches), 2),
    }


def http_figures(workdir: Path, count: int) -> dict[str, Any]:
    with emulated_tenant(workdir) as t, agent_process(t, workdir, max_ranges=2000, max_locations=50) as agent:
        start = time.time() + 2.0
        jobs = [Job(start, "POST", "/v1/grants", {"acl": "staff", "ip": a, "user": f"u{i}", "ttl": 3600})
                for i, a in enumerate(scattered(count))]
        results = run_load(agent.url, jobs, processes=2, threads=CLIENTS // 2)
    ok = [r for r in results if r[0] == 201]
    elapsed = max(r[2] for r in ok) - start if ok else float("inf")
    return {"grants_per_s": round(len(ok) / elapsed, 1), "acked": len(ok), "sent": count}


def postgres_figures(seconds: float) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers.postgres import start_pg_server, stop_pg_server

    server, tmp = start_pg_server()
    try:
        return service_figures(server.create_database("bench"), seconds)
    finally:
        stop_pg_server(server)
        tmp.cleanup()


def run(seconds: float, http_grants: int, postgres: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="entragate-ingest-") as tmp:
        workdir = Path(tmp)
        report: dict[str, Any] = {"clients": CLIENTS}
        report["sqlite_service"] = service_figures(f"sqlite:///{workdir / 'service.db'}", seconds)
        (workdir / "http").mkdir()
        report["sqlite_http"] = http_figures(workdir / "http", http_grants)
    if postgres:
        report["postgresql_service"] = postgres_figures(seconds)
    return report


def table(r: dict[str, Any]) -> list[str]:
    lines = [f"ingest with {r['clients']} concurrent clients (durable before acknowledged)"]
    for name in ("sqlite_service", "postgresql_service"):
        if name in r:
            v = r[name]
            lines.append(
                f"  {name:20s} {v['grants_per_s']:8.1f} grants/s; at 1,000/s: ack p50 {v['ack_p50_ms_at_1000']} ms, "
                f"p99 {v['ack_p99_ms_at_1000']} ms, {v['grants_per_batch_at_1000']} grants per commit"
            )
    v = r["sqlite_http"]
    lines.append(f"  {'sqlite_http':20s} {v['grants_per_s']:8.1f} grants/s ({v['acked']}/{v['sent']} acked, keep-alive)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--http-grants", type=int, default=6000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(json_lines=True, stream=open(os.devnull, "w"))  # noqa: SIM115
    emit(run(args.seconds, args.http_grants, not args.no_postgres), args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
