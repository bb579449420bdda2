"""The doctor's ``policies`` check against Conditional Access policies in the emulated
tenant: a location no enabled policy uses makes every grant change nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from entragate.config import AclConfig
from entragate.doctor.runner import Report, run_doctor
from entragate.emulator import AppRegistration, Emulator
from tests.helpers.config import make_config
from tests.helpers.emulator import emulator_session

OS_RELEASE = str(Path(__file__).parent / "data" / "os-release" / "debian-12")
LOCATION = "Entragate staff"
BREAK_GLASS = "5d3f8a1e-0c4b-4e7a-9f2d-6b1c0e9a7d3f"
PILOT = "8e1b2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e"


def doctor(emu: Emulator, app: AppRegistration, **acl: Any) -> Report:
    config = make_config(emu, app, acls={"staff": AclConfig(name="staff", location=LOCATION, **acl)})
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("ENTRAGATE_")}
    return run_doctor(config, env, OS_RELEASE)


def causes(report: Report) -> list[str]:
    return [c.id for c in report.check("policies").causes]


@pytest.fixture
def location(emu: Emulator, app: AppRegistration) -> str:
    return emu.create_location(app.tenant_id, LOCATION, ["81.2.69.142/32"])


def test_no_policy_uses_the_location(emu: Emulator, app: AppRegistration, location: str) -> None:
    emu.add_policy(app.tenant_id, "MFA everywhere", grant=["mfa"], exclude_groups=[BREAK_GLASS])
    report = doctor(emu, app)
    check = report.check("policies")
    assert check.status == "warn"
    assert causes(report) == ["location_unused"]
    assert "grants change nothing" in check.summary
    assert "docs/conditional-access.md" in " ".join(check.fix)
    assert report.ok  # a warning, not a failure: the agent works, it just does nothing useful


def test_a_disabled_policy_does_not_count(emu: Emulator, app: AppRegistration, location: str) -> None:
    emu.add_policy(app.tenant_id, "off", state="disabled", exclude_locations=[location],
                   exclude_groups=[BREAK_GLASS])
    assert causes(doctor(emu, app)) == ["location_unused"]


def test_only_report_only_policies_use_it(emu: Emulator, app: AppRegistration, location: str) -> None:
    emu.add_policy(app.tenant_id, "trial", state="enabledForReportingButNotEnforced",
                   exclude_locations=[location], exclude_groups=[BREAK_GLASS])
    report = doctor(emu, app)
    assert causes(report) == ["location_report_only"]
    assert "'trial'" in report.check("policies").summary


def test_an_enabled_policy_without_break_glass_exclusion(
    emu: Emulator, app: AppRegistration, location: str
) -> None:
    emu.add_policy(app.tenant_id, "block unless granted", exclude_locations=[location],
                   include_users=[], include_groups=[PILOT])
    assert causes(doctor(emu, app)) == ["no_break_glass_exclusion"]


def test_an_enabled_policy_with_exclusions_passes(emu: Emulator, app: AppRegistration, location: str) -> None:
    emu.add_policy(app.tenant_id, "block unless granted", exclude_locations=[location],
                   exclude_groups=[BREAK_GLASS])
    emu.add_policy(app.tenant_id, "MFA unless granted", grant=["mfa"], exclude_locations=[location],
                   exclude_users=[BREAK_GLASS])
    check = doctor(emu, app).check("policies")
    assert check.status == "pass", check
    assert "staff: 2 enabled policies" in check.summary


def test_a_workload_identity_policy_that_covers_the_agent(
    emu: Emulator, app: AppRegistration, location: str
) -> None:
    emu.add_policy(app.tenant_id, "block unless granted", exclude_locations=[location],
                   exclude_groups=[BREAK_GLASS])
    emu.add_policy(app.tenant_id, "apps from the office only", include_service_principals=[
        "ServicePrincipalsInMyTenant"])
    assert causes(doctor(emu, app)) == ["agent_may_be_blocked"]


def test_the_agent_excluded_from_the_workload_identity_policy(
    emu: Emulator, app: AppRegistration, location: str
) -> None:
    registered = emu.find_app(emu.tenant(app.tenant_id), app.client_id)
    assert registered is not None
    emu.add_policy(app.tenant_id, "block unless granted", exclude_locations=[location],
                   exclude_groups=[BREAK_GLASS])
    emu.add_policy(app.tenant_id, "apps from the office only",
                   include_service_principals=["ServicePrincipalsInMyTenant"],
                   exclude_service_principals=[registered.object_id])
    assert doctor(emu, app).check("policies").status == "pass"


def test_a_location_not_created_yet(emu: Emulator, app: AppRegistration) -> None:
    assert causes(doctor(emu, app, create=True)) == ["location_not_created"]


def test_without_policy_read_all_the_check_says_it_cannot_tell(emu: Emulator) -> None:
    writer_only = emu.add_app(emu.add_tenant(), roles=["Policy.ReadWrite.ConditionalAccess"])
    emu.create_location(writer_only.tenant_id, LOCATION, ["81.2.69.142/32"])
    check = doctor(emu, writer_only).check("policies")
    assert check.status == "warn" and check.code == "ENTRA002"
    assert "Policy.Read.All" in check.summary


def test_the_emulator_serves_policies_in_graphs_shape(emu: Emulator, app: AppRegistration) -> None:
    policy_id = emu.add_policy(app.tenant_id, "block unless granted", state="enabledForReportingButNotEnforced",
                               exclude_locations=["00000000-0000-0000-0000-000000000001"],
                               exclude_groups=[BREAK_GLASS])
    session = emulator_session(emu)
    token = session.post(
        f"https://login.microsoftonline.com/{app.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": app.client_id,
              "client_secret": app.secret or "", "scope": "https://graph.microsoft.com/.default"},
        timeout=10,
    ).json()["access_token"]
    response = session.get("https://graph.microsoft.com/v1.0/identity/conditionalAccess/policies",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#identity/conditionalAccess/policies")
    (policy,) = body["value"]
    assert policy["id"] == policy_id and policy["state"] == "enabledForReportingButNotEnforced"
    conditions = policy["conditions"]
    assert conditions["locations"] == {
        "includeLocations": ["All"], "excludeLocations": ["00000000-0000-0000-0000-000000000001"]
    }
    assert conditions["users"]["excludeGroups"] == [BREAK_GLASS]
    assert conditions["clientAppTypes"] == ["all"]
    assert policy["grantControls"]["builtInControls"] == ["block"]
