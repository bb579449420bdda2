"""``entragate why USER``: each verdict from sign-ins injected into the emulated tenant and
grants in a real SQLite store, in text and ``--json``; the permission and licence errors;
and the sign-in reads never spend the Conditional Access budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from entragate.cli import main
from entragate.config import load_config
from entragate.emulator import DEFAULT_ROLES, Emulator
from entragate.grants import open_store, utcnow
from entragate.service import GrantService
from tests.helpers.config import SECRET
from tests.helpers.process import write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import LOCATION

ALICE = "alice@contoso.example"
V4 = "81.2.69.142"
V4_PROXY = "81.2.69.200"
V6 = "2a00:1450:4001:80b::200e"
WITH_LOGS = (*DEFAULT_ROLES, "AuditLog.Read.All")


@dataclass
class Tenant:
    emu: Emulator
    tenant_id: str
    config: Path
    location_id: str

    def grant(self, ip: str, user: str = ALICE, *, seconds_ago: float = 600) -> None:
        config = load_config(self.config, require_credentials=False)
        store = open_store(config.agent.store)
        try:
            GrantService(config, store).grant("staff", ip, user, ttl=7200,
                                              now=utcnow() - timedelta(seconds=seconds_ago))
        finally:
            store.close()

    def sign_in(self, ip: str, *, seconds_ago: float = 60, user: str = ALICE, **fields: Any) -> None:
        self.emu.add_sign_in(self.tenant_id, user, ip, seconds_ago=seconds_ago, **fields)

    def blocked(self, ip: str, policy: str, *, seconds_ago: float = 60) -> None:
        self.sign_in(ip, seconds_ago=seconds_ago, error_code=53003,
                     policies=[{"id": policy, "displayName": self.emu_policy_name(policy), "result": "failure"}])

    def emu_policy_name(self, policy_id: str) -> str:
        return next(p["displayName"] for p in self.emu.policies(self.tenant_id) if p["id"] == policy_id)

    def policy(self, name: str, *, uses_location: bool) -> str:
        exclude = [self.location_id] if uses_location else []
        return self.emu.add_policy(self.tenant_id, name, exclude_locations=exclude)

    def why(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), "why", ALICE, "--acl", "staff", *args])

    def verdict(self) -> dict[str, Any]:
        result = self.why("--json")
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        text = self.why()
        assert text.exit_code == 0, text.output
        assert f"verdict: {data['verdict']['id']}: " in text.stdout  # the same verdict in both forms
        assert f"next: {data['verdict']['next']}" in text.stdout
        return data


def make_tenant(emu: Emulator, tmp_path: Path, roles: tuple[str, ...] = WITH_LOGS) -> Tenant:
    tenant_id = emu.add_tenant()
    app = emu.add_app(tenant_id, secret=SECRET, roles=roles)
    location_id = emu.create_location(tenant_id, LOCATION, ["192.0.2.255/32"])
    return Tenant(emu, tenant_id, write_config(emu, app, tmp_path, free_port(), rate=20), location_id)


@pytest.fixture
def tenant(emu: Emulator, tmp_path: Path) -> Tenant:
    return make_tenant(emu, tmp_path)


def test_ipv6_sign_in_while_the_grant_holds_ipv4(tenant: Tenant) -> None:
    tenant.grant(V4)
    tenant.blocked(V6, tenant.policy("block unless granted", uses_location=True))
    data = tenant.verdict()
    assert data["verdict"]["id"] == "ip_family_mismatch"
    assert data["verdict"]["details"] == {"sign_in_family": "IPv6", "granted_families": ["IPv4"],
                                          "granted": [f"{V4}/32"]}
    assert f"entragate grant {V6} --acl staff --user {ALICE}" in data["verdict"]["next"]
    [sign_in] = data["sign_ins"]
    assert (sign_in["ip_address"], sign_in["coverage"], sign_in["error_code"]) == (V6, "family_mismatch", 53003)
    assert sign_in["failing_policies"][0]["uses_managed_location"] is True


def test_sign_in_from_an_address_nobody_granted(tenant: Tenant) -> None:
    tenant.grant(V4)
    tenant.grant(V4_PROXY, "bob@contoso.example", seconds_ago=3000)  # someone else's grant counts too
    tenant.blocked("81.2.70.9", tenant.policy("block unless granted", uses_location=True))
    tenant.sign_in(V4_PROXY, seconds_ago=120)  # covered by bob's grant: the location held it
    data = tenant.verdict()
    assert data["verdict"]["id"] == "address_not_granted"
    assert [s["coverage"] for s in data["sign_ins"]] == ["not_granted", "granted_to_other"]


def test_sign_in_before_the_grant_shows_both_times(tenant: Tenant) -> None:
    tenant.grant(V4, seconds_ago=60)
    tenant.blocked(V4, tenant.policy("block unless granted", uses_location=True), seconds_ago=300)
    data = tenant.verdict()
    verdict = data["verdict"]
    assert verdict["id"] == "signed_in_before_grant"
    assert verdict["details"]["sign_in_at"] < verdict["details"]["grant_created_at"]
    assert verdict["details"]["sign_in_at"] in verdict["summary"]
    assert verdict["details"]["grant_created_at"] in verdict["summary"]
    assert any("lag" in note for note in data["notes"])


def test_a_failed_sign_in_right_after_the_grant_counts_as_before_it(tenant: Tenant) -> None:
    tenant.grant(V4, seconds_ago=20)
    tenant.blocked(V4, tenant.policy("block unless granted", uses_location=True), seconds_ago=10)
    assert tenant.verdict()["verdict"]["id"] == "signed_in_before_grant"


def test_blocked_by_a_policy_that_does_not_use_the_location(tenant: Tenant, emu: Emulator) -> None:
    tenant.grant(V4)
    tenant.blocked(V4, tenant.policy("Block legacy clients", uses_location=False))
    before = emu.counters
    data = tenant.verdict()
    verdict = data["verdict"]
    assert verdict["id"] == "policy_without_location"
    assert "'Block legacy clients'" in verdict["summary"]
    assert verdict["details"]["policies"][0]["display_name"] == "Block legacy clients"
    # only here are Conditional Access resources read: locations and policies, once per run
    after = emu.counters
    assert [after[k] - before[k] for k in ("GET namedLocations", "GET policies")] == [2, 2]


def test_no_sign_in_since_the_grant_says_the_logs_lag(tenant: Tenant) -> None:
    tenant.sign_in(V4, seconds_ago=3600)  # an older sign-in that succeeded
    tenant.grant(V4, seconds_ago=600)
    data = tenant.verdict()
    assert data["verdict"]["id"] == "no_sign_in_since_grant"
    assert "lag" in data["verdict"]["next"]


def test_no_sign_in_at_all(tenant: Tenant) -> None:
    tenant.grant(V4)
    result = tenant.why()
    assert result.exit_code == 0, result.output
    assert "sign-ins: none logged" in result.stdout
    assert "verdict: no_sign_in_since_grant" in result.stdout


@pytest.mark.parametrize(
    ("setup", "verdict"),
    [
        (lambda t: (t.grant(V4), t.sign_in(V4)), "granted_and_signed_in"),
        (lambda t: (t.grant(V4), t.sign_in(V4, error_code=50126)), "failed_for_other_reason"),
        (lambda t: (t.grant(V4), t.sign_in("81.2.70.9")), "not_blocked_without_grant"),
        (lambda t: t.sign_in(V4), "no_grant"),
        (lambda t: (t.grant(V4), t.sign_in(V4, error_code=53003, ca_status="failure",
                                           policies=[{"id": t.policy("MFA", uses_location=True),
                                                      "displayName": "MFA", "result": "failure"}])),
         "blocked_despite_grant"),
    ],
)
def test_the_other_verdicts(tenant: Tenant, setup: Any, verdict: str) -> None:
    setup(tenant)
    assert tenant.verdict()["verdict"]["id"] == verdict


def test_the_sign_in_reads_spend_no_conditional_access_budget(tenant: Tenant, emu: Emulator) -> None:
    tenant.grant(V4)
    tenant.sign_in(V6)
    emu.rate_limit = 1.0  # Conditional Access throttling on; the reports have their own limit
    before = emu.counters
    for _ in range(3):
        assert tenant.why("--json").exit_code == 0
    after = emu.counters
    assert after["GET signIns"] - before["GET signIns"] == 3
    ca = ("GET namedLocations", "GET policies", "throttled", "throttled reports")
    assert all(after[key] == before[key] for key in ca), after


def test_without_audit_log_permission_it_names_the_permission(emu: Emulator, tmp_path: Path) -> None:
    tenant = make_tenant(emu, tmp_path, roles=DEFAULT_ROLES)
    tenant.grant(V4)
    result = tenant.why()
    assert result.exit_code == 1
    assert "ENTRA002" in result.stderr and "AuditLog.Read.All" in result.stderr
    as_json = tenant.why("--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "ENTRA002"


def test_without_a_premium_licence_it_says_so(tenant: Tenant, emu: Emulator) -> None:
    emu.set_premium(tenant.tenant_id, False)
    result = tenant.why()
    assert result.exit_code == 1
    assert "ENTRA002" in result.stderr and "P1 or P2" in result.stderr


def test_applied_policies_need_a_policy_read_permission(emu: Emulator, tmp_path: Path) -> None:
    tenant = make_tenant(emu, tmp_path, roles=("Policy.ReadWrite.ConditionalAccess", "AuditLog.Read.All"))
    policy = tenant.policy("block unless granted", uses_location=True)
    tenant.grant(V4)
    tenant.blocked(V6, policy)
    data = tenant.verdict()  # Graph shows the applied policies to an app that may read policies
    assert data["sign_ins"][0]["applied_policies"][0]["display_name"] == "block unless granted"
    emu.set_roles(tenant.tenant_id, load_config(tenant.config).client_id, ["AuditLog.Read.All"])
    tenant.sign_in(V6, seconds_ago=5, error_code=53003, ca_status="failure")
    result = CliRunner().invoke(main, ["--config", str(tenant.config), "why", ALICE, "--json"])
    data = json.loads(result.stdout)
    assert data["sign_ins"][0]["applied_policies"] == []
    assert any("Policy.Read.All" in note for note in data["notes"])


def test_a_user_graph_cannot_name_is_a_usage_error(tenant: Tenant) -> None:
    result = CliRunner().invoke(main, ["--config", str(tenant.config), "why", "alice"])
    assert result.exit_code == 2
    assert "invalid_user" in result.stderr
