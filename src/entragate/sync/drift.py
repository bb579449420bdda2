"""Verify: find each shard's named location in what Entra holds, and notice hand edits.

The writer reads every named location in one paged list (docs/design.md#writer)
and adopts what it finds as the applied state. A location edited by hand (in the
portal) then differs from the plan, so the next write repairs it: drift is only
logged here, never written around.
"""

from __future__ import annotations

from collections.abc import Callable

from entragate.config import AclConfig
from entragate.errors import EntraError, LocationProblem
from entragate.graph.client import NamedLocation
from entragate.graph.matching import resolve_location
from entragate.logs import get_logger
from entragate.sync.ranges import location_name
from entragate.sync.state import LocationState

Park = Callable[[LocationState, EntraError], None]


def adopt(
    acl: AclConfig, states: list[LocationState], locations: list[NamedLocation], *, host: str, park: Park
) -> bool:
    """Match the ACL's shards, in order, to ``locations`` (the first shard names the rest);
    True when a read was stale (Graph still lags behind a write): read again soon."""
    stale = False
    for state in states:
        stale = _adopt_one(acl, state, states[0], locations, host=host, park=park) or stale
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
    if state.stale_read(set(found.cidrs)):
        return True  # Graph still shows what it held before our write: not drift
    if state.applied is not None and state.applied != set(found.cidrs):
        get_logger(component="sync").warning(
            "location.drift",
            acl=acl.name,
            location=found.display_name,
            unexpected=sorted(set(found.cidrs) - state.applied) if state.applied else [],
            missing=sorted(state.applied - set(found.cidrs)) if state.applied else [],
        )
    state.location = found
    state.name = found.display_name
    state.applied = set(found.cidrs)
    if state.last_error is not None and isinstance(state.last_error, LocationProblem):
        state.last_error, state.parked_until = None, 0.0
    return False
