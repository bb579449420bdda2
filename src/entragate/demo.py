"""``entragate demo``: the whole story against the embedded emulated tenant.

Nothing here talks to Microsoft: the emulator serves Microsoft's real host names on
loopback (through ``connect_to``) with Microsoft's 1 request/second throttle on.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from entragate.api.token import new_api_token
from entragate.config import AclConfig, AgentConfig, Config, ConnectTo, Secret
from entragate.errors import EntraError
from entragate.logs import configure_logging
from entragate.sync.ranges import RangeSet

LOCATION = "Entragate staff"


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def demo_config(emu: Any, app: Any, workdir: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "tenant_id": app.tenant_id,
        "client_id": app.client_id,
        "client_secret": Secret(app.secret),
        "ca_bundle": Path(emu.ca_bundle_path),
        "ca_bundle_origin": "ca_bundle",
        "expected_roots": Path(emu.ca_bundle_path),
        "connect_to": tuple(ConnectTo.parse(e) for e in emu.connect_to()),
        "timeout": 5.0,
        "acls": {"staff": AclConfig(name="staff", location=LOCATION)},
        "agent": AgentConfig(
            listen="127.0.0.1:0",
            api_token=Secret(new_api_token()),  # a fresh one each run, like a real agent's
            store=f"sqlite:///{workdir / 'grants.db'}",
            rate=1.0,
            verify_interval=4.0,
        ),
    }
    values.update(overrides)
    return Config(**values)


def _ranges(emu: Any, tenant: str) -> list[str]:
    for location in emu.locations(tenant):
        if location.get("displayName") == LOCATION:
            return [r["cidrAddress"] for r in location.get("ipRanges", [])]
    return []


def _visible(emu: Any, tenant: str, cidrs: set[str]) -> bool:
    current = RangeSet(_ranges(emu, tenant))
    return all(current.covers(cidr) for cidr in cidrs)


def run_demo(console: Console | None = None) -> int:
    from entragate.agent import Agent
    from entragate.emulator import Emulator
    from entragate.graph import GraphClient

    console = console or Console()
    configure_logging(json_lines=True, stream=sys.stderr if os.environ.get("ENTRAGATE_DEMO_LOG") else open(os.devnull, "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="entragate-demo-") as tmp:
        workdir = Path(tmp)
        emu = Emulator(state_dir=workdir / "emulator", rate_limit=1.0)
        emu.start()
        try:
            tenant = emu.add_tenant()
            app = emu.add_app(tenant, secret="Demo~Secret.Value-0123456789abcdefGHIJ")
            config = demo_config(emu, app, workdir)
            console.rule("[bold]entragate demo[/]: an emulated Entra tenant on loopback")
            console.print(
                f"Emulator on 127.0.0.1:{emu.port} serving login.microsoftonline.com and "
                f"graph.microsoft.com (connect_to), trust anchored in {emu.ca_bundle_path}; "
                "Conditional Access throttle: 1 request/second/tenant, 429 without Retry-After."
            )

            # 1. The foundation: token + Graph named locations
            graph = GraphClient(config)
            location = graph.create_location(LOCATION, ["192.0.2.255/32"])
            console.print(f"\n[bold]1. Graph client[/]: created IP named location {LOCATION!r} ({location.id})")

            # 2. A burst of grants through the agent's API
            with Agent(config) as agent:
                headers = {"Authorization": f"Bearer {agent.token}"}
                _wait(agent.engine.ready, 10)
                users = [f"user{i:02d}@contoso.example" for i in range(40)]
                addresses = [f"81.2.{69 + i // 200}.{10 + i % 200}" for i in range(len(users))]
                emu.reset_counters()
                writes_before = len(emu.writes(tenant))
                started = time.monotonic()
                with requests.Session() as http:
                    for user, address in zip(users, addresses, strict=True):
                        response = http.post(
                            f"{agent.api_url}/v1/grants",
                            json={"acl": "staff", "ip": address, "user": user, "ttl": 3600},
                            headers=headers,
                            timeout=10,
                        )
                        response.raise_for_status()
                acked = time.monotonic() - started
                wanted = {f"{a}/32" for a in addresses}
                _wait(lambda: _visible(emu, tenant, wanted), 15)
                visible = time.monotonic() - started
                patches = len(emu.writes(tenant)) - writes_before
                console.print(
                    f"\n[bold]2. Burst[/]: {len(users)} users granted in {acked:.2f} s; all "
                    f"{len(wanted)} addresses visible in Entra after {visible:.2f} s "
                    f"with {patches} PATCH request(s) (a per-event agent needs {len(users)})."
                )

                # 3. Expiry
                short = "81.2.70.250"
                requests.post(
                    f"{agent.api_url}/v1/grants",
                    json={"acl": "staff", "ip": short, "user": "contractor", "ttl": 3},
                    headers=headers,
                    timeout=10,
                ).raise_for_status()
                _wait(lambda: _visible(emu, tenant, {f"{short}/32"}), 10)
                console.print(f"\n[bold]3. Expiry[/]: {short} granted for 3 s, now in the location")
                gone = _wait(lambda: not _visible(emu, tenant, {f"{short}/32"}), 15)
                console.print(f"   ... and {'removed at expiry' if gone else '[red]still present[/]'}")

                # 4. Drift repair: somebody edits the location by hand in the portal
                stray = "81.2.71.66/32"
                current = _ranges(emu, tenant)
                emu.edit_location(tenant, location.id, sorted(set(current) | {stray}))
                console.print(f"\n[bold]4. Hand edit[/]: {stray} added in the portal by hand")
                repaired = _wait(lambda: not _visible(emu, tenant, {stray}), 15)
                console.print(
                    "   ... " + ("repaired by the next verification" if repaired else "[red]not repaired[/]")
                )

                status = requests.get(f"{agent.api_url}/v1/status", headers=headers, timeout=10).json()
                _print_status(console, status)

            # 5. A failure, with its code and next step
            expired_app = emu.add_app(tenant, secret="Old~Secret.Value-abcdefghijklmnop0123", secret_expired=True)
            try:
                GraphClient(demo_config(emu, expired_app, workdir)).list_locations()
            except EntraError as error:
                console.print(f"\n[bold]5. A failure[/]: an expired client secret\n   [red]{error}[/]")

            # 6. The doctor names a TLS-inspecting proxy, then a clean run with ca_bundle
            _doctor_story(console, emu, app, workdir)
            # 7. The doctor's policies check: a location no policy uses changes nothing
            _policy_story(console, emu, app, workdir)
            # 8. `entragate why`: the grant holds IPv4, the browser signed in over IPv6
            _why_story(console, emu, app, workdir)
        finally:
            emu.stop()
    console.rule("[bold green]demo complete[/]")
    return 0


def _print_status(console: Console, status: dict[str, Any]) -> None:
    table = Table(title="entragate status", show_lines=False)
    for column in ("acl", "location", "grants", "desired", "applied", "in sync", "last error"):
        table.add_column(column)
    for name, acl in status.get("acls", {}).items():
        for location in acl["locations"]:
            error = location.get("last_error")
            table.add_row(
                name,
                location["name"],
                str(acl["grants"]),
                str(location["desired"]),
                str(location["applied"]),
                "yes" if location["in_sync"] else "no",
                error["code"] if error else "-",
            )
    console.print(table)


def _doctor_story(console: Console, emu: Any, app: Any, workdir: Path) -> None:
    from entragate.doctor.render import render as render_report
    from entragate.doctor.runner import run_doctor

    emu.set_tls_scenario("intercepted", issuer_cn="Zscaler Root CA", issuer_o="Zscaler Inc.")
    try:
        config = demo_config(emu, app, workdir)
        console.print("\n[bold]6. Doctor[/]: traffic now passes a TLS-inspecting proxy")
        report = run_doctor(config, env={})
        render_report(report, console)
        tls = next((c for c in report.to_json()["checks"] if c["id"] == "tls"), None)
        if tls:
            console.print("   cause ids: " + json.dumps([c["id"] for c in tls["causes"]]) + ", vendor: "
                          + json.dumps([c.get("vendor") for c in tls["causes"]]))
        bundle = workdir / "corp-bundle.pem"
        bundle.write_bytes(Path(emu.scenario_ca_path).read_bytes() + Path(emu.ca_bundle_path).read_bytes())
        console.print(f"\n   With the proxy's root supplied as ca_bundle = {bundle}:")
        fixed = demo_config(emu, app, workdir, ca_bundle=bundle)
        render_report(run_doctor(fixed, env={}), console)
    finally:
        emu.set_tls_scenario(None)


def _policy_story(console: Console, emu: Any, app: Any, workdir: Path) -> None:
    from entragate.doctor.runner import run_doctor

    def show() -> None:
        check = run_doctor(demo_config(emu, app, workdir), env={}).check("policies")
        colour = {"pass": "green", "warn": "yellow"}.get(check.status, "red")
        console.print(f"   policies: [{colour}]{check.status}[/] {check.summary}")

    console.print("\n[bold]7. Conditional Access[/]: no policy uses the location yet")
    show()
    location_id = next(loc["id"] for loc in emu.locations(app.tenant_id) if loc["displayName"] == LOCATION)
    emu.add_policy(app.tenant_id, "entragate: block unless granted", exclude_locations=[location_id],
                   exclude_groups=["5d3f8a1e-0c4b-4e7a-9f2d-6b1c0e9a7d3f"])  # the break-glass group
    console.print("   ... after an enabled policy blocks sign-ins from outside it (break-glass excluded):")
    show()


def _why_story(console: Console, emu: Any, app: Any, workdir: Path) -> None:
    from entragate.cli.why import render
    from entragate.emulator import DEFAULT_ROLES
    from entragate.grants import open_store, utcnow
    from entragate.service import GrantService
    from entragate.why.gather import gather

    user, v4, v6 = "alice@contoso.example", "81.2.69.142", "2a00:1450:4001:80b::200e"
    emu.set_roles(app.tenant_id, app.client_id, [*DEFAULT_ROLES, "AuditLog.Read.All"])
    config = demo_config(emu, app, workdir)
    store = open_store(config.agent.store)
    try:
        GrantService(config, store).grant("staff", v4, user, ttl=3600, note="the SSO portal saw IPv4",
                                          now=utcnow() - timedelta(seconds=90))
        grants = store.active("staff")
    finally:
        store.close()
    policy = next(p for p in emu.policies(app.tenant_id) if p["displayName"].startswith("entragate"))
    emu.add_sign_in(app.tenant_id, user, v6, seconds_ago=30, error_code=53003,
                    policies=[{"id": policy["id"], "displayName": policy["displayName"], "result": "failure"}])
    console.print(f"\n[bold]8. entragate why {user}[/]: granted {v4}, yet her sign-in was blocked")
    render(gather(config, user, grants, "staff"), lambda line: console.print("   " + line, markup=False, highlight=False))
