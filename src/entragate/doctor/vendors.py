"""Recognise TLS-inspection products from the names of the CA that re-signed a chain.

Table driven: each product has patterns matched (case-insensitively, as whole
words where that matters) against the organisation, organisational unit and
common name of an issuer.  Products put suffixes into their CA names (cloud
names, site codes, serial numbers), so patterns match a part of the value.
Unknown issuers give ``None``: the doctor never guesses a product.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Vendor:
    name: str
    patterns: tuple[re.Pattern[str], ...]


def _v(name: str, *patterns: str) -> Vendor:
    return Vendor(name, tuple(re.compile(p, re.IGNORECASE) for p in patterns))


#: Product name as reported in the doctor's ``vendor`` field, and what identifies it.
VENDORS: tuple[Vendor, ...] = (
    # "Zscaler Root CA", "Zscaler Intermediate Root CA (zscalertwo.net)", O=Zscaler Inc.
    _v("Zscaler", r"\bzscaler", r"zscaler(one|two|three|beta|gov)?\.net"),
    # O=Netskope Inc, CN=ca.<tenant>.goskope.com
    _v("Netskope", r"\bnetskope\b", r"\bgoskope\.com\b"),
    # "Palo Alto Networks", Prisma Access forward-trust CAs
    _v("Palo Alto Networks", r"\bpalo\s*alto\b", r"\bprisma\s+access\b"),
    # O=Fortinet, CN=FortiGate CA / Fortinet_CA_SSL / FortiProxy
    _v("Fortinet", r"\bfortinet", r"\bforti(gate|proxy|web|client)\b"),
    # "Cisco Umbrella Root CA", per-site "Cisco Umbrella Secondary SubCA ams-SG", OpenDNS
    _v("Cisco Umbrella", r"\bcisco\s+umbrella\b", r"\bopendns\b"),
    # Blue Coat ProxySG, Symantec Web Security Service
    _v("Blue Coat/Symantec", r"\bblue\s*coat\b", r"\bsymantec\b", r"\bproxysg\b"),
    # Forcepoint (formerly Websense)
    _v("Forcepoint", r"\bforcepoint\b", r"\bwebsense\b"),
    # Sophos UTM / XG / Web Appliance
    _v("Sophos", r"\bsophos\b"),
    # O=Check Point Software Technologies
    _v("Check Point", r"\bcheck\s*point\b"),
    # McAfee Web Gateway, Skyhigh Security
    _v("McAfee/Skyhigh", r"\bmcafee\b", r"\bskyhigh\b"),
    # "Kaspersky Anti-Virus Personal Root Certificate"
    _v("Kaspersky", r"\bkaspersky\b"),
    # "ESET SSL Filter CA"
    _v("ESET", r"\beset\b"),
    # "avast! Web/Mail Shield Root", "AVG Web/Mail Shield Root"
    _v("Avast/AVG", r"\bavast\b", r"\bavg\b"),
    # "Bitdefender Personal CA"
    _v("Bitdefender", r"\bbitdefender\b"),
    # CN=mitmproxy, O=mitmproxy
    _v("mitmproxy", r"\bmitmproxy\b"),
    # CN=PortSwigger CA, O=PortSwigger
    _v("Burp", r"\bportswigger\b", r"\bburp\b"),
    # CN=DO_NOT_TRUST_FiddlerRoot, OU=Created by http://www.fiddler2.com
    _v("Fiddler", r"fiddler"),
    # "Charles Proxy CA (12 Jan 2024, host)", O=XK72 Ltd
    _v("Charles", r"\bcharles\s*proxy\b", r"\bxk72\b"),
    # Other products seen in the field.
    _v("iboss", r"\biboss\b"),
    _v("Barracuda", r"\bbarracuda\b"),
    _v("WatchGuard", r"\bwatchguard\b"),
    _v("SonicWall", r"\bsonicwall\b"),
    _v("Menlo Security", r"\bmenlo\s+security\b"),
)

_ATTRS = (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME)


def _values(name: x509.Name) -> list[str]:
    out: list[str] = []
    for oid in _ATTRS:
        for attr in name.get_attributes_for_oid(oid):
            value = attr.value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            out.append(str(value))
    return out


def identify_vendor(issuer: x509.Name) -> str | None:
    """The TLS-inspection product named by ``issuer`` (O, OU or CN), or None when unknown."""
    values = _values(issuer)
    for vendor in VENDORS:
        for value in values:
            if any(p.search(value) for p in vendor.patterns):
                return vendor.name
    return None


def identify_vendor_in_chain(certs: Sequence[x509.Certificate] | Iterable[x509.Certificate]) -> str | None:
    """First product named by any subject or issuer in ``certs`` (top of the chain first)."""
    ordered = list(certs)
    for cert in reversed(ordered):
        for name in (cert.subject, cert.issuer):
            vendor = identify_vendor(name)
            if vendor is not None:
                return vendor
    return None
