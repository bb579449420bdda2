"""The ``locations`` and ``throttling`` checks: each acl's named location is
there and unambiguous, its static ranges are acceptable, and Graph is not
throttling; plus the result for a failed Graph read."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from entragate.config import AclConfig, Config
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import FAIL, PASS, WARN, CheckResult, error_detail
from entragate.errors import Code, EntraError, LocationProblem
from entragate.grants.validation import MIN_PREFIX_V4, MIN_PREFIX_V6

MAX_LOCATIONS_PER_TENANT = 195


# What a failed Graph read means for the doctor, per code: (summary, cause id, cause
# text, fixes); ``{host}`` is the Graph host. Other codes use the error's own title and hint.
_GRAPH_READ_FAILURES: dict[Code, tuple[str, str, str, tuple[str, ...]]] = {
    Code.ENTRA002: (
        "Graph refused to list named locations",
        "graph_forbidden",
        "Graph answered 403: the permission is missing or not consented.",
        ("grant Policy.Read.All and Policy.ReadWrite.ConditionalAccess (Application) with admin consent",),
    ),
    Code.ENTRA005: (
        "Graph throttled the read (429, no Retry-After)",
        "throttled",
        "The tenant's Conditional Access budget (about 1 request/s, shared by every app in "
        "the tenant) is exhausted.",
        (
            "find other apps or scripts calling Conditional Access APIs in this tenant",
            "keep [agent] rate at 1 (or lower) and retry later",
        ),
    ),
    Code.ENTRA008: (
        "Graph server error",
        "service_error",
        "{host} answered with a 5xx status.",
        ("Microsoft had a problem; entragate retries. See https://status.cloud.microsoft",),
    ),
    Code.ENTRA004: (
        "Graph did not answer",
        "graph_timeout",
        "{host} did not answer within the timeout.",
        ("check the network path to {host}, or raise `timeout`",),
    ),
}


def graph_error_result(check_id: str, err: EntraError, *, host: str) -> CheckResult:
    """The failed ``check_id`` (permissions, locations or throttling) for a failed Graph read."""
    detail = error_detail(err)
    known = _GRAPH_READ_FAILURES.get(err.code)
    fixes: tuple[str, ...]
    if known is None:
        summary, cause_id, cause_text, fixes = (
            "listing named locations failed", "graph_request_failed", err.title, (err.hint,)
        )
    else:
        summary, cause_id, cause_text, fixes = known
        cause_text = cause_text.format(host=host)
        fixes = tuple(f.format(host=host) for f in fixes)
    return CheckResult(
        check_id,
        FAIL,
        f"{summary}: {detail}",
        code=err.code,
        causes=[Cause(cause_id, cause_text)],
        fix=list(fixes),
    )


def _static_problems(config: Config) -> list[str]:
    problems = []
    for acl in config.acls.values():
        for cidr in acl.static:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                problems.append(f"acl.{acl.name}.static {cidr!r} is not an address or CIDR")
                continue
            if "/" not in cidr:
                continue
            minimum = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
            if net.prefixlen < minimum:
                problems.append(f"acl.{acl.name}.static {cidr} is shorter than /{minimum}: Graph rejects it")
        if len(acl.static) > acl.max_ranges:
            problems.append(f"acl.{acl.name} has {len(acl.static)} static ranges, over max_ranges {acl.max_ranges}")
    return problems


def foreign_writer_causes(agent_status: Mapping[str, Any] | None) -> list[Cause]:
    """The running agent's locations that someone else keeps changing
    (docs/design.md#foreign-writer), from its ``GET /v1/status``."""
    causes = []
    for acl_name, acl in ((agent_status or {}).get("acls") or {}).items():
        for entry in acl.get("locations") or ():
            episode = entry.get("foreign_writer")
            if not episode:
                continue
            last = episode.get("last_change") or {}
            changed = ", ".join(
                [f"added {', '.join(last.get('added') or [])}"] * bool(last.get("added"))
                + [f"removed {', '.join(last.get('removed') or [])}"] * bool(last.get("removed"))
            ) or "rewrote it"
            causes.append(Cause(
                "foreign_writer",
                f"acl {acl_name}: {entry.get('name')!r} is being changed by someone else "
                f"({episode.get('changes')} changes since {episode.get('since')}; last: {changed}); "
                "the agent repairs it slowly while this lasts.",
                details={"acl": acl_name, "location": entry.get("name"), **episode},
            ))
    return causes


FOREIGN_WRITER_FIX = (
    "find the other writer: a second entragate agent on this tenant with its own store (the "
    "common cause: point every agent at one shared PostgreSQL store, or stop the extra one), "
    "a script or automation (Terraform, CIPP, a scheduled job), or a person editing the "
    "location in the portal; give entragate its own location and leave it alone"
)


def check_locations(
    config: Config, locations: Sequence[object], agent_status: Mapping[str, Any] | None = None
) -> CheckResult:
    from entragate.graph.client import NamedLocation
    from entragate.graph.matching import closest_names, resolve_location

    locs = [loc for loc in locations if isinstance(loc, NamedLocation)]
    problems = _static_problems(config)
    if problems:
        return CheckResult(
            "locations",
            FAIL,
            problems[0],
            code=Code.ENTRA007,
            causes=[Cause("invalid_static_range", p) for p in problems],
            fix=["fix the static ranges: CIDR form, at least /9 (IPv4) or /16 (IPv6), at most 2000 per location"],
        )
    if not config.acls:
        return CheckResult(
            "locations",
            WARN,
            f"{len(locs)} named location(s) readable, but no [acl.NAME] is configured",
            causes=[Cause("no_acls", "No access list is configured.")],
            fix=['[acl.staff]\nlocation = "entragate staff"'],
        )
    parts: list[str] = []
    warns: list[Cause] = []
    for acl in config.acls.values():
        try:
            found = resolve_location(locs, acl.location, create=acl.create, host=config.graph_host, acl=acl.name)
        except LocationProblem as problem:
            return _location_problem(acl, problem)
        if found is None:
            if len(locs) >= MAX_LOCATIONS_PER_TENANT:
                return CheckResult(
                    "locations",
                    FAIL,
                    f"acl {acl.name}: {acl.location!r} does not exist and cannot be created: the tenant "
                    f"already has {len(locs)} named locations (limit {MAX_LOCATIONS_PER_TENANT})",
                    code=Code.ENTRA007,
                    causes=[Cause("location_limit", "The tenant is at Microsoft's 195 named locations limit.")],
                    fix=["delete unused named locations in the portal, or point the acl at an existing one"],
                )
            close = closest_names(acl.location, locs)
            guess = f" (did you mean {', '.join(repr(n) for n in close)}?)" if close else ""
            warns.append(
                Cause(
                    "location_will_be_created",
                    f"{acl.location!r} does not exist yet; the agent will create it (create = true){guess}.",
                )
            )
            parts.append(f"{acl.name} -> (will be created)")
            continue
        loc = found
        if loc.is_trusted != acl.trusted:
            warns.append(
                Cause(
                    "location_trust_differs",
                    f"{acl.location!r} is {'trusted' if loc.is_trusted else 'not trusted'} in Entra but "
                    f"acl.{acl.name}.trusted = {str(acl.trusted).lower()}.",
                )
            )
        parts.append(f"{acl.name} -> {loc.display_name} ({len(loc.cidrs)} ranges)")
    summary = f"{len(locs)} named location(s); " + "; ".join(parts)
    foreign = foreign_writer_causes(agent_status)
    if foreign:
        summary += "; " + "; ".join(
            f"{c.details['location']} is being changed by someone else" for c in foreign
        )
        return CheckResult("locations", WARN, summary, causes=warns + foreign, fix=[FOREIGN_WRITER_FIX])
    if warns:
        return CheckResult("locations", WARN, summary, causes=warns)
    return CheckResult("locations", PASS, summary)


def check_throttling(config: Config, graph_error: EntraError | None, reads: int) -> CheckResult:
    if graph_error is not None and graph_error.code == Code.ENTRA005:
        result = graph_error_result("throttling", graph_error, host=config.graph_host)
        return result
    rate = config.agent.rate
    if rate > 1.0:
        return CheckResult(
            "throttling",
            WARN,
            f"[agent] rate = {rate:g}/s exceeds Conditional Access's ~1 request/s per tenant",
            causes=[Cause("rate_too_high", "The configured rate invites 429s (they carry no Retry-After).")],
            fix=["[agent]\nrate = 1"],
        )
    return CheckResult(
        "throttling",
        PASS,
        f"no 429 on {reads} Graph read(s); agent paces writes at {rate:g}/s per tenant",
    )


#: The doctor's cause id for each reason a location cannot be used.
_PROBLEM_CAUSES = {"ambiguous": "location_ambiguous", "not_ip": "location_not_ip", "missing": "location_missing"}


def _location_problem(acl: AclConfig, problem: LocationProblem) -> CheckResult:
    """The ENTRA006 result for an acl whose location is missing, ambiguous or not an IP location."""
    from entragate.graph.matching import is_location_id

    cause = Cause(_PROBLEM_CAUSES.get(problem.reason or "", "location_missing"), problem.detail,
                  details={"ids": list(problem.ids), "suggestions": list(problem.suggestions)})
    if problem.reason == "ambiguous":
        fix = [f"rename the duplicates in the portal or set acl.{acl.name}.location to one of: {', '.join(problem.ids)}"]
    elif problem.reason == "not_ip":
        fix = [f"point acl.{acl.name}.location at an IP ranges location"]
    elif is_location_id(acl.location):
        fix = [f"acl.{acl.name}.location = {acl.location!r} is an id no location has (ids are never created): "
               "copy the id from the portal (Protection > Conditional Access > Named locations), or use its name"]
    else:
        fix = [f"set acl.{acl.name}.location to {problem.suggestions[0]!r}"] if problem.suggestions else []
        fix += [
            f"or create an IP ranges location named {acl.location!r} in the portal "
            "(Protection > Conditional Access > Named locations)",
            f"or set acl.{acl.name}.create = true to have the agent create it",
        ]
    return CheckResult("locations", FAIL, problem.detail, code=Code.ENTRA006, causes=[cause], fix=fix)
