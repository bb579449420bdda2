"""The ``locations`` and ``throttling`` checks: each acl's named location is
there and unambiguous, its static ranges are acceptable, and Graph is not
throttling; plus the result for a failed Graph read."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from entragate.config import Config
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import FAIL, PASS, WARN, CheckResult, error_detail
from entragate.errors import Code, EntraError
from entragate.grants.validation import MIN_PREFIX_V4, MIN_PREFIX_V6

MAX_LOCATIONS_PER_TENANT = 195


def graph_error_result(check_id: str, err: EntraError, *, host: str) -> CheckResult:
    """The failed ``check_id`` (permissions, locations or throttling) for a failed Graph read."""
    detail = error_detail(err)
    if err.code == Code.ENTRA002:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph refused to list named locations: {detail}",
            code=Code.ENTRA002,
            causes=[Cause("graph_forbidden", "Graph answered 403: the permission is missing or not consented.")],
            fix=[
                "grant Policy.Read.All and Policy.ReadWrite.ConditionalAccess (Application) with admin consent",
            ],
        )
    if err.code == Code.ENTRA005:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph throttled the read (429, no Retry-After): {detail}",
            code=Code.ENTRA005,
            causes=[
                Cause(
                    "throttled",
                    "The tenant's Conditional Access budget (about 1 request/s, shared by every app in "
                    "the tenant) is exhausted.",
                )
            ],
            fix=[
                "find other apps or scripts calling Conditional Access APIs in this tenant",
                "keep [agent] rate at 1 (or lower) and retry later",
            ],
        )
    if err.code == Code.ENTRA008:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph server error: {detail}",
            code=Code.ENTRA008,
            causes=[Cause("service_error", f"{host} answered with a 5xx status.")],
            fix=["Microsoft had a problem; entragate retries. See https://status.cloud.microsoft"],
        )
    if err.code == Code.ENTRA004:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph did not answer: {detail}",
            code=Code.ENTRA004,
            causes=[Cause("graph_timeout", f"{host} did not answer within the timeout.")],
            fix=[f"check the network path to {host}, or raise `timeout`"],
        )
    return CheckResult(
        check_id,
        FAIL,
        f"listing named locations failed: {detail}",
        code=err.code,
        causes=[Cause("graph_request_failed", err.title)],
        fix=[err.hint],
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


def check_locations(config: Config, locations: Sequence[object]) -> CheckResult:
    from entragate.graph.client import NamedLocation

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
        matches = [loc for loc in locs if loc.id == acl.location or loc.display_name == acl.location]
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: {len(matches)} named locations are called {acl.location!r} ({ids})",
                code=Code.ENTRA006,
                causes=[Cause("location_ambiguous", f"Several named locations match {acl.location!r}.")],
                fix=[f"rename the duplicates in the portal or set acl.{acl.name}.location to one of: {ids}"],
            )
        if not matches:
            if acl.create:
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
                warns.append(
                    Cause("location_will_be_created", f"{acl.location!r} does not exist yet; the agent will create it.")
                )
                parts.append(f"{acl.name} -> (will be created)")
                continue
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: no named location is called {acl.location!r}",
                code=Code.ENTRA006,
                causes=[Cause("location_missing", f"No named location matches {acl.location!r}.")],
                fix=[
                    f"create an IP ranges location named {acl.location!r} in the portal "
                    "(Protection > Conditional Access > Named locations), or",
                    f"set acl.{acl.name}.create = true, or set location to the location's id",
                ],
            )
        loc = matches[0]
        if not loc.is_ip:
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: {acl.location!r} is a {loc.odata_type or 'non-IP'} location, not IP ranges",
                code=Code.ENTRA006,
                causes=[Cause("location_not_ip", f"{acl.location!r} is not an IP named location.")],
                fix=[f"point acl.{acl.name}.location at an IP ranges location"],
            )
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
