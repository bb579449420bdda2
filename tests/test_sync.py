"""The agent against the emulated tenant with Microsoft's 1 request/second/tenant throttle.

Assertions count requests from the emulator's logs, never wall-clock time; waits
are generous safety timeouts only.
"""

from __future__ import annotations

import ast
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import entragate.sync
from entragate.agent import Agent
from entragate.config import AclConfig, Config
from entragate.emulator import Emulator, EmulatorFault
from entragate.errors import Code
from tests.helpers.config import make_config
from tests.helpers.sync import (
    LOCATION,
    PLACEHOLDER,
    expand,
    public_addresses,
    remote_ranges,
    wait_for,
)


@pytest.fixture
def throttled(emu: Emulator) -> Emulator:
    emu.rate_limit = 1.0
    return emu


def start_agent(emu: Emulator, app: Any, tmp_path: Path, **overrides: Any) -> Agent:
    overrides_cap = overrides.pop("backoff_cap", 32.0)
    config = make_config(emu, app, tmp_path, agent={"rate": 1.0, **overrides.pop("agent", {})}, **overrides)
    agent = Agent(config, parked_retry=0.5, backoff_cap=overrides_cap)
    agent.start()
    assert wait_for(agent.engine.ready, 30)
    return agent


def test_burst_of_500_users_needs_only_a_handful_of_patches(throttled: Emulator, app: Any, tmp_path: Path) -> None:
    emu = throttled
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    agent = start_agent(emu, app, tmp_path)
    try:
        addresses = public_addresses(500)
        writes_before = len(emu.writes(app.tenant_id))

        def grant(i: int) -> None:
            agent.service.grant("staff", addresses[i], f"user{i:03d}", ttl=3600, source="test")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(grant, range(500)))
        wanted = {f"{a}/32" for a in addresses}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted, 90)
        patches = [w for w in emu.writes(app.tenant_id)[writes_before:] if w.method == "PATCH"]
        assert 1 <= len(patches) <= 8, len(patches)
        # nothing was ever written that nobody granted
        for write in patches:
            assert expand(write.ranges) <= wanted | {PLACEHOLDER}
    finally:
        agent.stop()


def test_expiry_removes_the_address(throttled: Emulator, app: Any, tmp_path: Path) -> None:
    emu = throttled
    agent = start_agent(emu, app, tmp_path)
    try:
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=2, source="test")
        agent.service.grant("staff", "81.2.69.143", "bob", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.143/32"})
        assert [g.user for g in agent.store.active("staff")] == ["bob"]
    finally:
        agent.stop()


def test_shared_address_stays_until_its_last_holder_is_revoked(throttled: Emulator, app: Any, tmp_path: Path) -> None:
    emu = throttled
    agent = start_agent(emu, app, tmp_path)
    try:
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=3600, source="test")
        agent.service.grant("staff", "81.2.69.142", "bob", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"})
        assert agent.service.revoke("staff", "81.2.69.142", user="alice") == 1
        writes = len(emu.writes(app.tenant_id))
        agent.engine.step()  # make the writer look now; it must decide nothing changes
        assert remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"}
        assert len(emu.writes(app.tenant_id)) == writes
        assert agent.service.revoke("staff", "81.2.69.142", user="bob") == 1
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {PLACEHOLDER})
        assert agent.engine.status()["acls"]["staff"]["empty"] is True
    finally:
        agent.stop()


def test_hand_edit_in_the_portal_is_repaired(throttled: Emulator, app: Any, tmp_path: Path) -> None:
    emu = throttled
    agent = start_agent(emu, app, tmp_path, agent={"verify_interval": 1.0})
    try:
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"})
        location_id = next(loc["id"] for loc in emu.locations(app.tenant_id) if loc["displayName"] == LOCATION)
        emu.edit_location(app.tenant_id, location_id, ["81.2.69.142/32", "81.2.99.99/32"])
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"})
    finally:
        agent.stop()


def test_storm_of_429s_without_retry_after_converges(emu: Emulator, app: Any, tmp_path: Path) -> None:
    agent = start_agent(emu, app, tmp_path, agent={"rate": 20.0}, backoff_cap=2.0)
    try:
        emu.set_fault(EmulatorFault(kind="throttle", host="graph", count=6))
        addresses = public_addresses(30, second=3)
        for i, address in enumerate(addresses):
            agent.service.grant("staff", address, f"user{i}", ttl=3600, source="test")
        wanted = {f"{a}/32" for a in addresses}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted, 120)
        assert emu.counters.get("429", 0) >= 6
        assert len(agent.store.active("staff")) == 30
        assert agent.metrics.render().count(b"entragate_throttled_total") >= 1
    finally:
        agent.stop()


def test_a_429_while_we_left_budget_unused_slows_the_pace_then_it_recovers(
    emu: Emulator, app: Any, tmp_path: Path
) -> None:
    agent = start_agent(emu, app, tmp_path, agent={"rate": 20.0}, backoff_cap=2.0)
    try:
        assert wait_for(lambda: agent.pacer.seconds_until_ready() == 0)
        time.sleep(0.2)  # idle for several intervals: the next 429 is someone else's doing
        emu.set_fault(EmulatorFault(kind="throttle", host="graph", count=1))
        agent.service.grant("staff", "81.6.0.1", "alice", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.6.0.1/32"})
        assert agent.pacer.lowered == 1
        for i in range(12):  # successes bring the pace back, never above rate
            agent.service.grant("staff", f"81.6.{i + 1}.1", f"user{i}", ttl=3600, source="test")
            assert wait_for(lambda i=i: f"81.6.{i + 1}.1/32" in (remote_ranges(emu, app.tenant_id) or set()))
        pace = agent.engine.status()["pace"]
        assert pace == {"rate": 20.0, "current": 20.0}
        assert b'entragate_pace_requests_per_second{tenant="default"} 20.0' in agent.metrics.render()
    finally:
        agent.stop()


def test_403_stops_writes_keeps_grants_and_resumes(emu: Emulator, app: Any, tmp_path: Path) -> None:
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    emu.set_roles(app.tenant_id, app.client_id, ["Policy.Read.All"])
    agent = start_agent(emu, app, tmp_path, agent={"rate": 20.0})
    try:
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=3600, source="test")

        def status_code() -> str | None:
            error = agent.engine.status()["acls"]["staff"]["locations"][0]["last_error"]
            return error["code"] if error else None

        assert wait_for(lambda: status_code() == "ENTRA002", 30)
        assert remote_ranges(emu, app.tenant_id) == {PLACEHOLDER}
        assert len(agent.store.active("staff")) == 1
        emu.set_roles(app.tenant_id, app.client_id, ["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"])
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"}, 60)
        assert wait_for(lambda: status_code() is None, 30)
    finally:
        agent.stop()


def test_shards_spread_ranges_without_rewriting_every_location(emu: Emulator, app: Any, tmp_path: Path) -> None:
    acls = {"staff": AclConfig(name="staff", location=LOCATION, max_ranges=10, max_locations=3, create=True)}
    agent = start_agent(emu, app, tmp_path, acls=acls, agent={"rate": 50.0})
    try:
        addresses = [f"81.4.{i}.1" for i in range(25)]  # never adjacent: no collapsing
        for i, address in enumerate(addresses):
            agent.service.grant("staff", address, f"user{i}", ttl=3600, source="test")

        def all_shards() -> set[str]:
            found: set[str] = set()
            for name in (LOCATION, f"{LOCATION} (2)", f"{LOCATION} (3)"):
                found |= remote_ranges(emu, app.tenant_id, name) or set()
            return found - {PLACEHOLDER}

        wanted = {f"{a}/32" for a in addresses}
        assert wait_for(lambda: all_shards() == wanted)
        for location in emu.locations(app.tenant_id):
            assert len(location["ipRanges"]) <= 10
        writes = len(emu.writes(app.tenant_id))
        agent.service.grant("staff", "81.4.200.1", "late", ttl=3600, source="test")
        assert wait_for(lambda: "81.4.200.1/32" in all_shards())
        assert len(emu.writes(app.tenant_id)) - writes == 1
        # the shards are full beyond 30: the next grants are refused with ENTRA007, never dropped
        from entragate.errors import RequestRejected

        for i in range(4):
            agent.service.grant("staff", f"81.4.{201 + i}.1", f"more{i}", ttl=3600, source="test")
        with pytest.raises(RequestRejected):
            agent.service.grant("staff", "81.4.250.1", "overflow", ttl=3600, source="test")
        assert all(g.cidr != "81.4.250.1/32" for g in agent.store.active("staff"))
    finally:
        agent.stop()


def test_shard_locations_are_created_only_when_needed(emu: Emulator, app: Any, tmp_path: Path) -> None:
    acls = {"staff": AclConfig(name="staff", location=LOCATION, max_ranges=3, max_locations=3, create=True)}
    agent = start_agent(emu, app, tmp_path, acls=acls, agent={"rate": 50.0})
    try:
        def names() -> set[str]:
            return {loc["displayName"] for loc in emu.locations(app.tenant_id)}

        for i in range(3):
            agent.service.grant("staff", f"81.4.{i}.1", f"user{i}", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {f"81.4.{i}.1/32" for i in range(3)})
        assert f"{LOCATION} (2)" not in names() and f"{LOCATION} (3)" not in names()
        agent.service.grant("staff", "81.4.9.1", "late", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id, f"{LOCATION} (2)") == {"81.4.9.1/32"})
        assert f"{LOCATION} (3)" not in names()
    finally:
        agent.stop()


def test_revocations_are_not_held_back_by_new_grants(emu: Emulator, app: Any, tmp_path: Path) -> None:
    """Counted in writes, not seconds: with L locations, a revoked address is gone within
    L + 1 writes after its revoke, plus one write that may already be in flight."""
    locations = 4
    acls = {"staff": AclConfig(name="staff", location=LOCATION, max_ranges=5, max_locations=locations, create=True)}
    agent = start_agent(emu, app, tmp_path, acls=acls, agent={"rate": 4.0})
    try:
        held = [f"81.5.{i}.1" for i in range(15)]
        for i, address in enumerate(held):
            agent.service.grant("staff", address, f"user{i}", ttl=3600, source="test")
        assert wait_for(lambda: all_remote(emu, app.tenant_id) >= {f"{a}/32" for a in held})
        rng = random.Random(4)
        revokes: list[tuple[str, int]] = []
        for serial in range(15, 40):
            gone = held.pop(rng.randrange(len(held)))
            revokes.append((f"{gone}/32", len(emu.writes(app.tenant_id))))
            agent.service.revoke("staff", gone)
            held.append(f"81.5.{serial}.1")
            agent.service.grant("staff", held[-1], f"user{serial}", ttl=3600, source="test")
            time.sleep(0.1)  # churn spread over the writer's slots (no time is asserted)
        revoked = {cidr for cidr, _ in revokes}
        assert wait_for(lambda: not (all_remote(emu, app.tenant_id) & revoked))
        writes = emu.writes(app.tenant_id)
        checked = 0
        for cidr, before in revokes:
            holder = next((w.location_id for w in reversed(writes[:before]) if w.ranges and cidr in w.ranges), None)
            if holder is None:
                continue  # revoked before it was ever written: there was nothing to remove
            waited = next(
                n
                for n, w in enumerate(writes[before:], start=1)
                if w.location_id == holder and w.ranges is not None and cidr not in w.ranges
            )
            assert waited <= locations + 2, (cidr, waited)
            checked += 1
        assert checked >= 10  # most revokes ended access Entra already held
    finally:
        agent.stop()


def all_remote(emu: Emulator, tenant: str) -> set[str]:
    return {r["cidrAddress"] for loc in emu.locations(tenant) for r in loc["ipRanges"]}


def test_dry_run_plans_without_writing(emu: Emulator, app: Any, tmp_path: Path) -> None:
    from entragate.agent import sync_once
    from entragate.grants import open_store

    config: Config = make_config(emu, app, tmp_path, agent={"rate": 50.0})
    emu.create_location(app.tenant_id, LOCATION, ["81.2.99.99/32"])
    store = open_store(config.agent.store)
    from datetime import UTC, datetime, timedelta

    store.add("staff", "alice", "81.2.69.142/32", datetime.now(UTC) + timedelta(hours=1), source="test")
    store.close()
    writes = len(emu.writes(app.tenant_id))
    plan = sync_once(config, dry_run=True)
    assert plan["plan"]["staff"][0]["add"] == ["81.2.69.142/32"]
    assert plan["plan"]["staff"][0]["remove"] == ["81.2.99.99/32"]
    assert len(emu.writes(app.tenant_id)) == writes
    result = sync_once(config)
    assert result["writes"] == 1
    assert remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"}


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file imports, relative imports resolved against ``package``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_writer_reaches_the_database_only_through_the_store_interface() -> None:
    forbidden = ("psycopg", "sqlite3", "entragate.grants.postgres", "entragate.grants.sqlite")
    sources = sorted(Path(entragate.sync.__file__).parent.glob("*.py"))
    assert len(sources) > 3
    for path in sources:
        for module in imported_modules(path, "entragate.sync"):
            assert not module.startswith(forbidden), f"{path.name} imports {module}"


def test_dry_run_leaves_even_expired_grants_in_the_store(emu: Emulator, app: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from entragate.agent import sync_once
    from entragate.grants import open_store

    config: Config = make_config(emu, app, tmp_path, agent={"rate": 50.0})
    emu.create_location(app.tenant_id, LOCATION, ["81.2.69.7/32"])
    store = open_store(config.agent.store)
    store.add("staff", "gone", "81.2.69.7/32", datetime.now(UTC) + timedelta(seconds=1), source="test")
    expired_at = datetime.now(UTC) + timedelta(seconds=2)
    store.close()
    assert wait_for(lambda: datetime.now(UTC) > expired_at, 10)
    writes = len(emu.writes(app.tenant_id))
    plan = sync_once(config, dry_run=True)
    assert plan["plan"]["staff"][0]["remove"] == ["81.2.69.7/32"]  # planned, not done
    assert len(emu.writes(app.tenant_id)) == writes
    store = open_store(config.agent.store)
    try:
        assert store.active("staff") == []
        still = store.active("staff", now=datetime.now(UTC) - timedelta(hours=1))
        assert [g.user for g in still] == ["gone"]  # the expired row is still there
    finally:
        store.close()


# ----------------------------------------------------------------------------- locations by intent


def acl(location: str, **kw: Any) -> dict[str, AclConfig]:
    return {"staff": AclConfig(name="staff", location=location, **kw)}


def run_once(emu: Emulator, app: Any, tmp_path: Path, acls: dict[str, AclConfig]) -> dict[str, Any]:
    from entragate.agent import sync_once
    from entragate.grants import open_store

    config: Config = make_config(emu, app, tmp_path, agent={"rate": 50.0}, acls=acls)
    store = open_store(config.agent.store)
    try:
        if not store.active("staff"):
            store.add("staff", "alice", "81.2.69.142/32", datetime_in(3600), source="test")
    finally:
        store.close()
    return sync_once(config)


def datetime_in(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_location_id_that_does_not_exist_is_entra006_and_never_created(
    emu: Emulator, app: Any, tmp_path: Path
) -> None:
    from entragate.errors import LocationProblem

    missing = "0b7a6f10-9f6e-4a55-8d1e-3c0c61d2a9f4"
    before = len(emu.locations(app.tenant_id))
    for create in (False, True):
        with pytest.raises(LocationProblem, match=f"no named location has the id {missing}") as info:
            run_once(emu, app, tmp_path, acl(missing, create=create))
        assert info.value.code == "ENTRA006"
    assert len(emu.locations(app.tenant_id)) == before
    assert not [w for w in emu.writes(app.tenant_id) if w.method == "POST"]


def test_a_name_matches_case_insensitively(emu: Emulator, app: Any, tmp_path: Path) -> None:
    emu.create_location(app.tenant_id, "Entragate Staff", ["81.2.99.99/32"])
    result = run_once(emu, app, tmp_path, acl("ENTRAGATE staff "))
    assert result["writes"] == 1
    assert remote_ranges(emu, app.tenant_id, "Entragate Staff") == {"81.2.69.142/32"}
    assert [loc["displayName"] for loc in emu.locations(app.tenant_id)] == ["Entragate Staff"]


def test_create_is_off_by_default_and_a_typo_says_did_you_mean(emu: Emulator, app: Any, tmp_path: Path) -> None:
    from entragate.errors import LocationProblem

    emu.create_location(app.tenant_id, "Entragate staff", ["81.2.99.99/32"])
    assert AclConfig(name="x", location="y").create is False
    with pytest.raises(LocationProblem, match="did you mean 'Entragate staff'") as info:
        run_once(emu, app, tmp_path, acl("Entragate stafff"))
    assert info.value.suggestions == ("Entragate staff",)
    assert [loc["displayName"] for loc in emu.locations(app.tenant_id)] == ["Entragate staff"]
    assert remote_ranges(emu, app.tenant_id) == {"81.2.99.99/32"}  # the real one is untouched


def test_two_matches_are_ambiguous_with_both_ids(emu: Emulator, app: Any, tmp_path: Path) -> None:
    from entragate.errors import LocationProblem

    one = emu.create_location(app.tenant_id, "Entragate staff", ["81.2.99.1/32"])
    two = emu.create_location(app.tenant_id, "entragate STAFF", ["81.2.99.2/32"])
    with pytest.raises(LocationProblem) as info:
        run_once(emu, app, tmp_path, acl("Entragate staff", create=True))
    ids = {one, two}
    assert set(info.value.ids) == ids and all(i in info.value.detail for i in ids)
    assert not [w for w in emu.writes(app.tenant_id) if w.method in ("POST", "PATCH")]


def test_the_running_agent_reports_entra006_for_a_missing_id_and_creates_nothing(
    emu: Emulator, app: Any, tmp_path: Path
) -> None:
    missing = "0b7a6f10-9f6e-4a55-8d1e-3c0c61d2a9f4"
    config = make_config(emu, app, tmp_path, agent={"rate": 50.0}, acls=acl(missing, create=True))
    agent = Agent(config, parked_retry=0.5)
    agent.start()
    try:
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=3600, source="test")

        def errors() -> list[Any]:
            return [s.last_error for states in agent.engine.shards.values() for s in states if s.last_error]

        assert wait_for(lambda: bool(errors()), 30)
        assert errors()[0].code == "ENTRA006" and missing in errors()[0].detail
        assert "ENTRA006" in str(agent.engine.status())
        assert emu.locations(app.tenant_id) == []
        assert not [w for w in emu.writes(app.tenant_id) if w.method == "POST"]
    finally:
        agent.stop()


def test_read_after_write_lag_costs_no_rewrite_and_no_drift(emu: Emulator, app: Any, tmp_path: Path) -> None:
    """Graph may show the old list for seconds after a PATCH: the agent keeps what it wrote
    and polls until a read agrees, instead of repairing a stale read in a loop."""
    import io
    import json
    import logging

    from entragate.logs import configure_logging

    emu.read_lag_seconds = 5.0
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.INFO, stream=stream)
    agent = start_agent(emu, app, tmp_path, agent={"rate": 50.0, "verify_interval": 0.5})
    try:
        changes = ["81.2.69.1", "81.2.69.2", "81.2.69.3"]
        before = len(emu.writes(app.tenant_id))
        for n, address in enumerate(changes, 1):
            agent.service.grant("staff", address, f"user{n}", ttl=3600, source="test")
            assert wait_for(lambda n=n: len(remote_ranges(emu, app.tenant_id) or ()) == n, 30)  # type: ignore[misc]
            reads = emu.counters.get("GET namedLocations", 0)
            # reads that land inside the lag window see the previous list
            assert wait_for(lambda r=reads: emu.counters.get("GET namedLocations", 0) >= r + 4, 60)  # type: ignore[misc]
        writes = [w for w in emu.writes(app.tenant_id)[before:] if w.method in ("PATCH", "POST")]
        assert len(writes) <= 2 * len(changes), [w.ranges for w in writes]
        assert remote_ranges(emu, app.tenant_id) == {f"{a}/32" for a in changes}
        events = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        assert not [e for e in events if e.get("event") == "location.drift"]
    finally:
        agent.stop()


def test_other_location_types_are_ignored_and_never_managed(emu: Emulator, app: Any, tmp_path: Path) -> None:
    from entragate.errors import LocationProblem

    emu.create_country_location(app.tenant_id, "Entragate staff countries", ["NL"])
    compliant = emu.create_compliant_network_location(app.tenant_id, "All Compliant Network locations")
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    assert run_once(emu, app, tmp_path, acl(LOCATION))["writes"] == 1
    assert remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"}
    with pytest.raises(LocationProblem, match="not an IP ranges location"):
        run_once(emu, app, tmp_path, acl(compliant))
    written = {w.location_id for w in emu.writes(app.tenant_id)}
    kinds = {loc["id"]: loc["@odata.type"] for loc in emu.locations(app.tenant_id)}
    assert {kinds[i] for i in written} == {"#microsoft.graph.ipNamedLocation"}


def test_a_parked_location_that_still_holds_an_ended_grant_is_retried_soon(
    emu: Emulator, app: Any, tmp_path: Path
) -> None:
    """A permission or TLS failure parks a location for minutes; while it still holds an
    address whose grant ended, it is retried at most backoff_cap apart (docs/design.md#outages)."""
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    config = make_config(emu, app, tmp_path, agent={"rate": 20.0})
    agent = Agent(config, parked_retry=600.0, backoff_cap=1.0)
    agent.start()
    try:
        assert wait_for(agent.engine.ready, 30)
        agent.service.grant("staff", "81.2.69.142", "alice", ttl=3600, source="test")
        agent.service.grant("staff", "81.2.69.143", "bob", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})
        emu.set_fault(EmulatorFault(kind="status", host="graph", method="PATCH", status=403))
        (state,) = agent.engine.shards["staff"]
        agent.service.revoke("staff", "81.2.69.143", "bob")  # his grant ends; the write fails

        assert wait_for(lambda: state.last_error is not None and state.parked_until > 0, 30)
        assert state.last_error is not None and state.last_error.code == Code.ENTRA002  # never retried
        assert state.parked_until - time.monotonic() <= 1.0  # not the 600 s of parked_retry
        emu.clear_faults()
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"}, 60)
    finally:
        agent.stop()
