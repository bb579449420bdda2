"""What ``entragate why`` reads before :func:`~entragate.why.analysis.explain` decides:
the grants (through the running agent, or the store), the user's sign-ins (Graph, on
the sign-in logs' own pacer) and, only when a policy blocked a sign-in, the named
locations and policies (two Conditional Access reads, paced at ``agent.rate``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from entragate.config import AclConfig, Config
from entragate.errors import EntraError, Throttled
from entragate.grants.model import Grant
from entragate.graph.client import GraphClient, NamedLocation
from entragate.graph.directory import REPORTS_RATE, DirectoryClient, SignIn
from entragate.sync.pacer import Pacer, full_jitter
from entragate.sync.ranges import location_name
from entragate.why.analysis import Explanation, explain

DEFAULT_TOP = 10
T = TypeVar("T")


def managed_location_ids(acls: Iterable[AclConfig], locations: Sequence[NamedLocation]) -> set[str]:
    """The ids of the named locations the ACLs manage (every shard: NAME, NAME (2) …)."""
    ids: set[str] = set()
    for acl in acls:
        names = {location_name(acl.location, i).casefold() for i in range(acl.max_locations)}
        ids |= {loc.id for loc in locations if loc.display_name.casefold() in names or loc.id == acl.location}
    return ids


def policy_uses(policy: dict[str, Any], managed: set[str], trusted: bool) -> bool:
    """Whether a Conditional Access policy's location condition names a managed location."""
    locations = ((policy.get("conditions") or {}).get("locations")) or {}
    named = set(locations.get("includeLocations") or []) | set(locations.get("excludeLocations") or [])
    return bool(named & managed) or (trusted and "AllTrusted" in named)


def _policy_locations(config: Config, graph: GraphClient, acls: Sequence[AclConfig],
                      notes: list[str]) -> dict[str, bool] | None:
    pacer = Pacer(config.agent.rate)  # Conditional Access reads: the tenant's 1 request/second
    ca = GraphClient(config, graph.session, graph.tokens, before_request=pacer.acquire)
    try:
        managed = managed_location_ids(acls, _patiently(pacer, lambda: ca.list_locations(ip_only=True)))
        policies = _patiently(pacer, ca.list_policies)
    except EntraError as error:
        notes.append(f"could not read the Conditional Access policies ({error.code}): whether a "
                     f"blocking policy uses the managed location is unknown. {error.hint}")
        return None
    finally:
        pacer.stop()
    trusted = any(acl.trusted for acl in acls)
    return {str(p.get("id")): policy_uses(p, managed, trusted) for p in policies}


def _patiently(pacer: Pacer, read: Callable[[], T], attempts: int = 4) -> T:
    """``read``, again after a 429 (other tools share the budget; Retry-After when given)."""
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except Throttled as error:
            if attempt == attempts:
                raise
            pacer.penalize(error.retry_after or full_jitter(attempt, cap=8.0, floor=1.0))
    raise AssertionError("unreachable")


def gather(config: Config, user: str, grants: Sequence[Grant], acl: str | None, *,
           top: int = DEFAULT_TOP) -> Explanation:
    """Read the sign-ins and, when needed, the policies; then explain them."""
    names = [acl] if acl else sorted(config.acls)
    in_scope = [g for g in grants if g.acl in names]
    directory = DirectoryClient(config, rate=REPORTS_RATE)
    notes: list[str] = []
    try:
        sign_ins = directory.sign_ins(user, top=top)
        uses: dict[str, bool] | None = None
        if any(p.result == "failure" for s in sign_ins for p in s.policies):
            uses = _policy_locations(config, directory.graph, [config.acls[n] for n in names], notes)
    finally:
        directory.close()
    if any(s.ca_status == "failure" and not s.policies for s in sign_ins):
        notes.append("Graph listed no applied Conditional Access policies: the app needs Policy.Read.All "
                     "besides AuditLog.Read.All to see which policy blocked a sign-in")
    me = _identities(user, sign_ins)
    mine = [g for g in in_scope if g.user.casefold() in me]
    others = [g for g in in_scope if g.user.casefold() not in me]
    return explain(user, names, mine, others, sign_ins, uses_location=uses, notes=notes)


def _identities(user: str, sign_ins: Sequence[SignIn]) -> set[str]:
    """The names a grant of this user may carry: what was asked, and the UPN and object id
    Graph reports for the sign-ins."""
    found = {user.strip().casefold()}
    for s in sign_ins:
        found |= {v.casefold() for v in (s.user_principal_name, s.user_id) if v}
    return found
