"""The tenant's users, their sign-in log and ``revokeSignInSessions``, in Graph's v1.0 shapes
(docs/design.md#emulator).

- ``GET /v1.0/auditLogs/signIns``: newest first, ``$filter`` by ``userPrincipalName eq``
  or ``userId eq``, ``$top`` (default and at most 1,000). Needs ``AuditLog.Read.All``;
  a tenant without an Entra ID P1/P2 licence answers 403
  ``Authentication_RequestFromNonPremiumTenantOrB2CTenant``. ``appliedConditionalAccessPolicies``
  is filled only for an app that may also read Conditional Access (``Policy.Read.All`` or
  ``Policy.ReadWrite.ConditionalAccess``), an empty list otherwise, as Graph does.
- ``POST /v1.0/users/{id | userPrincipalName}/revokeSignInSessions``: 200 with
  ``{"value": true}``; needs ``User.RevokeSessions.All`` (or ``User.ReadWrite.All``,
  ``Directory.ReadWrite.All``); an unknown user is 404 ``Request_ResourceNotFound``.

These are not Conditional Access resources: they have their own throttles (identity
and access reports: 5 requests per 10 seconds per app and tenant, answered with a
Retry-After), never the 1 request/second Conditional Access budget.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._http import GraphError

if TYPE_CHECKING:
    from .state import Tenant

SIGN_INS_PATH = "auditlogs/signins"
READ_SIGN_INS = "AuditLog.Read.All"
REVOKE_ROLES = frozenset({"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
CA_READ_ROLES = frozenset({"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"})
NOT_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
REPORTS_LIMIT = (5, 10.0)  # requests per seconds, per app and tenant
MAX_TOP = 1000
BLOCKED_BY_CA = 53003
FAILURE_REASONS = {
    0: None,
    BLOCKED_BY_CA: "Access has been blocked by Conditional Access policies. The access policy does "
    "not allow token issuance.",
    50126: "Error validating credentials due to invalid username or password.",
    50076: "Due to a configuration change made by your administrator, or because you moved to a "
    "new location, you must use multi-factor authentication to access.",
}
_FILTER = re.compile(r"^\s*(userPrincipalName|userId)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_DENIED = "Insufficient privileges to complete the operation."


def _graph_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Directory:
    """One tenant's users (object id → user), sign-in events (oldest first), the
    revocations made, and whether the tenant holds a P1/P2 licence."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    sign_ins: list[dict[str, Any]] = field(default_factory=list)
    revocations: list[dict[str, Any]] = field(default_factory=list)
    premium: bool = True
    reports_calls: list[float] = field(default_factory=list)  # monotonic times, for the throttle

    def user(self, key: str) -> dict[str, Any] | None:
        """By object id, or by userPrincipalName (case-insensitive)."""
        found = self.users.get(key.lower())
        if found is not None:
            return found
        return next((u for u in self.users.values() if u["userPrincipalName"].lower() == key.lower()), None)

    def add_user(self, upn: str, object_id: str | None = None, display_name: str | None = None) -> dict[str, Any]:
        existing = self.user(upn)
        if existing is not None:
            return existing
        user_id = (object_id or str(uuid.uuid4())).lower()
        user: dict[str, Any] = {
            "id": user_id,
            "userPrincipalName": upn,
            "displayName": display_name or upn.split("@", 1)[0].title(),
            "signInSessionsValidFromDateTime": None,
        }
        self.users[user_id] = user
        return user


def new_sign_in(
    user: dict[str, Any],
    ip_address: str,
    *,
    when: float,
    error_code: int = 0,
    ca_status: str | None = None,
    policies: list[dict[str, Any]] | None = None,
    app_display_name: str = "Office 365 Exchange Online",
    failure_reason: str | None = None,
) -> dict[str, Any]:
    """One ``signIn`` as Graph v1.0 returns it. ``policies``: the applied Conditional Access
    policies (``id``, ``displayName``, ``result``: success, failure, notApplied …);
    ``ca_status`` defaults to failure when one failed, success when one applied,
    notApplied otherwise."""
    applied = [
        {
            "id": p["id"],
            "displayName": p.get("displayName", ""),
            "enforcedGrantControls": p.get("enforcedGrantControls", ["Block"] if p.get("result") == "failure" else []),
            "enforcedSessionControls": [],
            "result": p.get("result", "notApplied"),
        }
        for p in policies or []
    ]
    results = {p["result"] for p in applied}
    status = ca_status or ("failure" if "failure" in results else "success" if "success" in results else "notApplied")
    return {
        "id": str(uuid.uuid4()),
        "createdDateTime": _graph_time(when),
        "userDisplayName": user["displayName"],
        "userPrincipalName": user["userPrincipalName"],
        "userId": user["id"],
        "appId": "00000002-0000-0ff1-ce00-000000000000",
        "appDisplayName": app_display_name,
        "ipAddress": ip_address,
        "clientAppUsed": "Browser",
        "correlationId": str(uuid.uuid4()),
        "conditionalAccessStatus": status,
        "isInteractive": True,
        "resourceDisplayName": app_display_name,
        "resourceId": "00000002-0000-0ff1-ce00-000000000000",
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "status": {
            "errorCode": error_code,
            "failureReason": failure_reason or FAILURE_REASONS.get(error_code) or ("Other." if error_code else None),
            "additionalDetails": None,
        },
        "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "Windows10",
                         "browser": "Edge 124.0.0", "isCompliant": False, "isManaged": False, "trustType": ""},
        "location": {"city": "London", "state": "England", "countryOrRegion": "GB",
                     "geoCoordinates": {"altitude": None, "latitude": 51.5, "longitude": -0.12}},
        "appliedConditionalAccessPolicies": applied,
    }


class DirectoryRoutes:
    """The two routes; ``lock`` is the emulator state's, ``now`` its clock."""

    OPERATIONS = ("GET signIns", "POST revokeSignInSessions")

    def __init__(self, lock: threading.RLock, now: Any) -> None:
        self._lock = lock
        self._now = now

    @staticmethod
    def operation(method: str, low_rest: str) -> str | None:
        """The counter key for a path after ``/v1.0/`` (lower case), or None."""
        if low_rest == SIGN_INS_PATH:
            return f"{method} signIns"
        parts = low_rest.split("/")
        if len(parts) == 3 and parts[0] == "users" and parts[2] == "revokesigninsessions":
            return f"{method} revokeSignInSessions"
        return None

    def handle(self, tenant: Tenant, roles: set[str], op: str, path: str, query: dict[str, list[str]],
               throttled: bool) -> dict[str, Any]:
        """The 200 body of a served route; raises GraphError for the error answers."""
        if op == "GET signIns":
            return self._sign_ins(tenant, roles, query, throttled)
        if op == "POST revokeSignInSessions":
            return self._revoke(tenant, roles, urllib.parse.unquote(path.rstrip("/").split("/")[-2]))
        raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")

    def reports_throttled(self, tenant: Tenant) -> bool:
        """The identity and access reports limit: 5 requests per 10 s (sliding window)."""
        limit, window = REPORTS_LIMIT
        with self._lock:
            now = time.monotonic()
            calls = [t for t in tenant.directory.reports_calls if now - t < window]
            tenant.directory.reports_calls = calls
            if len(calls) >= limit:
                return True
            calls.append(now)
            return False

    def _sign_ins(self, tenant: Tenant, roles: set[str], query: dict[str, list[str]],
                  throttled: bool) -> dict[str, Any]:
        if READ_SIGN_INS not in roles:
            raise GraphError(403, "Authorization_RequestDenied", _DENIED)
        if not tenant.directory.premium:
            raise GraphError(403, NOT_PREMIUM, "Neither tenant is B2C or tenant doesn't have premium license")
        if throttled:
            raise GraphError(429, "UnknownError", "Too many requests.")
        top = MAX_TOP
        if "$top" in query:
            try:
                top = int(query["$top"][0])
            except ValueError:
                raise GraphError(400, "BadRequest", "Invalid value for $top.") from None
            if not 1 <= top <= MAX_TOP:
                raise GraphError(400, "BadRequest", f"$top must be between 1 and {MAX_TOP}.")
        match = None
        if query.get("$filter", [""])[0]:
            match = _FILTER.match(query["$filter"][0])
            if match is None:
                raise GraphError(400, "BadRequest", f"Invalid filter clause: {query['$filter'][0]}")
        with self._lock:
            events = [copy.deepcopy(e) for e in reversed(tenant.directory.sign_ins)]
        if match is not None:
            prop = "userPrincipalName" if match.group(1).lower() == "userprincipalname" else "userId"
            wanted = match.group(2).replace("''", "'").lower()
            events = [e for e in events if str(e.get(prop, "")).lower() == wanted]
        if not roles & CA_READ_ROLES:
            for event in events:
                event["appliedConditionalAccessPolicies"] = []
        body = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
                "value": events[:top]}
        return body

    def _revoke(self, tenant: Tenant, roles: set[str], key: str) -> dict[str, Any]:
        if not roles & REVOKE_ROLES:
            raise GraphError(403, "Authorization_RequestDenied", _DENIED)
        with self._lock:
            user = tenant.directory.user(key)
            if user is None:
                raise GraphError(404, "Request_ResourceNotFound", f"Resource '{key}' does not exist or one "
                                 "of its queried reference-property objects are not present.")
            stamp = _graph_time(self._now())
            user["signInSessionsValidFromDateTime"] = stamp
            tenant.directory.revocations.append(
                {"userId": user["id"], "userPrincipalName": user["userPrincipalName"], "asked_as": key, "time": stamp}
            )
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": True}


def add_sign_in(directory: Directory, user: str, ip_address: str, *, when: float, **fields: Any) -> dict[str, Any]:
    """Append a sign-in event of ``user`` (a UPN, created if unknown, or an object id) at
    ``when``; ``fields`` as :func:`new_sign_in`. The caller holds the state's lock."""
    found = directory.user(user) or directory.add_user(user)
    event = new_sign_in(found, ip_address, when=when, **fields)
    directory.sign_ins.append(event)
    directory.sign_ins.sort(key=lambda e: str(e["createdDateTime"]))
    return copy.deepcopy(event)
