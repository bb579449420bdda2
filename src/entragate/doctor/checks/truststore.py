"""The ``truststore`` check: the store the agent uses exists, parses, holds a
publisher root, holds every root Microsoft's endpoints chain to today, and is
not stale."""

from __future__ import annotations

from collections.abc import Mapping

from entragate.doctor import osfix
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import FAIL, PASS, WARN, CheckResult
from entragate.doctor.checks.tls import tls_fixes
from entragate.doctor.osfix import OsInfo
from entragate.doctor.truststore import TrustStoreReport
from entragate.errors import Code

BUNDLE_STALE_DAYS = 730


def check_truststore(
    trust: TrustStoreReport,
    *,
    env: Mapping[str, str],
    os_info: OsInfo,
    tls: CheckResult,
) -> CheckResult:
    ignored = [
        v
        for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
        if env.get(v) and v != trust.origin
    ]
    where = f"{trust.path}" + (f" + {trust.capath}" if trust.capath else "")
    base = f"{trust.origin}: {where}"
    tls_bundle_causes = [c for c in tls.causes if c.id.startswith("ca_bundle_")]
    if not trust.exists or not (trust.readable and trust.parseable):
        cid = "ca_bundle_missing" if not trust.exists else "ca_bundle_corrupt"
        fix = tls_fixes(
            [Cause(cid, "")], os_info=os_info, trust=trust, hosts=[], proxied=False
        )
        return CheckResult(
            "truststore",
            FAIL,
            f"{base}: {trust.problem or 'unusable'}",
            code=Code.ENTRA003,
            causes=tls_bundle_causes
            or [Cause(cid, f"The trust store selected by {trust.origin} is unusable: {trust.problem}.")],
            fix=fix,
        )
    age = f", {trust.age_days:.0f} days old" if trust.age_days is not None else ""
    roots = ", ".join(trust.publisher_roots[:3]) or "none of the publisher's roots"
    summary = f"{base} ({trust.count} certificates{age}; holds {roots})"
    if ignored:
        summary += f"; overrides {', '.join(ignored)}"
    if not trust.has_publisher_root:
        fix = tls_fixes(
            [Cause("ca_bundle_lacks_root", "")], os_info=os_info, trust=trust, hosts=[], proxied=False
        )
        status = FAIL if tls_bundle_causes else WARN
        return CheckResult(
            "truststore",
            status,
            f"{base} holds none of Microsoft's roots (nor the expected roots) ({trust.count} certificates)",
            code=Code.ENTRA003 if status == FAIL else None,
            causes=tls_bundle_causes
            or [
                Cause(
                    "ca_bundle_lacks_root",
                    f"The trust store selected by {trust.origin} ({trust.path}) does not contain "
                    "any of Microsoft's roots; genuine connections to Microsoft cannot verify. "
                    f"It needs {', '.join(trust.missing_roots)}.",
                    details={"missing_roots": list(trust.missing_roots)},
                )
            ],
            fix=fix,
        )
    outdated = trust.outdated_reason()
    if outdated is not None:
        cause = Cause(
            "ca_bundle_outdated",
            f"The trust store selected by {trust.origin} ({trust.path}) is outdated: {outdated}. "
            f"Missing: {', '.join(trust.missing_roots)}.",
            details={"missing_roots": trust.outdated_roots(), "legacy_roots": list(trust.legacy_roots)},
        )
        # A TLS failure that the store explains makes the outdated store a failure too.
        status = FAIL if tls_bundle_causes else WARN
        causes = [*tls_bundle_causes, cause]
        return CheckResult(
            "truststore",
            status,
            f"{base} is outdated: {outdated}",
            code=Code.ENTRA003 if status == FAIL else None,
            causes=causes,
            fix=tls_fixes(causes, os_info=os_info, trust=trust, hosts=[], proxied=False),
        )
    if trust.age_days is not None and trust.age_days > BUNDLE_STALE_DAYS:
        return CheckResult(
            "truststore",
            WARN,
            summary + f"; not updated for {trust.age_days:.0f} days",
            causes=[Cause("ca_bundle_stale", f"{trust.path} has not changed for {trust.age_days:.0f} days.")],
            fix=osfix.refresh_bundle_fix(os_info),
        )
    return CheckResult("truststore", PASS, summary)
