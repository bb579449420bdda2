"""Many-tenants benchmark: one agent, 20 tenants of one emulator, a 1,000-grant burst.

The emulator enforces Conditional Access's 1 request/second per tenant and adds 30 ms of
Graph latency. The burst's grants are spread evenly over the tenants and sent within
about a second through the agent's HTTP API (open loop). Per tenant it reads from the
emulator's write log the Graph writes the burst cost and each grant's time from its
request to the first write holding it (p99). Then the same with 5 tenants failing in
different ways (a wrong secret, a TLS-inspecting proxy on the path, throttled, hanging,
answering 503): the healthy tenants' p99 should not move (docs/design.md#tenants).

    .venv/bin/python bench/tenants.py            # table
    .venv/bin/python bench/tenants.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    SECRET,
    TOKEN,
    AgentProcess,
    Job,
    emit,
    free_port,
    percentile,
    run_agent,
    run_load,
    scattered,
    wait_until,
)
from entragate.emulator import Emulator, EmulatorFault
from entragate.emulator.proxy import ConnectProxy

PLACEHOLDER = "192.0.2.255/32"
FAILURES = ("secret", "tls", "throttle", "hang", "status")


def location(i: int) -> str:
    return f"Bench tenant {i:02d}"


@contextmanager
def agent(emu: Emulator, apps: list[Any], workdir: Path, failing: dict[int, str]) -> Iterator[AgentProcess]:
    """``entragate run`` serving every app's tenant; tenant ``i`` fails as ``failing[i]`` says."""
    port = free_port()
    connect_to = ", ".join(f'"{e}"' for e in emu.connect_to())
    mapping = {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}
    with contextlib.ExitStack() as stack:
        lines = [f'ca_bundle = "{emu.ca_bundle_path}"', f"connect_to = [{connect_to}]", "timeout = 10", "",
                 "[agent]", f'listen = "127.0.0.1:{port}"', f'api_token = "{TOKEN}"',
                 f"store = \"sqlite:///{workdir / 'grants.db'}\"", "rate = 1", "verify_interval = 3600", ""]
        for i, app in enumerate(apps):
            how = failing.get(i)
            secret = "Wr0ng~secret.Value_0123456789abcdEFgh" if how == "secret" else app.secret
            lines += [f"[tenant.t{i:02d}]", f'tenant_id = "{app.tenant_id}"', f'client_id = "{app.client_id}"',
                      f'client_secret = "{secret}"']
            if how == "tls":
                proxy = stack.enter_context(ConnectProxy("intercept", connect_to=mapping,
                                                         upstream_ca=emu.ca_bundle_path))
                lines += [f'proxy = "{proxy.url}"', "connect_to = []"]
            elif how == "throttle":
                emu.set_fault(EmulatorFault("throttle", host="graph", tenant=app.tenant_id))
            elif how == "hang":
                emu.set_fault(EmulatorFault("hang", host="graph", tenant=app.tenant_id))
            elif how == "status":
                emu.set_fault(EmulatorFault("status", host="graph", status=503, tenant=app.tenant_id))
            lines += ["", f"[acl.t{i:02d}]", f'location = "{location(i)}"', f'tenant = "t{i:02d}"', ""]
        config = workdir / "entragate.toml"
        config.write_text("\n".join(lines))
        config.chmod(0o600)
        with run_agent(config, workdir, port, ready_within=90) as running:
            yield running


def run(tenants: int, grants: int, failing: dict[int, str], latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="entragate-bench-tenants-") as tmp:
        workdir = Path(tmp)
        emu = Emulator(state_dir=workdir / "emulator", rate_limit=1.0)
        emu.start()
        try:
            emu.set_fault(EmulatorFault(kind="latency", host="graph", seconds=latency))
            apps = [emu.add_app(emu.add_tenant(), secret=SECRET) for _ in range(tenants)]
            for i, app in enumerate(apps):
                emu.create_location(app.tenant_id, location(i), [PLACEHOLDER])
            with agent(emu, apps, workdir, failing) as running:
                return measure(emu, apps, running, grants, failing)
        finally:
            emu.stop()


def measure(emu: Emulator, apps: list[Any], running: AgentProcess, grants: int,
            failing: dict[int, str]) -> dict[str, Any]:
    n = len(apps)
    ips = scattered(grants)
    start = time.time() + 1.0
    jobs = [Job(start + i / grants, "POST", "/v1/grants",
                {"acl": f"t{i % n:02d}", "ip": ip, "user": f"user{i}", "ttl": 3600}) for i, ip in enumerate(ips)]
    before = {app.tenant_id: len(emu.writes(app.tenant_id)) for app in apps}
    results = run_load(running.url, jobs)
    accepted = [(job, r) for job, r in zip(jobs, results, strict=True) if r[0] in (200, 201)]
    healthy = [i for i in range(n) if i not in failing]

    def all_visible() -> bool:
        held = {i: set().union(*(set(w.ranges or ()) for w in emu.writes(apps[i].tenant_id))) for i in healthy}
        return all(f"{job.body['ip']}/32" in held[int(job.body["acl"][1:])]
                   for job, _ in accepted if int(job.body["acl"][1:]) in held)

    wait_until(all_visible, 60, step=0.5)
    per_tenant: dict[str, dict[str, Any]] = {}
    for i, app in enumerate(apps):
        writes = sorted((w for w in emu.writes(app.tenant_id)[before[app.tenant_id]:] if w.ranges is not None),
                        key=lambda w: w.time)
        first: dict[str, float] = {}
        for w in writes:
            for cidr in w.ranges or ():
                first.setdefault(cidr, w.time)
        lags = [first[f"{job.body['ip']}/32"] - job.at for job, _ in accepted
                if job.body["acl"] == f"t{i:02d}" and f"{job.body['ip']}/32" in first]
        asked = sum(1 for job, _ in accepted if job.body["acl"] == f"t{i:02d}")
        per_tenant[f"t{i:02d}"] = {"failing": failing.get(i), "grants": asked, "visible": len(lags),
                                   "writes": len(writes), "p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99)}
    status = running.status()
    stored = sum(entry.get("grants", 0) for entry in status.get("acls", {}).values())
    healthy_rows = [per_tenant[f"t{i:02d}"] for i in healthy]
    return {
        "tenants": n, "grants": grants, "accepted": len(accepted), "stored": stored,
        "failing": {f"t{i:02d}": how for i, how in failing.items()},
        "healthy_max_writes": max(r["writes"] for r in healthy_rows),
        "healthy_max_p99": max((r["p99"] or 0.0) for r in healthy_rows),
        "healthy_all_visible": all(r["visible"] == r["grants"] for r in healthy_rows),
        "per_tenant": per_tenant,
    }


def table(report: dict[str, Any]) -> list[str]:
    lines = []
    for key in ("all_healthy", "with_failures"):
        r = report[key]
        lines.append(f"{key}: {r['tenants']} tenants, {r['accepted']}/{r['grants']} grants accepted, "
                     f"{r['stored']} stored; failing: {r['failing'] or 'none'}")
        lines.append(f"  {'tenant':8s} {'failing':9s} {'grants':>6s} {'visible':>7s} {'writes':>6s} "
                     f"{'p50 s':>6s} {'p99 s':>6s}")
        for name, row in r["per_tenant"].items():
            lines.append(f"  {name:8s} {row['failing'] or '-':9s} {row['grants']:6d} {row['visible']:7d} "
                         f"{row['writes']:6d} {row['p50'] if row['p50'] is not None else '-':>6} "
                         f"{row['p99'] if row['p99'] is not None else '-':>6}")
        lines.append(f"  healthy tenants: at most {r['healthy_max_writes']} write(s) each, "
                     f"p99 at most {r['healthy_max_p99']} s, all visible: {r['healthy_all_visible']}; "
                     f"p99 of each run: {r.get('p99_of_each_run')}")
    lines.append(f"healthy p99 with failures / without: {report['p99_ratio']} (goal: within 10 %)")
    return lines


def median_run(repeat: int, tenants: int, grants: int, failing: dict[int, str], latency: float) -> dict[str, Any]:
    """``repeat`` runs; the one whose healthy p99 is the median, with every run's p99."""
    runs = sorted((run(tenants, grants, failing, latency) for _ in range(max(1, repeat))),
                  key=lambda r: r["healthy_max_p99"])
    chosen = runs[len(runs) // 2]
    chosen["p99_of_each_run"] = [r["healthy_max_p99"] for r in runs]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.030)
    parser.add_argument("--failures", default=",".join(FAILURES),
                        help=f"which ways the failing tenants fail (default {','.join(FAILURES)})")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each scenario; the one with the median p99 is reported (2 shared "
                        "cores: one run's p99 varies by a third)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ways = [w for w in args.failures.split(",") if w]
    unknown = sorted(set(ways) - set(FAILURES))
    if unknown:
        parser.error(f"--failures: unknown {', '.join(unknown)} (choose from {', '.join(FAILURES)})")
    if len(ways) >= args.tenants:
        parser.error(f"--tenants {args.tenants}: at least one more than the {len(ways)} failing")
    failing = {args.tenants - 1 - k: how for k, how in enumerate(ways)}
    report: dict[str, Any] = {
        "all_healthy": median_run(args.repeat, args.tenants, args.grants, {}, args.latency),
        "with_failures": median_run(args.repeat, args.tenants, args.grants, failing, args.latency),
    }
    healthy = [f"t{i:02d}" for i in range(args.tenants) if i not in failing]
    base = max(report["all_healthy"]["per_tenant"][t]["p99"] or 0.0 for t in healthy)
    worse = max(report["with_failures"]["per_tenant"][t]["p99"] or 0.0 for t in healthy)
    report["p99_ratio"] = round(worse / base, 3) if base else None
    emit(report, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
