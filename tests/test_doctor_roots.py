"""Publisher roots (by key) and TLS-inspection vendor recognition."""

from __future__ import annotations

import hashlib
import string
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from entragate.doctor.roots import (
    MICROSOFT_ROOT_SPKI_SHA256,
    MICROSOFT_ROOTS,
    is_publisher_root,
    leads_to_publisher_root,
    spki_sha256,
)
from entragate.doctor.vendors import VENDORS, identify_vendor
from entragate.emulator.pki import CA, name

CERT_FILES = {
    "DigiCert Global Root G2": "DigiCert_Global_Root_G2.pem",
    "DigiCert Global Root CA": "DigiCert_Global_Root_CA.pem",
    "DigiCert Global Root G3": "DigiCert_Global_Root_G3.pem",
    "Microsoft RSA Root Certificate Authority 2017": "Microsoft_RSA_Root_Certificate_Authority_2017.pem",
    "Microsoft ECC Root Certificate Authority 2017": "Microsoft_ECC_Root_Certificate_Authority_2017.pem",
    "Baltimore CyberTrust Root": "Baltimore_CyberTrust_Root.pem",
}


def test_all_six_roots_embedded() -> None:
    assert set(MICROSOFT_ROOT_SPKI_SHA256) == set(CERT_FILES)
    for root in MICROSOFT_ROOTS:
        assert hashlib.sha256(root.spki_der).hexdigest() == root.spki_sha256
        assert root.public_key is not None


@pytest.mark.parametrize("name", sorted(CERT_FILES))
def test_hash_matches_system_certificate(name: str) -> None:
    path = Path("/etc/ssl/certs") / CERT_FILES[name]
    if not path.exists():
        # platform: the distribution's ca-certificates decides which roots it ships
        # (Baltimore CyberTrust Root left newer ones after its 2025 expiry)
        pytest.skip(f"this system's CA store does not ship {name} ({path})")
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(spki).hexdigest() == MICROSOFT_ROOT_SPKI_SHA256[name]
    assert is_publisher_root(cert, [])
    assert leads_to_publisher_root(cert)


def test_root_recognised_by_key_not_name() -> None:
    path = Path("/etc/ssl/certs/DigiCert_Global_Root_G2.pem")
    subject = (
        x509.load_pem_x509_certificate(path.read_bytes()).subject
        if path.exists()
        else name("DigiCert Global Root G2")
    )
    forged = CA.new(subject=subject).cert
    assert not is_publisher_root(forged, [])
    assert not leads_to_publisher_root(forged)
    assert is_publisher_root(forged, [forged])  # an expected root counts by its key
    assert spki_sha256(forged) not in MICROSOFT_ROOT_SPKI_SHA256.values()


@pytest.mark.parametrize(
    ("cn", "o", "ou", "vendor"),
    [
        ("Zscaler Root CA", "Zscaler Inc.", None, "Zscaler"),
        ("Zscaler Intermediate Root CA (zscalertwo.net)", "Zscaler Inc.", None, "Zscaler"),
        ("Zscaler Intermediate Root CA (zscaler.net) (t) ", None, None, "Zscaler"),
        ("ca.contoso.goskope.com", "Netskope Inc", "Certificate Authority", "Netskope"),
        ("caadmin.netskope.com", None, None, "Netskope"),
        ("Palo Alto Networks Forward Trust CA", None, None, "Palo Alto Networks"),
        ("Forward-Trust-CA", "Palo Alto Networks", None, "Palo Alto Networks"),
        ("FortiGate CA", "Fortinet", "Certificate Authority", "Fortinet"),
        ("Fortinet_CA_SSL", "Fortinet Ltd.", None, "Fortinet"),
        ("Cisco Umbrella Secondary SubCA ams-SG", "Cisco", None, "Cisco Umbrella"),
        ("Cisco Umbrella Root CA", "Cisco", None, "Cisco Umbrella"),
        ("Cisco Umbrella Secondary SubCA sin-SG", None, None, "Cisco Umbrella"),
        ("Blue Coat ProxySG CA", None, None, "Blue Coat/Symantec"),
        ("Symantec Web Security Service Root", "Symantec Corporation", None, "Blue Coat/Symantec"),
        ("Forcepoint Cloud CA", "Forcepoint LLC", None, "Forcepoint"),
        ("Websense Public Primary Certificate Authority", "Websense, Inc.", None, "Forcepoint"),
        ("Sophos SSL CA_C3A1B2", "Sophos", None, "Sophos"),
        ("Check Point Outbound Inspection CA", "Check Point Software Technologies", None, "Check Point"),
        ("McAfee Web Gateway", "McAfee, Inc.", None, "McAfee/Skyhigh"),
        ("Skyhigh Security SSE Root", "Skyhigh Security", None, "McAfee/Skyhigh"),
        ("Kaspersky Anti-Virus Personal Root Certificate", None, None, "Kaspersky"),
        ("ESET SSL Filter CA", "ESET, spol. s r. o.", None, "ESET"),
        ("avast! Web/Mail Shield Root", "avast! Web/Mail Shield", None, "Avast/AVG"),
        ("AVG Web/Mail Shield Root", None, None, "Avast/AVG"),
        ("Bitdefender Personal CA.Net-Defender", "Bitdefender", None, "Bitdefender"),
        ("mitmproxy", "mitmproxy", None, "mitmproxy"),
        ("PortSwigger CA", "PortSwigger", "PortSwigger CA", "Burp"),
        ("DO_NOT_TRUST_FiddlerRoot", "DO_NOT_TRUST", "Created by http://www.fiddler2.com", "Fiddler"),
        ("Charles Proxy CA (28 Nov 2026, build-host)", "XK72 Ltd", "https://charlesproxy.com/ssl", "Charles"),
    ],
)
def test_identify_vendor(cn: str, o: str | None, ou: str | None, vendor: str) -> None:
    assert identify_vendor(name(cn, o, unit=ou)) == vendor


@pytest.mark.parametrize(
    ("cn", "o"),
    [
        ("Contoso Corp Issuing CA", "Contoso Corp"),
        ("Microsoft Azure RSA TLS Issuing CA 03", "Microsoft Corporation"),
        ("DigiCert Global Root G2", "DigiCert Inc"),
        ("Reset Services CA", "Asset Management Ltd"),  # "eset"/"avg" inside other words
        ("Savage Garden CA", "Checkpoints Inc"),
        ("", None),
    ],
)
def test_unrelated_issuer_is_none(cn: str, o: str | None) -> None:
    assert identify_vendor(name(cn or None, o)) is None


_VENDOR_WORDS = [w for v in VENDORS for w in (v.name.lower().split("/") + [v.name.lower()])]


@given(
    st.text(alphabet=string.ascii_letters + string.digits + " -().", min_size=1, max_size=30)
)
def test_property_unknown_issuer_gives_none(words: str) -> None:
    text = f"Contoso {words} Issuing CA".strip()
    lowered = text.lower()
    if any(p.search(text) for v in VENDORS for p in v.patterns):
        return  # hypothesis produced a vendor's word: not an unrelated issuer
    assert not any(w in lowered.split() for w in _VENDOR_WORDS)
    assert identify_vendor(name(text, "Contoso Corp")) is None
