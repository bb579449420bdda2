"""Ingest: how many durable grants per second the store takes, thanks to group commit.

16 concurrent clients grant distinct addresses (each one validated, capacity-checked,
stored, and acknowledged only after its batch's transaction is durable):

- ``service``: 16 threads calling ``GrantService.grant`` as fast as they can (SQLite,
  WAL, ``synchronous = FULL``), then offered at 1,000 grants/s (open loop) for the
  acknowledgement latency;
- ``http``: 16 keep-alive HTTP/1.1 connections against ``entragate run`` (SQLite), as
  fast as the agent answers, then offered at 1,000 grants/s for the acknowledgement
  latency; with the agent's CPU per grant. The client is a small asyncio loop writing
  prepared requests: on a 2-core machine a ``requests``-based client costs more CPU
  per request than the agent does, and the figure would be the client's;
- ``postgresql``: the service figure on a PostgreSQL 15 started for the run
  (``--no-postgres`` skips it).

    .venv/bin/python bench/ingest.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import TOKEN, agent_process, emit, emulated_tenant, percentile, scattered
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


async def _connection(port: int, bodies: list[bytes], due: list[float] | None, out: list[tuple[int, float]]) -> None:
    """One keep-alive connection sending ``bodies`` in turn (each at its ``due`` time, if given)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /v1/grants HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n" \
           "Content-Type: application/json\r\n"
    try:
        for k, body in enumerate(bodies):
            if due is not None:
                await asyncio.sleep(max(0.0, due[k] - time.monotonic()))
            sent = due[k] if due is not None else time.monotonic()
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            out.append((status, time.monotonic() - sent))
    finally:
        writer.close()


def http_load(port: int, addresses: list[str], *, rate: float | None) -> tuple[list[tuple[int, float]], float]:
    """(status, latency) per grant from CLIENTS connections, and the seconds it took."""
    bodies = [json.dumps({"acl": "staff", "ip": a, "user": f"u{i}", "ttl": 3600}).encode()
              for i, a in enumerate(addresses)]
    out: list[tuple[int, float]] = []

    async def run_all() -> float:
        t0 = time.monotonic() + 0.1
        due = [t0 + i / rate for i in range(len(bodies))] if rate else None
        await asyncio.gather(*(
            _connection(port, bodies[k::CLIENTS], due[k::CLIENTS] if due else None, out) for k in range(CLIENTS)
        ))
        return time.monotonic() - t0

    return out, asyncio.run(run_all())


def http_figures(workdir: Path, count: int) -> dict[str, Any]:
    addresses = scattered(2 * count)
    with emulated_tenant(workdir) as t, agent_process(t, workdir, max_ranges=2000, max_locations=50) as agent:
        port = int(agent.url.rsplit(":", 1)[1])
        cpu = agent.cpu_seconds()
        fast, seconds = http_load(port, addresses[:count], rate=None)
        cpu = agent.cpu_seconds() - cpu
        paced, _ = http_load(port, addresses[count:], rate=1000.0)
    acked = sum(1 for status, _ in fast if status == 201)
    ms = [1000 * latency for status, latency in paced if status == 201]
    return {
        "grants_per_s": round(acked / seconds, 1),
        "acked": acked,
        "sent": count,
        "agent_cpu_ms_per_grant": round(1000 * cpu / count, 3),
        "ack_p50_ms_at_1000": percentile(ms, 0.5),
        "ack_p99_ms_at_1000": percentile(ms, 0.99),
        "acked_at_1000": len(ms),
    }


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
    lines.append(
        f"  {'sqlite_http':20s} {v['grants_per_s']:8.1f} grants/s ({v['acked']}/{v['sent']} acked, keep-alive, "
        f"{v['agent_cpu_ms_per_grant']} ms agent CPU each); at 1,000/s: ack p50 {v['ack_p50_ms_at_1000']} ms, "
        f"p99 {v['ack_p99_ms_at_1000']} ms"
    )
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
