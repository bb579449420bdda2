"""The ENTRA000–ENTRA009 catalogue: one definition of each code, its title, whether it
is retried, the operator's next step and its page under ``docs/errors/``.

This is the only module of ``src/`` that spells a code: everything else says
``Code.ENTRA003``. It imports nothing heavy, so ``entragate explain`` starts fast
(docs/design.md#errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path


class Code(StrEnum):
    """A stable error code; its value is the code itself (``Code.ENTRA003 == "ENTRA003"``)."""

    ENTRA000 = "ENTRA000"
    ENTRA001 = "ENTRA001"
    ENTRA002 = "ENTRA002"
    ENTRA003 = "ENTRA003"
    ENTRA004 = "ENTRA004"
    ENTRA005 = "ENTRA005"
    ENTRA006 = "ENTRA006"
    ENTRA007 = "ENTRA007"
    ENTRA008 = "ENTRA008"
    ENTRA009 = "ENTRA009"

    @property
    def title(self) -> str:  # type: ignore[override]  # the code's title, not str.title()
        return _FACTS[self].title

    @property
    def retryable(self) -> bool:
        """Retried with backoff by the writer; any other code parks the location."""
        return _FACTS[self].retryable

    @property
    def next_step(self) -> str:
        return _FACTS[self].next_step

    @property
    def page(self) -> str:
        """The documentation page's file name, ``ENTRAnnn.md``."""
        return f"{self.value}.md"

    @classmethod
    def parse(cls, text: str) -> Code | None:
        """``entra3``, ``ENTRA003`` or ``003`` → ``Code.ENTRA003``; None when unknown."""
        cleaned = text.strip().upper()
        digits = cleaned.removeprefix("ENTRA")
        if digits.isdigit() and len(digits) <= 3:
            cleaned = f"ENTRA{int(digits):03d}"
        try:
            return cls(cleaned)
        except ValueError:
            return None


@dataclass(frozen=True)
class _CodeFacts:
    title: str
    retryable: bool
    next_step: str


_FACTS: dict[Code, _CodeFacts] = {
    Code.ENTRA000: _CodeFacts(
        "Cannot connect to Microsoft",
        True,
        "check DNS, the route and the proxy setting for this host; run `entragate doctor`",
    ),
    Code.ENTRA001: _CodeFacts(
        "Authentication failed",
        False,
        "check tenant_id, client_id and the credential; run `entragate doctor`",
    ),
    Code.ENTRA002: _CodeFacts(
        "Authorization failed",
        False,
        "grant the application permission Policy.ReadWrite.ConditionalAccess "
        "(and Policy.Read.All) with admin consent",
    ),
    Code.ENTRA003: _CodeFacts(
        "TLS certificate not trusted",
        False,
        "run `entragate doctor` to name the cause (inspecting proxy, CA bundle or clock)",
    ),
    Code.ENTRA004: _CodeFacts(
        "Timed out",
        True,
        "check the proxy and firewall path to this host, or raise `timeout`",
    ),
    Code.ENTRA005: _CodeFacts(
        "Throttled",
        True,
        "entragate backs off and retries; check other apps using Conditional Access APIs",
    ),
    Code.ENTRA006: _CodeFacts(
        "Named location missing or ambiguous",
        False,
        "check the acl's `location` (display name or id) in the Entra portal",
    ),
    Code.ENTRA007: _CodeFacts(
        "Request rejected",
        False,
        "check the ranges and the limits (2000 ranges, /8, 195 locations)",
    ),
    Code.ENTRA008: _CodeFacts(
        "Microsoft service error",
        True,
        "Microsoft had a problem; entragate retries. See the Microsoft 365 service health",
    ),
    Code.ENTRA009: _CodeFacts(
        "Proxy refused",
        False,
        "ask the proxy's administrators to allow CONNECT to Microsoft's hosts for this "
        "host, or bypass the proxy with NO_PROXY",
    ),
}

# The AADSTS codes a daemon meets, each with what it usually means (ENTRA001's page).
AADSTS_HINTS: dict[int, str] = {
    7000215: "the client secret is wrong; the portal shows a secret's Value only once, and the "
    "Secret ID next to it is not the secret",
    7000222: "the client secret has expired; create a new one in the app registration",
    700016: "the application was not found in this tenant; check client_id and tenant_id",
    90002: "the tenant was not found; check tenant_id and `cloud` (global, usgov, usgov-dod, china)",
    900023: "tenant_id is malformed; use the Directory (tenant) ID GUID or a verified domain",
    700027: "the certificate assertion was rejected; upload this certificate to the app "
    "registration or fix client_certificate",
    700024: "the certificate assertion is outside its valid time; this host's clock is probably "
    "wrong: enable NTP",
    7000218: "no credential was sent; set client_secret or client_certificate",
    53003: "Conditional Access blocked the token request; exclude this workload identity or "
    "allow this host's address",
}


def explain_text(code: str) -> str | None:
    """The page for ``code`` (docs/errors/ENTRAnnn.md), or None when the code is unknown."""
    known = Code.parse(code)
    if known is None:
        return None
    # A checkout (and an editable install) reads docs/ in place; a wheel carries a copy.
    in_checkout = Path(__file__).resolve().parents[3] / "docs" / "errors" / known.page
    if in_checkout.exists():
        return in_checkout.read_text(encoding="utf-8")
    packaged = resources.files("entragate") / "docs" / known.page
    return packaged.read_text(encoding="utf-8") if packaged.is_file() else None
