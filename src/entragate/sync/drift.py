"""Verify: find each shard's named location in what Entra holds, and notice hand edits.

The writer reads every named location in one paged list (docs/design.md#writer)
and adopts what it finds as the applied state. A location edited by hand (in the
portal) then differs from the plan, so the next write repairs it: drift is only
logged here, never written around. A location that keeps changing under us has
another writer (docs/design.md#foreign-writer): ``foreign.py`` counts those changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entragate.config import AclConfig
from entragate.errors import EntraError, LocationProblem
from entragate.grants.store import rfc3339
from entragate.graph.client import NamedLocation
from entragate.graph.matching import resolve_location
from entragate.logs import get_logger
from entragate.sync.foreign import LISTED, ForeignPace
from entragate.sync.ranges import location_name
from entragate.sync.state import LocationState

Park = Callable[[LocationState, EntraError], None]


def adopt(
    acl: AclConfig,
    states: list[LocationState],
    locations: list[NamedLocation],
    *,
    host: str,
    park: Park,
    pace: ForeignPace | None = None,
    metrics: Any = None,
) -> bool:
    """Match the ACL's shards, in order, to ``locations`` (the first shard names the rest);
    True when a read was stale (Graph still lags behind a write): read again soon."""
    stale = False
    for state in states:
        lagging = _adopt_one(acl, state, states[0], locations, host=host, park=park)
        if state.location is not None and not lagging:
            _watch(acl, state, pace or ForeignPace(), metrics)
        stale = lagging or stale
    return stale


def _adopt_one(
    acl: AclConfig,
    state: LocationState,
    first: LocationState,
    locations: list[NamedLocation],
    *,
    host: str,
    park: Park,
) -> bool:
    try:
        if state.index == 0:
            found = resolve_location(locations, acl.location, create=acl.create, host=host, acl=acl.name)
        else:
            # Further shards are the agent's own, named after the first one as it is in Entra.
            base = first.location.display_name if first.location is not None else first.name
            found = resolve_location(locations, location_name(base, state.index), create=True, host=host,
                                     acl=acl.name)
    except LocationProblem as problem:
        if state.location is not None and state.stale_read(None):
            return True  # the location we just created is not listed yet
        state.location, state.applied = None, None
        park(state, problem)
        return False
    if found is None:
        if state.location is not None and state.stale_read(None):
            return True
        state.location, state.applied = None, None
        return False
    if state.stale_read(set(found.cidrs), found.modified):
        return True  # Graph still shows what it held before our write: not drift
    seen = set(found.cidrs)
    state.foreign_seen = None
    if state.applied is not None and state.applied != seen:
        get_logger(component="sync").warning(
            "location.drift",
            acl=acl.name,
            location=found.display_name,
            unexpected=sorted(seen - state.applied) if state.applied else [],
            missing=sorted(state.applied - seen) if state.applied else [],
        )
        state.foreign_seen = (sorted(seen - state.applied), sorted(state.applied - seen))
    elif (
        state.applied is not None
        and not state.wrote_since_read
        and None not in (found.modified, state.seen_modified)
        and found.modified != state.seen_modified
    ):
        state.foreign_seen = ([], [])  # rewritten by someone else, ranges unchanged
    state.seen_modified, state.wrote_since_read = found.modified, False
    state.location = found
    state.name = found.display_name
    state.applied = set(found.cidrs)
    if state.last_error is not None and isinstance(state.last_error, LocationProblem):
        state.last_error, state.parked_until = None, 0.0
    return False


def _watch(acl: AclConfig, state: LocationState, pace: ForeignPace, metrics: Any) -> None:
    """Count what this read showed as another writer's change; log an episode's start and end."""
    seen, state.foreign_seen = state.foreign_seen, None
    log = get_logger(component="sync")
    if seen is not None:
        added, removed = seen
        if not state.foreign.changed(added, removed, pace):
            return
        log.warning(
            "location.foreign_writer",
            state="started",
            acl=acl.name,
            location=state.name,
            changes=state.foreign.changes,
            window_seconds=pace.window,
            added=added[:LISTED],
            added_count=len(added),
            removed=removed[:LISTED],
            removed_count=len(removed),
            repair_interval_seconds=pace.repair_interval,
        )
    else:
        since, changes = state.foreign.since, state.foreign.changes
        if not state.foreign.unchanged(pace):
            return
        log.info(
            "location.foreign_writer",
            state="ended",
            acl=acl.name,
            location=state.name,
            since=rfc3339(since) if since else None,
            changes=changes,
        )
    if metrics is not None:
        metrics.set_foreign_writer(acl.name, state.name, state.foreign.active)
