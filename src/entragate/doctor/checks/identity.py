"""The ``token`` and ``permissions`` checks: what the token endpoint said about
the credentials (by AADSTS code) and the application roles the token carries.

The access token is only decoded here to read its ``roles``; it is never
printed or logged.
"""

from __future__ import annotations

import base64
import binascii
import json

from entragate.doctor import osfix
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import FAIL, PASS, WARN, CheckResult, error_detail
from entragate.doctor.osfix import OsInfo
from entragate.errors import Code, EntraError

READ_PERMISSION = "Policy.Read.All"
WRITE_PERMISSION = "Policy.ReadWrite.ConditionalAccess"
#: Optional application permissions, each with what needs it, and the broader roles that also do.
OPTIONAL_PERMISSIONS: dict[str, tuple[str, frozenset[str]]] = {
    "AuditLog.Read.All": ("`entragate why` (sign-in logs)", frozenset()),
    "User.RevokeSessions.All": ("revoke_sessions", frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})),
}


def decode_jwt_payload(token: str) -> dict[str, object]:
    """The claims of a JWT, *without* verifying it (only to read ``roles``)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (IndexError, ValueError, binascii.Error, UnicodeError):
        return {}
    return data if isinstance(data, dict) else {}


AADSTS_FIXES: dict[int, list[str]] = {
    7000215: [
        "Entra admin center > App registrations > (your app) > Certificates & secrets > New client secret",
        "copy the secret's Value (shown once), not its Secret ID (a GUID), into client_secret_file",
    ],
    7000222: [
        "the client secret has expired: Entra admin center > App registrations > (your app) > "
        "Certificates & secrets > New client secret, then update client_secret_file",
    ],
    90002: [
        "check tenant_id (Directory (tenant) ID) and cloud: global, usgov, usgov-dod or china "
        "(a US Gov or China tenant is not found on login.microsoftonline.com)",
    ],
    900023: ["tenant_id must be the Directory (tenant) ID GUID or a verified domain (contoso.onmicrosoft.com)"],
    700016: [
        "the app (client_id) is not registered in this tenant: check client_id and tenant_id "
        "(the Overview page of the app registration shows both)",
    ],
    700024: [
        "the client assertion is outside its valid time: this host's clock is probably wrong",
        "sudo timedatectl set-ntp true",
    ],
    700027: [
        "upload the certificate in client_certificate to the app registration "
        "(Certificates & secrets > Certificates), or point client_certificate at the uploaded one",
    ],
    7000218: ["set client_secret (or client_secret_file) or client_certificate"],
    53003: [
        "a Conditional Access policy for workload identities blocks this app's token: find it in "
        "Entra admin center > Sign-in logs > Service principal sign-ins (filter by the app's client_id; "
        "the Conditional Access tab names the policy)",
        "then exclude this app (its service principal) from that policy, or add this host's public "
        "address to a trusted named location the policy allows; never to an entragate-managed one, "
        "whose ranges come and go with grants",
    ],
}


def token_result(
    err: EntraError | None, *, host: str, timed_out: bool, timeout: float, os_info: OsInfo
) -> CheckResult:
    if timed_out:
        return CheckResult(
            "token",
            FAIL,
            f"no token from {host} within {timeout:g}s",
            code=Code.ENTRA004,
            causes=[Cause("token_timeout", f"The token request to {host} did not complete in time.")],
            fix=[f"check the network path and proxy to {host}, or raise `timeout`"],
        )
    if err is None:
        return CheckResult("token", PASS, f"{host} issued an application token")
    aadsts = getattr(err, "aadsts", None)
    causes = []
    fix: list[str] = []
    if err.code == Code.ENTRA001:
        cid = "workload_identity_blocked" if aadsts == 53003 else f"aadsts_{aadsts}" if aadsts else "token_rejected"
        causes.append(
            Cause(cid, f"{host} rejected the credentials: {err.hint}", details={"aadsts": aadsts})
        )
        fix = list(AADSTS_FIXES.get(aadsts or 0, [err.hint]))
        if aadsts == 700024:
            fix = [fix[0], *osfix.ntp_fix(os_info)]
    elif err.code == Code.ENTRA005:
        causes.append(Cause("throttled", f"{host} throttled the token request (429)."))
        fix = ["wait and retry; check for other clients hammering the token endpoint"]
    elif err.code == Code.ENTRA004:
        causes.append(Cause("token_timeout", f"The token request to {host} did not complete in time."))
        fix = [f"check the network path and proxy to {host}, or raise `timeout`"]
    elif err.code == Code.ENTRA008:
        causes.append(Cause("service_error", f"{host} answered with a server error."))
        fix = ["Microsoft had a problem; entragate retries. See https://status.cloud.microsoft"]
    else:
        causes.append(Cause("token_request_failed", f"The token request to {host} failed: {err.title}."))
        fix = [err.hint]
    return CheckResult(
        "token",
        FAIL,
        f"token request to {host}: {error_detail(err)}",
        code=err.code,
        causes=causes,
        fix=fix,
    )


def _optional(roles: set[str]) -> tuple[str, list[str]]:
    """The optional permissions, as a summary part, and those missing."""
    missing = [p for p, (_, broader) in OPTIONAL_PERMISSIONS.items() if p not in roles and not roles & broader]
    parts = [f"{p} for {use}: {'missing' if p in missing else 'granted'}"
             for p, (use, _) in OPTIONAL_PERMISSIONS.items()]
    return "; optional " + ", ".join(parts), missing


def check_permissions(access_token: str, *, revoke_sessions: bool = False) -> CheckResult:
    """The roles the token carries; ``revoke_sessions``: an ACL needs User.RevokeSessions.All."""
    claims = decode_jwt_payload(access_token)
    roles_claim = claims.get("roles")
    roles = {str(r) for r in roles_claim} if isinstance(roles_claim, list) else set()
    grant_fix = [
        "Entra admin center > App registrations > (your app) > API permissions > Add a permission > "
        "Microsoft Graph > Application permissions: Policy.Read.All and Policy.ReadWrite.ConditionalAccess",
        "then Grant admin consent for the tenant",
    ]
    if not roles and "scp" in claims:
        return CheckResult(
            "permissions",
            FAIL,
            "the token carries delegated scopes (scp), not application roles",
            code=Code.ENTRA002,
            causes=[Cause("delegated_permissions", "The permissions were added as Delegated, not Application.")],
            fix=grant_fix,
        )
    missing = [p for p in (READ_PERMISSION, WRITE_PERMISSION) if p not in roles]
    have = ", ".join(sorted(roles)) or "no roles"
    if WRITE_PERMISSION in missing:
        return CheckResult(
            "permissions",
            FAIL,
            f"missing {' and '.join(missing)} (the token has {have})",
            code=Code.ENTRA002,
            causes=[
                Cause(
                    "missing_permission",
                    f"The application lacks {', '.join(missing)} (application permission with admin "
                    "consent); entragate needs Policy.ReadWrite.ConditionalAccess to write named locations.",
                    details={"missing": missing},
                )
            ],
            fix=grant_fix,
        )
    if missing:
        return CheckResult(
            "permissions",
            WARN,
            f"missing {READ_PERMISSION} (reads work through {WRITE_PERMISSION})",
            causes=[Cause("missing_permission", f"{READ_PERMISSION} is not granted.", details={"missing": missing})],
            fix=grant_fix,
        )
    optional, optional_missing = _optional(roles)
    if revoke_sessions and "User.RevokeSessions.All" in optional_missing:
        return CheckResult(
            "permissions",
            WARN,
            "an ACL sets revoke_sessions but the token lacks User.RevokeSessions.All: sessions are "
            "not revoked when access ends" + optional,
            causes=[Cause("missing_permission", "User.RevokeSessions.All is not granted.",
                          details={"missing": ["User.RevokeSessions.All"]})],
            fix=[grant_fix[0].replace("Policy.Read.All and Policy.ReadWrite.ConditionalAccess",
                                      "User.RevokeSessions.All"), grant_fix[1]],
        )
    return CheckResult(
        "permissions", PASS, f"token roles include {READ_PERMISSION} and {WRITE_PERMISSION}" + optional,
    )
