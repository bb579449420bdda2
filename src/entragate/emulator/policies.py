"""Conditional Access policies in Graph's v1.0 shape (``conditionalAccessPolicy``), read
by the doctor's ``policies`` check (docs/design.md#emulator).

Only what entragate looks at is modelled: ``state``, ``conditions.users`` (included and
excluded users and groups), ``conditions.clientApplications`` (workload identities),
``conditions.locations`` and ``grantControls``; the other condition sets are present
with Graph's empty values so that a client sees the real shape.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

POLICIES_PATH = "identity/conditionalaccess/policies"
POLICY_STATES = ("enabled", "disabled", "enabledForReportingButNotEnforced")
READ_ROLE = "Policy.Read.All"  # listing policies needs it; ReadWrite.ConditionalAccess alone does not


def new_policy(
    display_name: str,
    *,
    state: str = "enabled",
    include_locations: Iterable[str] = ("All",),
    exclude_locations: Iterable[str] = (),
    include_users: Iterable[str] = ("All",),
    exclude_users: Iterable[str] = (),
    include_groups: Iterable[str] = (),
    exclude_groups: Iterable[str] = (),
    include_service_principals: Iterable[str] | None = None,
    exclude_service_principals: Iterable[str] = (),
    grant: Iterable[str] = ("block",),
    now: float | None = None,
) -> dict[str, Any]:
    """One policy. ``include_service_principals`` makes it a workload-identity policy
    (users then ``["None"]``), as the portal does."""
    if state not in POLICY_STATES:
        raise ValueError(f"state must be one of {POLICY_STATES}")
    created = dt.datetime.fromtimestamp(now if now is not None else dt.datetime.now(dt.UTC).timestamp(), dt.UTC)
    workload = include_service_principals is not None
    return {
        "id": str(uuid.uuid4()),
        "templateId": None,
        "displayName": display_name,
        "createdDateTime": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "modifiedDateTime": None,
        "state": state,
        "sessionControls": None,
        "conditions": {
            "userRiskLevels": [],
            "signInRiskLevels": [],
            "clientAppTypes": ["all"],
            "servicePrincipalRiskLevels": [],
            "platforms": None,
            "times": None,
            "deviceStates": None,
            "devices": None,
            "applications": {
                "includeApplications": ["All"],
                "excludeApplications": [],
                "includeUserActions": [],
                "includeAuthenticationContextClassReferences": [],
                "applicationFilter": None,
            },
            "users": {
                "includeUsers": ["None"] if workload else list(include_users),
                "excludeUsers": list(exclude_users),
                "includeGroups": [] if workload else list(include_groups),
                "excludeGroups": list(exclude_groups),
                "includeRoles": [],
                "excludeRoles": [],
                "includeGuestsOrExternalUsers": None,
                "excludeGuestsOrExternalUsers": None,
            },
            "clientApplications": None
            if not workload
            else {
                "includeServicePrincipals": list(include_service_principals or ()),
                "excludeServicePrincipals": list(exclude_service_principals),
                "servicePrincipalFilter": None,
            },
            "locations": {
                "includeLocations": list(include_locations),
                "excludeLocations": list(exclude_locations),
            },
        },
        "grantControls": {
            "operator": "OR",
            "builtInControls": list(grant),
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": None,
        },
    }
