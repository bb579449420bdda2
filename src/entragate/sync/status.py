"""The per-ACL and per-location snapshots behind ``status`` and ``sync --dry-run``.

Counts and ranges leave the placeholder out: it only keeps an empty location valid.
"""

from __future__ import annotations

from typing import Any

from entragate.config import AclConfig
from entragate.grants.store import rfc3339
from entragate.sync.state import LocationState


def location_status(state: LocationState, placeholder: str) -> dict[str, Any]:
    error = state.last_error
    applied = sorted(state.applied) if state.applied is not None else None
    return {
        "name": state.name,
        "id": state.location.id if state.location else None,
        "desired": 0 if state.desired == [placeholder] else len(state.desired),
        "applied": None if applied is None else (0 if applied == [placeholder] else len(applied)),
        "ranges_desired": [r for r in state.desired if r != placeholder],
        "ranges_applied": None if applied is None else [r for r in applied if r != placeholder],
        "in_sync": state.applied is not None and set(state.desired) == state.applied,
        "last_sync": rfc3339(state.last_sync) if state.last_sync else None,
        "last_error": None
        if error is None
        else {"code": error.code, "message": error.message, "request_id": error.request_id},
        "throttled_until": rfc3339(state.throttled_until) if state.throttled_until else None,
    }


def acl_status(
    acl: AclConfig,
    states: list[LocationState],
    grants: int,
    placeholder: str,
    *,
    writer: bool,
) -> dict[str, Any]:
    """One ACL. Only the writer reads Entra, so a standby cannot tell whether it is in sync."""
    locations = [location_status(s, placeholder) for s in states]
    if not writer:
        for entry in locations:
            entry["in_sync"] = None  # unknown here: ask the writer
    return {
        "location": acl.location,
        "grants": grants,
        "empty": not grants and not acl.static,
        "locations": locations,
    }


def plan_entry(state: LocationState, ranges: list[str], placeholder: str) -> dict[str, Any]:
    """What a sync would write to one location now."""
    applied = state.applied or set()
    return {
        "location": state.name,
        "exists": state.location is not None,
        "add": sorted(set(ranges) - applied - {placeholder}),
        "remove": sorted(applied - set(ranges) - {placeholder}),
        "write": state.location is None or applied != set(ranges),
    }
