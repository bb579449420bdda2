"""The doctor's cause catalogue: :class:`Cause`, the TLS cause ids in report
order, and the OpenSSL verify codes the diagnosis keys on (docs/design.md#doctor)."""

from __future__ import annotations

from dataclasses import dataclass, field

# OpenSSL's X509_V_ERR_* verify codes (their values as of OpenSSL 3.0).
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



@dataclass(frozen=True)
class Cause:
    """One named cause: its ``id`` (docs/design.md#doctor), a plain-words ``summary`` and,
    where they apply, the ``issuer`` (subject of the CA at fault), the proxy ``vendor`` and
    ``skew_seconds``."""


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


def verify_code_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    return VERIFY_CODE_NAMES.get(code, f"verify code {code}")


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
