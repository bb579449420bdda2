"""``make soak``: the agent under a cycle of faults, with the access it gave checked.

The agent runs as its own process on a real PostgreSQL store against the emulated
tenant (1 request/second, 30 ms Graph latency, access tokens refetched every few
seconds). A driver grants, renews and revokes at about 20 operations/s through the
HTTP API, with expiries of a few seconds, while the emulator goes through 5xx, resets,
hangs, a 429 storm, the token endpoint's 503, read-after-write lag, TLS interception,
a PostgreSQL restart and ``kill -9`` of the agent (then restarted). Checked
(``soak_check.py``): no write the emulator applied ever held an address outside what
was granted; nothing reached the emulator through intercepted TLS; after the last
fault, Entra converges (nothing acknowledged and active missing, nothing ended still
there) within 10 s; after the last expiry, the locations hold nothing.

    .venv/bin/python bench/soak.py [--seconds 180] [--faults graph_5xx,kill9] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from common import auth, emit, emulated_tenant, scattered, wait_until
from entragate.emulator import EmulatorFault
from soak_check import Ledger, Op, check_writes, compare, count_by, parse_time
from soak_faults import CYCLE, AgentRunner, Phase, make_faults

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "192.0.2.255/32"
CONVERGE_LIMIT = 10.0  # seconds after the last fault (issue 10's acceptance)
KEEP_LOG = os.environ.get("SOAK_AGENT_LOG")  # copy the agent's log there (a failed soak's evidence)


class Driver:
    """Grants, renewals and revokes at ``rate`` per second; one operation per address at a time."""

    def __init__(self, url: str, ledger: Ledger, *, rate: float, ttl: tuple[int, int], addresses: int, seed: int) -> None:
        self.url, self.ledger, self.rate, self.ttl = url, ledger, rate, ttl
        self.pool = [f"{a}/32" for a in scattered(addresses, offset=5000)]
        self.rng = random.Random(seed)
        self.held: dict[str, float] = {}  # cidr -> the expiry the driver believes
        self.busy: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.skipped = 0
        self.local = threading.local()
        self.thread = threading.Thread(target=self._schedule, name="soak-driver", daemon=True)

    def _schedule(self) -> None:
        with ThreadPoolExecutor(max_workers=24) as pool:
            start, k = time.monotonic(), 0
            while not self.stop.is_set():
                k += 1
                delay = start + k / self.rate - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    break
                op = self._next()
                if op is None:
                    self.skipped += 1
                else:
                    pool.submit(self._send, op)

    def _next(self) -> Op | None:
        now = time.time()
        with self.lock:
            if len(self.busy) >= 20:
                return None  # the agent is not answering: do not pile up requests
            cidr = self.rng.choice([c for c in self.pool if c not in self.busy])
            self.busy.add(cidr)
            held = self.held.get(cidr, 0.0) > now
            kind = ("renew" if self.rng.random() < 0.5 else "revoke") if held else "grant"
            ttl = self.rng.randint(*self.ttl)
        return Op(kind, cidr, f"u{self.pool.index(cidr)}", ttl, now)

    def _send(self, op: Op) -> None:
        session = getattr(self.local, "session", None) or requests.Session()
        self.local.session = session
        ip = op.cidr.split("/")[0]
        try:
            if op.kind == "revoke":
                r = session.delete(f"{self.url}/v1/grants", json={"acl": "staff", "ip": ip, "user": op.user},
                                   headers=auth(), timeout=10)
            else:
                r = session.post(f"{self.url}/v1/grants", json={"acl": "staff", "ip": ip, "user": op.user, "ttl": op.ttl},
                                 headers=auth(), timeout=10)
            op.status = r.status_code
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if op.status == 201:
                op.expires_at = parse_time(body["expires_at"])
            elif op.status != 200:
                op.code = str((body.get("error") or {}).get("code", "")) or None
        except (requests.RequestException, ValueError) as exc:
            op.code = type(exc).__name__
        op.answered = time.time()
        self.ledger.add(op)
        with self.lock:
            self.busy.discard(op.cidr)
            if op.status == 201 and op.expires_at is not None:
                self.held[op.cidr] = op.expires_at
            elif op.kind == "revoke" and op.status == 200:
                self.held.pop(op.cidr, None)


def held_now(emu: Any, tenant: str) -> set[str]:
    return {r["cidrAddress"] for loc in emu.locations(tenant) for r in loc.get("ipRanges", [])} - {PLACEHOLDER}


def agent_events(log: Path) -> list[tuple[float, str]]:
    """(time, code or event) of each warning and error the agent logged."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("level") in ("warning", "error") and "timestamp" in event:
            found.append((parse_time(event["timestamp"]), str(event.get("code") or event.get("event"))))
    return found


def run_schedule(names: list[str], faults: dict[str, Any], seconds: float, driver: Driver) -> list[Phase]:
    """Each fault on (``hold``), then calm, over ``seconds``; the driver stops when the last fault ends."""
    slot = max(seconds / len(names), 4.0)
    count = max(1, round(seconds / slot))
    phases: list[Phase] = []
    for k in range(count):
        fault = faults[names[k % len(names)]]
        hold = min(fault.hold, slot / 2)
        phase = Phase(fault.name, time.time())
        phases.append(phase)
        fault.on()
        time.sleep(hold)
        fault.off()
        phase.end = time.time()
        if k + 1 < count:
            time.sleep(max(0.0, slot - hold))
    driver.stop.set()
    return phases


def run(seconds: float, names: list[str], *, rate: float = 20.0, ttl: tuple[int, int] = (4, 20),
        addresses: int = 250, seed: int = 7, pg: Any = None) -> dict[str, Any]:
    """The soak on ``pg`` (a durable one may be restarted: ``pg_restart``), or on its own server."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import postgres

    if pg is None:  # durable: an immediate stop must not take acknowledged commits with it
        with postgres.running_pg_server(durable=True) as server:
            return run(seconds, names, rate=rate, ttl=ttl, addresses=addresses, seed=seed, pg=server)
    store = pg.create_database("soak")
    restart = (lambda: postgres.stop_pg_server(pg), lambda: postgres.start_again(pg)) if pg.durable else None
    with tempfile.TemporaryDirectory(prefix="entragate-soak-") as tmp, emulated_tenant(Path(tmp)) as t:
        t.emu.token_lifetime = 303  # msal refetches tokens within 5 minutes of expiry: every ~3 s
        agent = AgentRunner(t.emu, t.app, Path(tmp), store)
        agent.start()
        try:
            if not agent.wait_ready():
                raise RuntimeError(f"the agent did not become ready:\n{agent.log_path.read_text()[-3000:]}")

            def base() -> None:
                t.emu.set_fault(EmulatorFault(kind="latency", host="graph", seconds=0.030))

            faults = make_faults(t.emu, agent, restart, base)
            unknown = [n for n in names if n not in faults]
            if unknown:
                raise ValueError(f"unknown or unavailable faults {unknown}; known: {', '.join(faults)}")
            ledger = Ledger()
            driver = Driver(agent.url, ledger, rate=rate, ttl=ttl, addresses=addresses, seed=seed)
            started = time.time()
            driver.thread.start()
            phases = run_schedule(names, faults, seconds, driver)
            driver.thread.join(30)
            last_fault = phases[-1].end
            agent.wait_ready(30)
            converged = wait_until(lambda: compare(ledger, held_now(t.emu, t.tenant), time.time()).converged, 60)
            converged_at = time.time()
            verdict = compare(ledger, held_now(t.emu, t.tenant), converged_at)
            drain_by = ledger.last_expiry()
            drained = wait_until(lambda: not held_now(t.emu, t.tenant), max(0.0, drain_by - time.time()) + 30)
            drained_at = time.time()
        finally:
            exit_status = agent.stop()
            if KEEP_LOG:
                shutil.copy(agent.log_path, KEEP_LOG)
        writes = [(w.time, w.location_id, w.ranges) for w in t.emu.writes(t.tenant) if w.ranges is not None]
        requests_log = [r for r in t.emu.requests if r.tenant in (t.tenant, None)]
        events = agent_events(agent.log_path)
    checked, violations = check_writes(ledger, [(a, loc, list(r)) for a, loc, r in writes], {PLACEHOLDER})
    ops = ledger.all_ops()
    last_acked_expiry = max((op.expires_at for op in ops if op.expires_at is not None), default=drain_by)
    phase_rows = []
    for i, phase in enumerate(phases):
        until = phases[i + 1].start if i + 1 < len(phases) else converged_at
        in_phase = [op for op in ops if phase.start <= op.sent < until]
        after = [a for a, _, _ in writes if a >= phase.end]
        row: dict[str, Any] = {
            "fault": phase.name,
            "at_s": round(phase.start - started, 1),
            "held_s": round(phase.end - phase.start, 1),
            "ops": len(in_phase),
            "acked": sum(1 for op in in_phase if op.status in (200, 201)),
            "api_errors": count_by(f"{op.status} {op.code}" for op in in_phase if op.status not in (200, 201)),
            "agent_errors": count_by(code for at, code in events if phase.start <= at < until),
            "writes": sum(1 for a, _, _ in writes if phase.start <= a < until),
            "first_write_after_s": round(min(after) - phase.end, 2) if after else None,
            "violations": sum(1 for v in violations if phase.start <= v.time < until),
        }
        if phase.name == "tls_intercepted":
            row["requests_through_interception"] = sum(1 for r in requests_log if phase.start + 0.5 <= r.time <= phase.end)
        phase_rows.append(row)
    first_per_write = list({v.time: v for v in violations[::-1]}.values())[::-1]  # each bad write's first
    intercepted = sum(r.get("requests_through_interception", 0) for r in phase_rows)
    converged_s = round(converged_at - last_fault, 2) if converged else None
    report: dict[str, Any] = {
        "seconds": seconds,
        "faults": names,
        "started": started,
        "ops": len(ops),
        "ops_per_s": round(len(ops) / max(1e-9, last_fault - started), 1),
        "by_kind": count_by(f"{op.kind} {op.status}" for op in ops),
        "skipped_ops": driver.skipped,
        "agent_starts": agent.starts,
        "agent_exit": exit_status,
        "graph_writes_checked": checked,
        "write_violations": len(violations),
        "bad_writes": len({v.time for v in violations}),
        "violations_put_in": sum(1 for v in violations if not v.kept),  # the rest were left in
        "write_violation_examples": [vars(v) for v in first_per_write[:10]],
        "requests_through_interception": intercepted,
        "missing": len(verdict.missing),
        "extra": len(verdict.extra),
        "missing_examples": verdict.missing[:10],
        "extra_examples": verdict.extra[:10],
        "converged_after_last_fault_s": converged_s,
        "drained_after_last_expiry_s": round(drained_at - last_acked_expiry, 2) if drained else None,
        "slowest_first_write_after_fault_s": max((r["first_write_after_s"] or 0.0 for r in phase_rows), default=None),
        "phases": phase_rows,
    }
    report["ok"] = bool(
        not violations and not intercepted and verdict.converged and converged_s is not None
        and converged_s <= CONVERGE_LIMIT and drained
    )
    return report


def table(r: dict[str, Any]) -> list[str]:
    lines = [
        f"fault soak: {r['seconds']:g} s, {r['ops']} operations ({r['ops_per_s']}/s), agent started {r['agent_starts']}x",
        f"  {'fault':18s} {'at s':>6s} {'held':>5s} {'ops':>5s} {'acked':>6s} {'writes':>6s} {'1st write':>9s}  errors (API | agent)",
    ]
    for p in r["phases"]:
        api = ", ".join(f"{k}: {v}" for k, v in p["api_errors"].items()) or "-"
        agent = ", ".join(f"{k}: {v}" for k, v in p["agent_errors"].items()) or "-"
        first = "-" if p["first_write_after_s"] is None else f"{p['first_write_after_s']:.2f}"
        lines.append(f"  {p['fault']:18s} {p['at_s']:6.1f} {p['held_s']:5.1f} {p['ops']:5d} {p['acked']:6d} "
                     f"{p['writes']:6d} {first:>9s} {p['violations']:4d}  {api} | {agent}")
    lines += [
        f"  writes checked {r['graph_writes_checked']}, violations {r['write_violations']} in {r['bad_writes']} "
        f"writes ({r['violations_put_in']} put in, the rest left in); "
        f"requests through intercepted TLS {r['requests_through_interception']}",
        f"  {r['missing']} missing, {r['extra']} extra; converged {r['converged_after_last_fault_s']} s after the "
        f"last fault (limit {CONVERGE_LIMIT:g}); empty {r['drained_after_last_expiry_s']} s after the last expiry",
        f"  {'OK' if r['ok'] else 'FAILED'}",
    ]
    for v in r["write_violation_examples"]:
        how = "left in" if v["kept"] else "put in"
        lines.append(f"    violation: {v['cidr']} {how} by a write at {v['time'] - r['started']:.2f} s: {v['why']}")
    if r["missing_examples"] or r["extra_examples"]:
        lines.append(f"    missing {r['missing_examples']}, extra {r['extra_examples']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--faults", default=",".join(CYCLE), help="comma-separated, in order (default: all)")
    parser.add_argument("--rate", type=float, default=20.0, help="operations per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.seconds, [n for n in args.faults.split(",") if n], rate=args.rate, seed=args.seed)
    if args.json:
        emit(report, True, table)
    else:
        emit(report, False, table)
        print(json.dumps({k: v for k, v in report.items() if k != "phases"}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
