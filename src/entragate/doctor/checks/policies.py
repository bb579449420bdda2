"""The ``policies`` check: do the Conditional Access policies make the grants matter?

A named location changes nothing until an *enabled* policy uses it, and the most
common way to deploy entragate uselessly is a location no policy references (or only
report-only ones). This check also warns when a policy that uses the location excludes
no user or group (no break-glass account), and when a workload-identity policy could
block the agent's own service principal, which would lock it out of the very location
that would let it in (docs/conditional-access.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from entragate.config import AclConfig, Config
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import PASS, WARN, CheckResult, error_detail
from entragate.errors import Code, EntraError

ENABLED, REPORT_ONLY = "enabled", "enabledForReportingButNotEnforced"
GUIDE = "see docs/conditional-access.md"


def _conditions(policy: dict[str, Any], part: str) -> dict[str, Any]:
    value = (policy.get("conditions") or {}).get(part)
    return value if isinstance(value, dict) else {}


def _uses(policy: dict[str, Any], location_id: str) -> bool:
    locations = _conditions(policy, "locations")
    return any(
        location_id in (locations.get(side) or []) for side in ("includeLocations", "excludeLocations")
    )


def _has_exclusions(policy: dict[str, Any]) -> bool:
    users = _conditions(policy, "users")
    return bool(users.get("excludeUsers") or users.get("excludeGroups") or users.get("excludeRoles"))


def _may_block_agent(policy: dict[str, Any], agent_object_id: str | None) -> bool:
    """An enabled workload-identity policy that covers this service principal."""
    apps = _conditions(policy, "clientApplications")
    included = apps.get("includeServicePrincipals") or []
    excluded = apps.get("excludeServicePrincipals") or []
    if policy.get("state") != ENABLED or not included:
        return False
    if agent_object_id is not None and agent_object_id in excluded:
        return False
    return "ServicePrincipalsInMyTenant" in included or (
        agent_object_id is not None and agent_object_id in included
    )


def _name(policy: dict[str, Any]) -> str:
    return repr(str(policy.get("displayName") or policy.get("id")))


def _acl_causes(acl: AclConfig, location_id: str | None, policies: list[dict[str, Any]]) -> tuple[list[Cause], str]:
    if location_id is None:
        return [
            Cause(
                "location_not_created",
                f"acl {acl.name}: {acl.location!r} does not exist yet, so no policy can use it; after the "
                "agent creates it, make an enabled policy use it",
            )
        ], f"{acl.name}: location not created yet"
    using = [p for p in policies if _uses(p, location_id)]
    enabled = [p for p in using if p.get("state") == ENABLED]
    report_only = [p for p in using if p.get("state") == REPORT_ONLY]
    if not enabled:
        if report_only:
            names = ", ".join(_name(p) for p in report_only)
            why = (
                f"acl {acl.name}: {acl.location!r} is used only by report-only policies ({names}): "
                "grants change nothing until one is On"
            )
            return [Cause("location_report_only", why)], f"{acl.name}: report-only only"
        why = (
            f"acl {acl.name}: no enabled Conditional Access policy uses {acl.location!r}: grants change "
            "nothing"
        )
        return [Cause("location_unused", why)], f"{acl.name}: unused"
    causes = [
        Cause(
            "no_break_glass_exclusion",
            f"policy {_name(p)} uses {acl.location!r} but excludes no user or group: exclude the "
            "break-glass accounts",
        )
        for p in enabled
        if not _has_exclusions(p)
    ]
    return causes, f"{acl.name}: {len(enabled)} enabled polic{'y' if len(enabled) == 1 else 'ies'}"


def check_policies(
    config: Config,
    locations: Sequence[object],
    policies: list[dict[str, Any]] | EntraError,
    agent_object_id: str | None,
) -> CheckResult:
    from entragate.graph.client import NamedLocation

    if isinstance(policies, EntraError):
        if policies.code == Code.ENTRA002:
            return CheckResult(
                "policies",
                WARN,
                "cannot read the Conditional Access policies (Policy.Read.All missing or not consented), "
                "so whether grants change anything is unknown",
                code=Code.ENTRA002,
                causes=[Cause("policies_unreadable", error_detail(policies))],
                fix=["grant Policy.Read.All (Application) with admin consent"],
            )
        return CheckResult(
            "policies",
            WARN,
            f"reading the Conditional Access policies failed: {error_detail(policies)}",
            code=policies.code,
            causes=[Cause("policies_unreadable", policies.title)],
        )
    locs = [loc for loc in locations if isinstance(loc, NamedLocation)]
    causes: list[Cause] = []
    parts: list[str] = []
    for acl in config.acls.values():
        match = next((loc for loc in locs if acl.location in (loc.id, loc.display_name)), None)
        acl_causes, part = _acl_causes(acl, match.id if match else None, policies)
        causes += acl_causes
        parts.append(part)
    causes += [
        Cause(
            "agent_may_be_blocked",
            f"workload-identity policy {_name(p)} applies to the agent's own service principal: exclude "
            "it, or the agent may be refused a token (AADSTS53003)",
        )
        for p in policies
        if _may_block_agent(p, agent_object_id)
    ]
    summary = f"{len(policies)} Conditional Access polic{'y' if len(policies) == 1 else 'ies'}; " + "; ".join(parts)
    if causes:
        return CheckResult("policies", WARN, causes[0].summary, causes=causes, fix=[GUIDE])
    return CheckResult("policies", PASS, summary)
