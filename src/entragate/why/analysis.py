"""Why a grant did (not) work for a sign-in: pure functions over grants and sign-ins.

``explain`` takes the user's active grants, everybody else's in the same ACLs, the
user's newest sign-ins (Graph's ``signIn`` records) and, when they could be read,
which Conditional Access policies reference a managed named location; it returns one
finding per sign-in and one verdict with its next step (docs/why.md lists them).
Nothing here does I/O, so every verdict is tested from plain values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from entragate.grants.model import Grant, rfc3339
from entragate.graph.directory import SignIn

#: A failed sign-in this soon after the grant was stored may have been evaluated before the
#: paced write reached Entra (a slot, the round trip, Graph's replication).
APPLY_GRACE = timedelta(seconds=60)
LOG_LAG_NOTE = ("Entra's sign-in logs can lag by several minutes (sometimes more): a sign-in made "
                "just now may not be listed yet")

# Coverage of one sign-in's address.
GRANTED = "granted"  # an active grant of this user held the address at that time
GRANTED_TO_OTHER = "granted_to_other"  # another user's grant held it: the location had it
BEFORE_GRANT = "before_grant"  # a grant holds it now, made after the sign-in
FAMILY_MISMATCH = "family_mismatch"  # IPv6 while the user's grants hold IPv4 only, or the reverse
NOT_GRANTED = "not_granted"


@dataclass(frozen=True)
class Finding:
    """One sign-in and what the grants said about its address."""

    sign_in: SignIn
    coverage: str
    grant: Grant | None = None  # the grant that covered it (or came after it)
    #: failing policies → True when the policy references a managed location, None: unknown
    failing_policies: tuple[tuple[str, str, bool | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        s = self.sign_in
        return {
            "time": rfc3339(s.created),
            "app": s.app,
            "ip_address": s.ip_address,
            "conditional_access_status": s.ca_status,
            "error_code": s.error_code,
            "failure_reason": s.failure_reason or None,
            "applied_policies": [
                {"id": p.id, "display_name": p.display_name, "result": p.result} for p in s.policies
            ],
            "coverage": self.coverage,
            "grant": self.grant.to_json() if self.grant else None,
            "failing_policies": [
                {"id": pid, "display_name": name, "uses_managed_location": uses}
                for pid, name, uses in self.failing_policies
            ],
        }


@dataclass(frozen=True)
class Verdict:
    id: str
    summary: str
    next_step: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "summary": self.summary, "next": self.next_step, "details": dict(self.details)}


@dataclass(frozen=True)
class Explanation:
    user: str
    acls: tuple[str, ...]
    grants: tuple[Grant, ...]
    findings: tuple[Finding, ...]
    verdict: Verdict
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "acls": list(self.acls),
            "grants": [g.to_json() for g in self.grants],
            "sign_ins": [f.to_json() for f in self.findings],
            "verdict": self.verdict.to_json(),
            "notes": list(self.notes),
        }


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _holds(grant: Grant, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    network = ipaddress.ip_network(grant.cidr, strict=False)
    return network.version == address.version and address in network


def _family(version: int) -> str:
    return "IPv6" if version == 6 else "IPv4"


def classify(sign_in: SignIn, mine: Sequence[Grant], others: Sequence[Grant],
             uses_location: Mapping[str, bool] | None) -> Finding:
    """The coverage of one sign-in's address by the grants, and its failing policies."""
    failing = tuple(
        (p.id, p.display_name, None if uses_location is None else uses_location.get(p.id))
        for p in sign_in.policies if p.result == "failure"
    )
    address = _address(sign_in.ip_address)
    if address is None:
        return Finding(sign_in, NOT_GRANTED, failing_policies=failing)
    at = sign_in.created
    holding = [g for g in mine if _holds(g, address)]
    active = [g for g in holding if g.created_at <= at < g.expires_at]
    if active:
        return Finding(sign_in, GRANTED, max(active, key=lambda g: g.created_at), failing)
    if any(_holds(g, address) and g.created_at <= at < g.expires_at for g in others):
        return Finding(sign_in, GRANTED_TO_OTHER, None, failing)
    later = [g for g in holding if g.created_at > at]
    if later:
        return Finding(sign_in, BEFORE_GRANT, min(later, key=lambda g: g.created_at), failing)
    families = {ipaddress.ip_network(g.cidr, strict=False).version for g in mine}
    if families and address.version not in families:
        return Finding(sign_in, FAMILY_MISMATCH, None, failing)
    return Finding(sign_in, NOT_GRANTED, None, failing)


def explain(
    user: str,
    acls: Iterable[str],
    mine: Sequence[Grant],
    others: Sequence[Grant],
    sign_ins: Sequence[SignIn],
    *,
    uses_location: Mapping[str, bool] | None = None,
    notes: Sequence[str] = (),
) -> Explanation:
    """Findings for ``sign_ins`` (newest first) and the verdict, decided by the newest."""
    newest_first = sorted(sign_ins, key=lambda s: s.created, reverse=True)
    findings = tuple(classify(s, mine, others, uses_location) for s in newest_first)
    acl_names = tuple(sorted(set(acls)))
    verdict = _verdict(user, acl_names, mine, findings)
    all_notes = [*notes]
    if verdict.id in ("no_sign_in_since_grant", "signed_in_before_grant", "no_grant"):
        all_notes.append(LOG_LAG_NOTE)
    return Explanation(user, acl_names, tuple(mine), findings, verdict, tuple(all_notes))


def _grant_command(ip: str, acls: Sequence[str], user: str) -> str:
    acl = acls[0] if acls else "NAME"
    return f"entragate grant {ip} --acl {acl} --user {user} --ttl 8h"


def _verdict(user: str, acls: Sequence[str], mine: Sequence[Grant], findings: Sequence[Finding]) -> Verdict:
    if not mine:
        seen = findings[0].sign_in.ip_address if findings else None
        return Verdict(
            "no_grant",
            f"{user} holds no active grant" + (f" in {', '.join(acls)}" if acls else ""),
            f"grant the address the user signs in from: {_grant_command(seen or 'IP', acls, user)}",
            {"last_sign_in_address": seen},
        )
    first = min(g.created_at for g in mine)
    newest = findings[0] if findings else None
    if newest is None or newest.sign_in.created < first:
        if newest is not None and newest.coverage == BEFORE_GRANT and not newest.sign_in.succeeded:
            return _before_grant(newest)
        return Verdict(
            "no_sign_in_since_grant",
            f"no sign-in of {user} is logged since the grant was stored ({rfc3339(first)})"
            + (f"; the newest is from {rfc3339(newest.sign_in.created)}" if newest else ""),
            "ask the user to sign in again, then run this again in a few minutes: " + LOG_LAG_NOTE,
            {"grant_created_at": rfc3339(first),
             "last_sign_in_at": rfc3339(newest.sign_in.created) if newest else None},
        )
    s = newest.sign_in
    where = f"{s.ip_address} ({s.app or 'an application'}) at {rfc3339(s.created)}"
    if not s.succeeded and s.ca_status != "failure":
        return Verdict(
            "failed_for_other_reason",
            f"the sign-in from {where} failed with error {s.error_code} ({s.failure_reason or 'no reason given'}); "
            "Conditional Access did not block it",
            "this is not about the address: look the error code up in the Entra sign-in logs "
            "(https://login.microsoftonline.com/error?code=" + str(s.error_code) + ")",
            {"error_code": s.error_code},
        )
    unrelated = [(pid, name) for pid, name, uses in newest.failing_policies if uses is False]
    if not s.succeeded and unrelated:
        names = ", ".join(repr(name) for _, name in unrelated)
        return Verdict(
            "policy_without_location",
            f"the sign-in from {where} was blocked by {names}, which does not use the managed named "
            "location: no grant can lift it",
            f"exclude the managed location in {names} (or make it a condition of that policy), or "
            "exclude this user from it; docs/conditional-access.md shows the policy shape",
            {"policies": [{"id": pid, "display_name": name} for pid, name in unrelated]},
        )
    if newest.coverage in (GRANTED, GRANTED_TO_OTHER):
        if s.succeeded:
            return Verdict(
                "granted_and_signed_in",
                f"the sign-in from {where} was covered by an active grant and succeeded",
                "nothing to fix; if the user still cannot work, look at that application's own access",
                {},
            )
        grant = newest.grant
        if grant is not None and s.created - grant.created_at < APPLY_GRACE:
            return _before_grant(newest)
        names = ", ".join(repr(name) for _, name, _ in newest.failing_policies) or "a policy"
        return Verdict(
            "blocked_despite_grant",
            f"the address {s.ip_address} was granted, yet Conditional Access blocked the sign-in at "
            f"{rfc3339(s.created)} ({names})",
            f"read the grant controls of {names} (MFA, a compliant device …): the location only "
            "lifts the condition that uses it; run `entragate status` to see that the address is applied",
            {"policies": [{"id": pid, "display_name": name} for pid, name, _ in newest.failing_policies]},
        )
    if newest.coverage == BEFORE_GRANT:
        return _before_grant(newest)
    if s.succeeded:
        return Verdict(
            "not_blocked_without_grant",
            f"the sign-in from {where} succeeded although nobody granted {s.ip_address}: no policy "
            "that uses the managed location applied to it",
            "check that the policy covers this user and this application and is enabled, not "
            "report-only (`entragate doctor` checks the policies)",
            {},
        )
    families = sorted({_family(ipaddress.ip_network(g.cidr, strict=False).version) for g in mine})
    granted = ", ".join(sorted({g.cidr for g in mine}))
    if newest.coverage == FAMILY_MISMATCH:
        address = _address(s.ip_address)
        family = _family(address.version if address else 4)
        return Verdict(
            "ip_family_mismatch",
            f"{user} signed in from the {family} address {s.ip_address} while the grants hold "
            f"{' and '.join(families)} only ({granted})",
            f"grant the {family} address too ({_grant_command(s.ip_address, acls, user)}), or have the "
            "orchestrator capture both: a dual-stack browser reaches Microsoft over IPv6 when it can, "
            "while the portal it logged in to may have seen IPv4",
            {"sign_in_family": family, "granted_families": families, "granted": sorted({g.cidr for g in mine})},
        )
    return Verdict(
        "address_not_granted",
        f"{user} signed in from {s.ip_address}, which nobody granted (granted: {granted})",
        f"a proxy, VPN or NAT egress differs from the address the orchestrator saw: grant the "
        f"egress address ({_grant_command(s.ip_address, acls, user)}) or make the orchestrator "
        "capture the address Microsoft sees",
        {"granted": sorted({g.cidr for g in mine})},
    )


def _before_grant(finding: Finding) -> Verdict:
    s, grant = finding.sign_in, finding.grant
    assert grant is not None
    return Verdict(
        "signed_in_before_grant",
        f"the sign-in at {rfc3339(s.created)} from {s.ip_address} came before the grant of "
        f"{grant.cidr} was in force in Entra (stored at {rfc3339(grant.created_at)})",
        "sign in again now: Conditional Access is evaluated when a token is issued, and a write "
        "reaches Entra within seconds of the grant",
        {"sign_in_at": rfc3339(s.created), "grant_created_at": rfc3339(grant.created_at), "cidr": grant.cidr},
    )
