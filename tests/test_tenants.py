"""One agent, several tenants of one emulator: a failing tenant never holds up another.

Each tenant has its own Graph client, token cache, pacer, lease and writer thread
(docs/design.md#tenants). Assertions count the emulator's writes and requests per
tenant; waits are generous safety limits only.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from entragate.agent import Agent
from entragate.config import Secret
from entragate.emulator import Emulator, EmulatorFault
from entragate.emulator.proxy import ConnectProxy
from entragate.errors import Code
from tests.helpers.sync import PLACEHOLDER, expand, public_addresses, remote_ranges, wait_for
from tests.helpers.tenants import multi_config, new_app, tenant_config

BURST = 20


def last_codes(agent: Agent, acl: str) -> set[str | None]:
    locations = agent.status()["acls"][acl]["locations"]
    return {(loc["last_error"] or {}).get("code") for loc in locations}


def burst(agent: Agent, acl: str, second: int) -> set[str]:
    addresses = public_addresses(BURST, second)
    for i, address in enumerate(addresses):
        agent.service.grant(acl, address, f"{acl}-user{i}", ttl=3600, source="test")
    return {f"{a}/32" for a in addresses}


@pytest.mark.parametrize("fault", ["secret", "tls", "throttle", "hang"])
def test_a_failing_tenant_never_holds_up_the_others(emu: Emulator, app: Any, tmp_path: Path, fault: str) -> None:
    other, sick = new_app(emu), new_app(emu)
    expected = {"secret": Code.ENTRA001, "tls": Code.ENTRA003, "throttle": Code.ENTRA005, "hang": Code.ENTRA004}
    for tid, name in ((app.tenant_id, "Entragate staff"), (other.tenant_id, "Entragate other"),
                      (sick.tenant_id, "Entragate sick")):
        emu.create_location(tid, name, [PLACEHOLDER])
    with contextlib.ExitStack() as stack:
        sick_overrides: dict[str, Any] = {"rate": 1.0}
        if fault == "secret":
            sick_overrides["client_secret"] = Secret("Wr0ng~secret.Value_0123456789abcdEFgh")
        elif fault == "tls":  # this tenant's path goes through a TLS-inspecting proxy
            mapping = {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}
            proxy = stack.enter_context(ConnectProxy("intercept", connect_to=mapping, upstream_ca=emu.ca_bundle_path))
            sick_overrides.update(proxy=proxy.url, connect_to=())
        elif fault == "throttle":
            emu.set_fault(EmulatorFault("throttle", host="graph", tenant=sick.tenant_id))
        else:
            emu.set_fault(EmulatorFault("hang", host="graph", tenant=sick.tenant_id))
        config = multi_config(
            emu, app, tmp_path,
            {"other": tenant_config(emu, "other", other, rate=1.0),
             "sick": tenant_config(emu, "sick", sick, **sick_overrides)},
            agent={"rate": 1.0}, timeout=2.0,
        )
        agent = Agent(config, parked_retry=0.5, backoff_cap=2.0)
        stack.callback(agent.stop)
        agent.start()
        healthy = {"staff": app.tenant_id, "other": other.tenant_id}
        assert wait_for(lambda: agent.tenants["default"].engine.ready() and agent.tenants["other"].engine.ready(), 30)
        before = {acl: len(emu.writes(tid)) for acl, tid in healthy.items()}

        wanted = {acl: burst(agent, acl, second) for second, acl in enumerate(["staff", "other", "sick"], start=2)}
        for acl, tid in healthy.items():
            location = "Entragate staff" if acl == "staff" else f"Entragate {acl}"
            assert wait_for(lambda a=acl, t=tid, n=location: (remote_ranges(emu, t, n) or set()) >= wanted[a], 30)
        # one burst, one budget each: at most two PATCHes per healthy tenant, however the sick one fails
        for acl, tid in healthy.items():
            assert len(emu.writes(tid)) - before[acl] <= 2, emu.writes(tid)[before[acl]:]
        # the sick tenant's grants are accepted and kept; its writer reports its own failure
        assert {g.cidr for g in agent.store.active("sick")} == wanted["sick"]
        assert wait_for(lambda: expected[fault] in last_codes(agent, "sick"), 30), agent.status()["acls"]["sick"]
        assert emu.writes(sick.tenant_id) == []
        status = agent.status()
        assert status["tenants"]["sick"]["failing"] == ["sick"]
        assert status["tenants"]["other"]["failing"] == [] and status["tenants"]["default"]["failing"] == []
        assert status["role"] == "writer" and agent.ready()  # a failing tenant does not take the API out


def test_global_and_usgov_tenants_each_write_their_own_location(
    fresh_emulator: Emulator, tmp_path: Path
) -> None:
    emu = fresh_emulator
    glob, gov = new_app(emu, "global"), new_app(emu, "usgov")
    config = multi_config(emu, glob, tmp_path, {"gov": tenant_config(emu, "gov", gov)}, agent={"rate": 5.0})
    assert config.tenant("gov").graph_host == "graph.microsoft.us"
    with Agent(config, parked_retry=0.5, backoff_cap=2.0) as agent:
        assert wait_for(agent.ready, 30)
        assert set(agent.tenants) == {"default", "gov"} and agent.tenants["gov"].pacer is not agent.pacer
        agent.service.grant("staff", "81.2.69.10", "alice", ttl=3600)
        agent.service.grant("gov", "81.2.69.20", "bob", ttl=3600)
        assert wait_for(lambda: remote_ranges(emu, glob.tenant_id, "Entragate staff") == {"81.2.69.10/32"}, 30)
        assert wait_for(lambda: remote_ranges(emu, gov.tenant_id, "Entragate gov") == {"81.2.69.20/32"}, 30)
        # each tenant's location only in its own tenant, written on its own cloud's Graph host with its own token
        assert remote_ranges(emu, glob.tenant_id, "Entragate gov") is None
        assert remote_ranges(emu, gov.tenant_id, "Entragate staff") is None
        hosts = {(r.tenant, r.host) for r in emu.requests if r.operation and r.method == "PATCH"}
        hosts |= {(r.tenant, r.host) for r in emu.requests if r.operation == "POST namedLocations"}
        assert hosts <= {(glob.tenant_id, "graph.microsoft.com"), (gov.tenant_id, "graph.microsoft.us")}, hosts
        logins = {(r.tenant, r.host) for r in emu.requests if r.host.startswith("login")}
        assert (gov.tenant_id, "login.microsoftonline.us") in logins
        assert (glob.tenant_id, "login.microsoftonline.com") in logins

        status = agent.status()
        assert status["tenants"]["gov"]["cloud"] == "usgov" and status["tenants"]["gov"]["tenant_id"] == gov.tenant_id
        assert status["acls"]["gov"]["tenant"] == "gov" and status["acls"]["staff"]["tenant"] == "default"
        metrics = agent.metrics.render().decode()
        assert 'entragate_writer{tenant="gov"} 1.0' in metrics and 'entragate_writer{tenant="default"} 1.0' in metrics

        # the usgov tenant's app registration is deleted: its writer fails, the global one goes on
        emu.delete_app(gov.tenant_id, gov.client_id)
        agent.service.grant("gov", "81.2.69.21", "bob", ttl=3600)
        assert wait_for(lambda: Code.ENTRA001 in last_codes(agent, "gov"), 30), json.dumps(agent.status()["acls"]["gov"])
        gov_writes = len(emu.writes(gov.tenant_id))
        agent.service.grant("staff", "81.2.69.11", "carol", ttl=3600)
        assert wait_for(lambda: remote_ranges(emu, glob.tenant_id, "Entragate staff") == {"81.2.69.10/32", "81.2.69.11/32"}, 30)
        assert len(emu.writes(gov.tenant_id)) == gov_writes
        assert {g.cidr for g in agent.store.active("gov")} == {"81.2.69.20/32", "81.2.69.21/32"}
        assert expand(["81.2.69.20/32"]) <= (remote_ranges(emu, gov.tenant_id, "Entragate gov") or set())


def test_a_single_tenant_store_needs_no_migration(emu: Emulator, app: Any, tmp_path: Path) -> None:
    """Grants name their ACL, not a tenant: a store written before tenants were configured
    serves a multi-tenant agent as it is, every grant in its ACL's tenant."""
    from datetime import UTC, datetime, timedelta

    from entragate.grants import open_store

    other = new_app(emu)
    config = multi_config(emu, app, tmp_path, {"other": tenant_config(emu, "other", other)})
    with open_store(config.agent.store) as old:  # as a single-tenant agent left it
        for i in range(3):
            old.add("staff", f"user{i}", f"81.2.69.{10 + i}/32", datetime.now(UTC) + timedelta(hours=1))
    with Agent(config, parked_retry=0.5, backoff_cap=2.0) as agent:
        wanted = {f"81.2.69.{10 + i}/32" for i in range(3)}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id, "Entragate staff") == wanted, 30)
        assert len(agent.store.active("staff")) == 3
        assert remote_ranges(emu, other.tenant_id, "Entragate staff") is None
