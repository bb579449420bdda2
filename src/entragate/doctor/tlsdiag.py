"""Name the cause of a TLS verification failure (docs/design.md#doctor).

Input: the chain the server actually presented (captured without trusting
it), the server's ``Date``, OpenSSL's ``verify_code`` for the failure, and a
report on the trust store the agent used.  Output: zero or more
:class:`Cause` objects, most fundamental first.

Decisions are made on keys, signatures, validity dates and ``verify_code``,
never on the text of an error message.  What one certificate says (names,
validity, strict X.509) is read by :mod:`entragate.doctor.certinfo`; the cause
ids and verify codes are catalogued in :mod:`entragate.doctor.causes`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509

from entragate.doctor.causes import (
    CAUSE_IDS,
    STRICT_CODES,
    VERIFY_CODE_NAMES,
    X509_V_ERR_CERT_HAS_EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID,
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    X509_V_ERR_HOSTNAME_MISMATCH,
    Cause,
    human_seconds,
    verify_code_name,
)
from entragate.doctor.certinfo import (
    breaks_strict_rule,
    display_name,
    hostname_matches,
    names_in,
    organisations,
    validity_problem,
)
from entragate.doctor.roots import (
    MICROSOFT_ROOTS,
    chain_path,
    is_publisher_root,
    is_self_signed,
    microsoft_root_for,
    microsoft_root_named,
    signature_verifies,
    signed_by,
    spki_sha256,
)
from entragate.doctor.tlsprobe import Capture
from entragate.doctor.truststore import TrustStoreReport
from entragate.doctor.vendors import identify_vendor

# Organisations of the publisher's roots and intermediates, used only to decide
# whether a *missing* intermediate (no key to check) belongs to the publisher.
_PUBLISHER_ORGS = re.compile(r"^(microsoft corporation|digicert,? inc\.?|baltimore)$", re.IGNORECASE)


def _anchor(
    path: Sequence[x509.Certificate], expected_roots: Sequence[x509.Certificate]
) -> tuple[str, str] | None:
    """(name, SPKI hash) of the publisher root the presented path leads to."""
    for cert in path:
        ms = microsoft_root_for(cert)
        if ms is not None:
            return ms.name, ms.spki_sha256
        if is_publisher_root(cert, expected_roots):
            return display_name(cert.subject), spki_sha256(cert)
    top = path[-1]
    for root in MICROSOFT_ROOTS:
        if signature_verifies(top, root.public_key):
            return root.name, root.spki_sha256
    for exp in expected_roots:
        if signed_by(top, exp):
            return display_name(exp.subject), spki_sha256(exp)
    return None


def _looks_like_publisher(name: x509.Name, expected_roots: Sequence[x509.Certificate]) -> bool:
    """Only for a *missing* issuer (no key to check): its organisation is the publisher's."""
    if identify_vendor(name) is not None:
        return False
    orgs = organisations(name)
    if any(_PUBLISHER_ORGS.match(o.strip()) for o in orgs):
        return True
    expected_orgs = {o.strip().lower() for r in expected_roots for o in organisations(r.subject)}
    return any(o.strip().lower() in expected_orgs for o in orgs)


def _store_where(trust: TrustStoreReport) -> str:
    label = trust.origin if trust.origin == "system" else f"{trust.origin}"
    return f"{label} ({trust.path})" if trust.path else label


def diagnose(
    host: str,
    capture: Capture,
    *,
    verify_code: int | None,
    trust: TrustStoreReport,
    expected_roots: Sequence[x509.Certificate] = (),
    now: datetime | None = None,
) -> list[Cause]:
    """Causes of a failed verification of ``host``, most fundamental first."""
    now = now or datetime.now(UTC)
    certs = list(capture.certs)
    if not certs:
        return []
    causes: dict[str, Cause] = {}

    def add(cause: Cause) -> None:
        causes.setdefault(cause.id, cause)

    leaf = certs[0]
    path = chain_path(certs)
    top = path[-1]
    top_name = display_name(top.subject)
    store = _store_where(trust)

    lone_self_signed = len(path) == 1 and is_self_signed(leaf) and not is_publisher_root(leaf, expected_roots)
    anchor = _anchor(path, expected_roots)
    leads = anchor is not None
    top_self = is_self_signed(top)
    # The CA at the top of the presented path is vouched for by the store in use.
    store_vouches = trust.contains(top) or (not top_self and trust.find_issuer(top) is not None)

    # -- strict X.509 (keyed on verify_code) -----------------------------------------------
    if verify_code in STRICT_CODES:
        offender = None
        candidates = list(path)
        issuer_in_store = trust.find_issuer(top) if not top_self else None
        if issuer_in_store is not None:
            candidates.append(issuer_in_store)
        for cert in reversed(candidates):
            if breaks_strict_rule(cert, verify_code):
                offender = cert
                break
        ca = offender or (issuer_in_store or top)
        what = VERIFY_CODE_NAMES.get(verify_code, f"verify code {verify_code}")
        vendor = identify_vendor(ca.subject) or identify_vendor(ca.issuer)
        add(
            Cause(
                "noncompliant_ca",
                f"{host}'s certificate chains to {display_name(ca.subject)}, which the trust store "
                f"in use accepts, but strict X.509 checking rejects it: {what} "
                f"(verify code {verify_code}). Reissue that CA with RFC 5280 extensions "
                "(critical basicConstraints, keyUsage keyCertSign, key identifiers).",
                issuer=display_name(ca.subject),
                vendor=vendor,
                details={"verify_code": verify_code},
            )
        )

    # -- validity at both clocks -----------------------------------------------------------
    server_date = capture.server_date
    for cert in path:
        local = validity_problem(cert, now)
        if local is None:
            continue
        remote = validity_problem(cert, server_date) if server_date is not None else local
        label = display_name(cert.subject)
        if server_date is not None and remote is None:
            skew = int(round((server_date - now).total_seconds()))
            direction = "behind" if skew > 0 else "ahead of"
            add(
                Cause(
                    "clock_skew",
                    f"This machine's clock is {human_seconds(skew)} {direction} {host}'s "
                    f"(server Date {server_date:%Y-%m-%d %H:%M:%S} UTC, local "
                    f"{now:%Y-%m-%d %H:%M:%S} UTC): certificate '{label}' is valid at the server's "
                    "time but not at the local time. Fix the clock (NTP).",
                    issuer=display_name(cert.issuer),
                    skew_seconds=skew,
                )
            )
        elif local == "expired":
            add(
                Cause(
                    "cert_expired",
                    f"Certificate '{label}' presented by {host} expired on "
                    f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
                    + (" (by the server's clock too)" if server_date is not None else "")
                    + f"; issued by {display_name(cert.issuer)}.",
                    issuer=display_name(cert.issuer),
                    vendor=identify_vendor(cert.issuer),
                )
            )
        else:
            add(
                Cause(
                    "cert_not_yet_valid",
                    f"Certificate '{label}' presented by {host} is not valid until "
                    f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
                    + (" (by the server's clock too)" if server_date is not None else "")
                    + f"; issued by {display_name(cert.issuer)}.",
                    issuer=display_name(cert.issuer),
                    vendor=identify_vendor(cert.issuer),
                )
            )
    if verify_code in (X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID) and not (
        {"clock_skew", "cert_expired", "cert_not_yet_valid"} & causes.keys()
    ):
        # The out-of-date certificate is in the trust store (the presented ones are fine).
        cid = "cert_expired" if verify_code == X509_V_ERR_CERT_HAS_EXPIRED else "cert_not_yet_valid"
        add(
            Cause(
                cid,
                f"Verifying {host} failed because a certificate of the chain "
                f"{'has expired' if cid == 'cert_expired' else 'is not yet valid'} "
                f"(verify code {verify_code}); the one at fault is in the trust store {store}.",
                issuer=top_name,
            )
        )

    # -- who signed the chain --------------------------------------------------------------
    if lone_self_signed:
        add(
            Cause(
                "self_signed",
                f"{host} presented a lone self-signed certificate '{display_name(leaf.subject)}' "
                "that is not one of the publisher's roots: something other than Microsoft "
                "answered (a proxy, a captive portal or a misdirected DNS/hosts entry).",
                issuer=display_name(leaf.subject),
                vendor=identify_vendor(leaf.subject),
            )
        )
    elif not leads:
        issuer_missing = not top_self and not store_vouches
        if issuer_missing and _looks_like_publisher(top.issuer, expected_roots):
            missing = display_name(top.issuer)
            add(
                Cause(
                    "incomplete_chain",
                    f"{host} sent its certificate without the intermediate '{missing}', and the "
                    f"trust store in use {store} cannot supply it: the server (or a load balancer "
                    "in front of it) omitted part of its chain.",
                    issuer=missing,
                    details={"presented": len(certs)},
                )
            )
            if not trust.exists:
                add(_bundle_missing(host, trust))
            elif not (trust.readable and trust.parseable):
                add(_bundle_corrupt(host, trust))
        elif not store_vouches:
            vendor = identify_vendor(top.subject) or identify_vendor(top.issuer)
            if vendor is None:
                for cert in path:
                    vendor = identify_vendor(cert.issuer)
                    if vendor:
                        break
            # The subject of the top certificate; when a proxy sent its leaf alone, the
            # leaf's issuer is the best name there is for the CA that re-signed it.
            issuer = top_name if top_self or len(path) > 1 else display_name(top.issuer)
            product = f" ({vendor})" if vendor else ""
            add(
                Cause(
                    "tls_interception",
                    f"The connection to {host} was re-signed by '{issuer}'{product}, which is not one "
                    "of Microsoft's roots nor the expected roots: a TLS-inspection proxy or security "
                    f"product is intercepting it, and the trust store in use {store} does not "
                    "trust its CA.",
                    issuer=issuer,
                    vendor=vendor,
                )
            )
    else:
        assert anchor is not None
        root_name, root_hash = anchor
        if not trust.exists:
            add(_bundle_missing(host, trust))
        elif not (trust.readable and trust.parseable):
            add(_bundle_corrupt(host, trust))
        elif not trust.contains_key(root_hash) and not store_vouches:
            add(_lacks_root(host, top, root_name, trust, store))

    # -- hostname --------------------------------------------------------------------------
    if not hostname_matches(leaf, host) or verify_code == X509_V_ERR_HOSTNAME_MISMATCH:
        names = ", ".join(names_in(leaf)[:6]) or "no names"
        add(
            Cause(
                "hostname_mismatch",
                f"The certificate presented for {host} does not name it (it names {names}); "
                "the connection reached the wrong server, or a DNS/hosts/connect_to entry points "
                "elsewhere.",
                issuer=display_name(leaf.issuer),
                vendor=identify_vendor(leaf.issuer),
            )
        )

    if verify_code in (
        X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    ) and not ({"self_signed", "tls_interception"} & causes.keys()):
        add(
            Cause(
                "self_signed",
                f"{host} presented a self-signed certificate '{display_name(leaf.subject)}'.",
                issuer=display_name(leaf.subject),
                vendor=identify_vendor(leaf.subject),
            )
        )

    order = {cid: i for i, cid in enumerate(CAUSE_IDS)}
    return sorted(causes.values(), key=lambda c: order.get(c.id, len(order)))


def _lacks_root(host: str, top: x509.Certificate, root_name: str, trust: TrustStoreReport, store: str) -> Cause:
    """The chain is genuine, but the store has neither its root nor the root that cross-signed it."""
    root = microsoft_root_named(root_name)
    summary = (
        f"{host} presented a genuine chain to '{root_name}', but the trust store in use "
        f"{store} ({trust.count} certificates) does not contain that root."
    )
    if root is not None and root.cross_signed_by:
        if microsoft_root_for(top) is root:
            summary += f" Nor does it contain '{root.cross_signed_by}', which cross-signed it."
        else:
            summary += (
                f" The server omitted the cross certificate that links '{root_name}' to "
                f"'{root.cross_signed_by}', so only a store holding '{root_name}' itself can verify "
                "this chain: not an interception, a store that lacks Microsoft's new root."
            )
    outdated = trust.outdated_reason()
    if outdated:
        summary += f" The store is outdated: {outdated}."
    return Cause(
        "ca_bundle_lacks_root",
        summary,
        issuer=root_name,
        details={"missing_root": root_name, "store_outdated": outdated is not None},
    )


def _bundle_missing(host: str, trust: TrustStoreReport) -> Cause:
    return Cause(
        "ca_bundle_missing",
        f"The chain {host} presented is Microsoft's (or the expected roots'), but the CA bundle "
        f"selected by {trust.origin} does not exist: {trust.path or 'no path'}.",
        details={"origin": trust.origin, "path": trust.path},
    )


def _bundle_corrupt(host: str, trust: TrustStoreReport) -> Cause:
    why = trust.problem or "it cannot be read or parsed"
    return Cause(
        "ca_bundle_corrupt",
        f"The chain {host} presented is Microsoft's (or the expected roots'), but the CA bundle "
        f"selected by {trust.origin} is unusable: {why}.",
        details={"origin": trust.origin, "path": trust.path},
    )


# Where the rest of the doctor (and its tests) have always imported these from.
__all__ = [
    "CAUSE_IDS",
    "Cause",
    "STRICT_CODES",
    "diagnose",
    "display_name",
    "hostname_matches",
    "human_seconds",
    "verify_code_name",
]
