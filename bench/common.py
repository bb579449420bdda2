"""What the benchmarks share: the emulated tenant, the agent as a process, open-loop
clients, and reading latencies from the emulator's write log.

Every benchmark prints a table, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from entragate.emulator import Emulator, EmulatorFault

LOCATION = "Bench staff"
TOKEN = "bench-Hq7Wz2Lp9Xc4Vn8Rb3Tk6Ym1Gd5Fs0Ja"  # strong enough: the agent refuses weak tokens
SECRET = "Bench~Secret.Value-0123456789abcdefGHIJ"


def scattered(n: int, *, offset: int = 0) -> list[str]:
    """Globally routable addresses that never collapse into wider ranges (as from many ISPs)."""
    return [f"{81 + (i + offset) // 62500}.{((i + offset) // 250) % 250}.{(i + offset) % 250}.1"
            for i in range(n)]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tenant:
    emu: Emulator
    tenant: str
    app: Any


@contextmanager
def emulated_tenant(workdir: Path, *, latency: float = 0.030) -> Iterator[Tenant]:
    """An emulator with Conditional Access's 1 request/second/tenant and Graph latency."""
    emu = Emulator(state_dir=workdir / "emulator", rate_limit=1.0)
    emu.start()
    try:
        emu.set_fault(EmulatorFault(kind="latency", host="graph", seconds=latency))
        tenant = emu.add_tenant()
        app = emu.add_app(tenant, secret=SECRET)
        yield Tenant(emu, tenant, app)
    finally:
        emu.stop()


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    url: str

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def status(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/v1/status", headers=auth(), timeout=10)
        return dict(response.json())


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def agent_process(
    t: Tenant, workdir: Path, *, max_ranges: int, max_locations: int, rate: float = 1.0
) -> Iterator[AgentProcess]:
    """``entragate run`` against the emulated tenant, ready (it has read Entra)."""
    port = free_port()
    connect_to = ", ".join(f'"{e}"' for e in t.emu.connect_to())
    config = workdir / "entragate.toml"
    config.write_text(f"""
tenant_id = "{t.app.tenant_id}"
client_id = "{t.app.client_id}"
client_secret = "{t.app.secret}"
ca_bundle = "{t.emu.ca_bundle_path}"
connect_to = [{connect_to}]
timeout = 10

[acl.staff]
location = "{LOCATION}"
create = true
max_ranges = {max_ranges}
max_locations = {max_locations}

[agent]
listen = "127.0.0.1:{port}"
api_token = "{TOKEN}"
store = "sqlite:///{workdir / 'grants.db'}"
rate = {rate:g}
verify_interval = 3600
""")
    with run_agent(config, workdir, port) as agent:
        yield agent


@contextmanager
def run_agent(config: Path, workdir: Path, port: int, *, ready_within: float = 60) -> Iterator[AgentProcess]:
    """``entragate run`` on ``config`` (listening on ``port``), once ``/readyz`` says 200;
    stopped with SIGTERM afterwards. Its log goes to ``workdir/agent.log``."""
    log = (workdir / "agent.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "entragate", "--config", str(config), "run"], stdout=log, stderr=log
    )
    agent = AgentProcess(process, f"http://127.0.0.1:{port}")
    try:
        def ready() -> bool:
            try:
                return requests.get(f"{agent.url}/readyz", headers=auth(), timeout=1).status_code == 200
            except requests.RequestException:
                return False

        if not wait_until(ready, ready_within, step=0.1):
            raise RuntimeError(f"the agent did not become ready; see {workdir / 'agent.log'}")
        yield agent
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Job:
    """Send ``body`` to ``method /v1/…`` at ``at`` (time.time())."""

    at: float
    method: str
    path: str
    body: dict[str, Any]


def _client_worker(url: str, jobs: list[Job], threads: int) -> list[tuple[int, float, float, dict[str, Any]]]:
    """One load-generating process, open loop: (status, scheduled, answered, body) per job."""
    local = threading.local()

    def send(job: Job) -> tuple[int, float, float, dict[str, Any]]:
        delay = job.at - time.time()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            response = session.request(job.method, f"{url}{job.path}", json=job.body, headers=auth(), timeout=60)
        except requests.RequestException:
            return 0, job.at, time.time(), {}
        answered = time.time()
        try:
            body = response.json()
        except ValueError:
            body = {}
        return response.status_code, job.at, answered, body if isinstance(body, dict) else {}

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(send, jobs))


def run_load(url: str, jobs: list[Job], *, processes: int = 2, threads: int = 8) -> list[tuple[int, float, float, dict[str, Any]]]:
    """Send every job from ``processes`` client processes; results in job order."""
    slices = [jobs[k::processes] for k in range(processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        parts = pool.starmap(_client_worker, [(url, part, threads) for part in slices])
    results: list[Any] = [None] * len(jobs)
    for k, part in enumerate(parts):
        for j, result in enumerate(part):
            results[k + j * processes] = result
    return results


# --------------------------------------------------------------------------- reading Entra


class WriteLog:
    """The emulator's successful writes of one tenant, per location, in time order.

    The benchmarks grant addresses that never collapse, so a grant is visible exactly
    when its /32 is in a location's list."""

    def __init__(self, t: Tenant) -> None:
        names = {loc["id"]: loc["displayName"] for loc in t.emu.locations(t.tenant)}
        self.by_location: dict[str, list[tuple[float, frozenset[str]]]] = {}
        self.first_seen: dict[str, dict[str, float]] = {}
        for w in sorted(t.emu.writes(t.tenant), key=lambda w: w.time):
            if w.ranges is None:
                continue
            name = names.get(w.location_id, w.location_id)
            held = frozenset(w.ranges)
            self.by_location.setdefault(name, []).append((w.time, held))
            seen = self.first_seen.setdefault(name, {})
            for cidr in held:
                seen.setdefault(cidr, w.time)
        self.writes = sum(len(v) for v in self.by_location.values())

    def visible(self, cidr: str) -> tuple[str, float] | None:
        """The first write that held ``cidr``: (location, time)."""
        found = [(at[cidr], name) for name, at in self.first_seen.items() if cidr in at]
        return None if not found else (min(found)[1], min(found)[0])

    def removed(self, location: str, cidr: str, since: float) -> float | None:
        """The first write of ``location`` at or after ``since`` that no longer holds ``cidr``."""
        for at, held in self.by_location.get(location, ()):
            if at >= since and cidr not in held:
                return at
        return None

    def holders(self, cidr: str) -> list[str]:
        """Every location that ever held ``cidr`` (more than one: the address moved)."""
        return [name for name, seen in self.first_seen.items() if cidr in seen]

    def every_range_written(self) -> set[str]:
        return {cidr for seen in self.first_seen.values() for cidr in seen}

    def locations_per_second(self) -> float:
        """Distinct locations written per second of writing (1.0: one location per slot)."""
        buckets: dict[int, set[str]] = {}
        for name, writes in self.by_location.items():
            for at, _ in writes:
                buckets.setdefault(int(at), set()).add(name)
        return round(max((len(v) for v in buckets.values()), default=0), 2)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def emit(report: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], list[str]]) -> None:
    if as_json:
        print(json.dumps(report))
    else:
        print("\n".join(table(report)))
