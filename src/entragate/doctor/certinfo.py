"""What a certificate says, read without trusting it: display names, the host
names it covers (RFC 6125 matching), validity at a given time and the strict
X.509 (RFC 5280) rules OpenSSL's X509_V_FLAG_X509_STRICT enforces."""

from __future__ import annotations

import ipaddress
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from entragate.doctor.causes import (
    X509_V_ERR_CA_BCONS_NOT_CRITICAL,
    X509_V_ERR_CA_CERT_MISSING_KEY_USAGE,
    X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER,
)
from entragate.doctor.roots import is_self_signed


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


def organisations(name: x509.Name) -> list[str]:
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


def validity_problem(cert: x509.Certificate, when: datetime) -> str | None:
    """None when valid at ``when``, else "expired" or "not_yet_valid"."""
    if when < cert.not_valid_before_utc:
        return "not_yet_valid"
    if when > cert.not_valid_after_utc:
        return "expired"
    return None


# -- strict X.509 --------------------------------------------------------------------------


def breaks_strict_rule(cert: x509.Certificate, code: int) -> bool:
    """``cert`` breaks the strict X.509 rule behind verify ``code`` (one of STRICT_CODES)."""
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
