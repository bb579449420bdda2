"""``GET /v1/status`` of an agent serving one tenant or several (docs/design.md#tenants).

Every ACL's entry (under ``acls``) names its ``tenant``; ``tenants`` has one summary per
tenant: who it is, its writer role, readiness, pace and ACL names. A single-tenant
agent keeps the shape it always had (its writer's fields at the top). With several,
the top says ``writer`` only when this agent writes for every tenant, ``role`` is
``writer``, ``standby`` or ``mixed``, and ``ready`` is each tenant's.
:func:`only_tenant` cuts a status down to one tenant (``entragate status --tenant``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entragate.tenant_runtime import TenantRuntime

#: The writer fields a tenant's summary repeats from its engine's status.
_SUMMARY = ("tenant_id", "cloud", "writer", "role", "ready", "pace", "lease", "standby_reason",
            "lease_in_doubt", "sessions")


def summary(status: Mapping[str, Any]) -> dict[str, Any]:
    """One tenant's entry under ``tenants``."""
    out = {k: status[k] for k in _SUMMARY if k in status}
    out["acls"] = sorted(status.get("acls", {}))
    out["failing"] = sorted(
        acl for acl, entry in status.get("acls", {}).items()
        if any(loc.get("last_error") for loc in entry.get("locations", []))
    )
    return out


def agent_status(tenants: Mapping[str, TenantRuntime]) -> dict[str, Any]:
    statuses = {name: runtime.status() for name, runtime in tenants.items()}
    if len(statuses) == 1:
        (name, only), = statuses.items()
        result = {k: v for k, v in only.items() if k not in ("tenant", "tenant_id", "cloud")}
        result["tenants"] = {name: summary(only)}
        return result
    writers = [s["writer"] for s in statuses.values()]
    acls: dict[str, Any] = {}
    for status in statuses.values():
        acls.update(status.get("acls", {}))
    first = next(iter(statuses.values()))
    return {
        "writer": all(writers),
        "role": "writer" if all(writers) else "standby" if not any(writers) else "mixed",
        "store_unavailable": first.get("store_unavailable"),  # one store for every tenant
        "ready": all(s.get("ready") for s in statuses.values()),
        "acls": acls,
        "tenants": {name: summary(status) for name, status in statuses.items()},
    }


def only_tenant(status: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The status of one tenant: its summary at the top, its ACLs only. KeyError when the
    agent serves no such tenant."""
    tenants = status.get("tenants") or {}
    if name not in tenants:
        raise KeyError(f"the agent serves no tenant {name!r} (it serves: {', '.join(tenants) or 'none'})")
    entry = dict(tenants[name])
    entry.pop("acls", None)
    acls = {acl: item for acl, item in (status.get("acls") or {}).items() if item.get("tenant") == name}
    return {"tenant": name, **entry, "store_unavailable": status.get("store_unavailable"), "acls": acls}
