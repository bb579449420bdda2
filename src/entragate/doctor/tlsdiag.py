"""Name the cause of a TLS verification failure (SPEC section 6).

Input: the chain the server actually presented (captured without trusting
it), the server's ``Date``, OpenSSL's ``verify_code`` for the failure, and a
report on the trust store the agent used.  Output: zero or more
:class:`Cause` objects, most fundamental first.

Decisions are made on keys, signatures, validity dates and ``verify_code``,
never on the text of an error message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from entragate.doctor.roots import (
    MICROSOFT_ROOTS,
    chain_path,
    is_publisher_root,
    is_self_signed,
    microsoft_root_for,
    publisher_root_signing,
    signature_verifies,
    signed_by,
    spki_sha256,
)
from entragate.doctor.tlsprobe import Capture
from entragate.doctor.truststore import TrustStoreReport
from entragate.doctor.vendors import identify_vendor

# OpenSSL verify codes (include/openssl/x509_vfy.h, OpenSSL 3.0).
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER = 85
X509_V_ERR_CA_BCONS_NOT_CRITICAL = 89
X509_V_ERR_CA_CERT_MISSING_KEY_USAGE = 92

#: X509_V_FLAG_X509_STRICT rejections the doctor reports as ``noncompliant_ca``.
STRICT_CODES = frozenset(
    {
        X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER,
        X509_V_ERR_CA_BCONS_NOT_CRITICAL,
        X509_V_ERR_CA_CERT_MISSING_KEY_USAGE,
    }
)

VERIFY_CODE_NAMES: dict[int, str] = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    26: "unsupported certificate purpose",
    62: "hostname mismatch",
    79: "invalid CA certificate",
    85: "missing Authority Key Identifier",
    89: "basic constraints of CA certificate not marked critical",
    92: "CA certificate missing key usage",
}

#: Every cause id the TLS diagnosis can produce, in report order.
CAUSE_IDS = (
    "noncompliant_ca",
    "clock_skew",
    "tls_interception",
    "self_signed",
    "incomplete_chain",
    "ca_bundle_missing",
    "ca_bundle_corrupt",
    "ca_bundle_lacks_root",
    "hostname_mismatch",
    "cert_expired",
    "cert_not_yet_valid",
)

# Organisations of the publisher's roots and intermediates, used only to decide
# whether a *missing* intermediate (no key to check) belongs to the publisher.
_PUBLISHER_ORGS = re.compile(r"^(microsoft corporation|digicert,? inc\.?|baltimore)$", re.IGNORECASE)


@dataclass(frozen=True)
class Cause:
    """One named cause: ``id`` from SPEC 6, plain-words ``summary`` and, where they apply,
    the ``issuer`` (subject of the CA at fault), the proxy ``vendor`` and ``skew_seconds``."""

    id: str
    summary: str
    issuer: str | None = None
    vendor: str | None = None
    skew_seconds: int | None = None
    details: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "summary": self.summary,
            "issuer": self.issuer,
            "vendor": self.vendor,
            "skew_seconds": self.skew_seconds,
        }
        for key, value in self.details.items():
            out.setdefault(key, value)
        return out


def display_name(name: x509.Name) -> str:
    """``CN (O)`` or the RFC 4514 form when there is no CN."""
    cns = _attr_values(name, NameOID.COMMON_NAME)
    orgs = _attr_values(name, NameOID.ORGANIZATION_NAME)
    if cns:
        cn = cns[0]
        if orgs and orgs[0] not in cn:
            return f"{cn} ({orgs[0]})"
        return cn
    return name.rfc4514_string() or "(empty name)"


def _attr_values(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    out = []
    for attr in name.get_attributes_for_oid(oid):
        value = attr.value
        out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return out


def _orgs(name: x509.Name) -> list[str]:
    return _attr_values(name, NameOID.ORGANIZATION_NAME)


# -- hostname -------------------------------------------------------------------------------


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _ip_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    # A wildcard covers exactly one left-most label, never a bare suffix.
    suffix = pattern[1:]
    if not host.endswith(suffix):
        return False
    label = host[: -len(suffix)]
    return bool(label) and "." not in label


def names_in(cert: x509.Certificate) -> list[str]:
    names = _dns_names(cert) + _ip_names(cert)
    if names:
        return names
    return _attr_values(cert.subject, NameOID.COMMON_NAME)


def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching on SAN (dNSName with one left-most wildcard label, iPAddress);
    the subject CN is consulted only when the certificate has no SAN names (as OpenSSL does)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(v) == ip for v in _ip_names(cert))
    dns = _dns_names(cert)
    if dns:
        return any(_dns_match(p, host) for p in dns)
    if _ip_names(cert):
        return False
    return any(_dns_match(cn, host) for cn in _attr_values(cert.subject, NameOID.COMMON_NAME))


# -- validity -------------------------------------------------------------------------------


def _valid_at(cert: x509.Certificate, when: datetime) -> str | None:
    """None when valid at ``when``, else "expired" or "not_yet_valid"."""
    if when < cert.not_valid_before_utc:
        return "not_yet_valid"
    if when > cert.not_valid_after_utc:
        return "expired"
    return None


def human_seconds(seconds: float) -> str:
    """A duration for people: "45 s", "12 min", "3.5 h", "4.0 days"."""
    s = abs(int(round(seconds)))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


# -- strict X.509 --------------------------------------------------------------------------


def _strict_violation(cert: x509.Certificate, code: int) -> bool:
    exts = cert.extensions
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        bc = None
    is_ca = bool(bc is not None and bc.value.ca)
    if code == X509_V_ERR_CA_BCONS_NOT_CRITICAL:
        return is_ca and bc is not None and not bc.critical
    if code == X509_V_ERR_CA_CERT_MISSING_KEY_USAGE:
        try:
            exts.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            return is_ca
        return False
    if code == X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER:
        try:
            exts.get_extension_for_class(x509.AuthorityKeyIdentifier)
        except x509.ExtensionNotFound:
            return not is_self_signed(cert)
        return False
    return False


# -- diagnosis ------------------------------------------------------------------------------


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
    orgs = _orgs(name)
    if any(_PUBLISHER_ORGS.match(o.strip()) for o in orgs):
        return True
    expected_orgs = {o.strip().lower() for r in expected_roots for o in _orgs(r.subject)}
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
            if _strict_violation(cert, verify_code):
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
        local = _valid_at(cert, now)
        if local is None:
            continue
        remote = _valid_at(cert, server_date) if server_date is not None else local
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
            add(
                Cause(
                    "ca_bundle_lacks_root",
                    f"{host} presented a genuine chain to '{root_name}', but the trust store in use "
                    f"{store} ({trust.count} certificates) does not contain that root.",
                    issuer=root_name,
                )
            )

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


def verify_code_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    return VERIFY_CODE_NAMES.get(code, f"verify code {code}")


__all__ = [
    "CAUSE_IDS",
    "Cause",
    "STRICT_CODES",
    "diagnose",
    "display_name",
    "hostname_matches",
    "publisher_root_signing",
    "verify_code_name",
]
