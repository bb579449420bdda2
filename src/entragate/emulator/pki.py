"""The one certificate builder: for the emulated tenant, its proxies and the tests.

Value objects in trustme's style (docs/design.md#emulator)::

    root = CA.new("Contoso Root CA", "Contoso")
    issuing = root.intermediate("Contoso TLS Issuing CA 01", "Contoso")
    leaf = issuing.issue("login.microsoftonline.com")
    cert_path, key_path = leaf.write(tmp_path, "server", chain=[issuing])

By default every certificate is a *good* one: it satisfies OpenSSL's
``X509_V_FLAG_X509_STRICT`` rules (critical CA basicConstraints, keyUsage, subject and
authority key identifiers, SAN on leaves), so a strict client accepts it. The parameters
make the broken ones a diagnosis must recognise: a validity window in the past or the
future, other host names, ``IssuedCert.self_signed``, a CA with
``basic_constraints_critical=False`` or ``key_usage=False`` (strict X.509 rejects it),
any subject (vendor-named corporate CAs, a forged publisher name).

Keys are ECDSA P-256 unless ``key_type="rsa"``: cheap to generate, so every test can have
its own hierarchy. App credentials use RSA, as Entra's client assertions are RS256/PS256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DAY = dt.timedelta(days=1)
CA_VALIDITY = 3650 * DAY  # either side of now
LEAF_VALIDITY = 180 * DAY  # from a day ago
RELOAD_MARGIN = 30 * DAY  # a saved CA this close to expiry is replaced, not loaded

_TLS_USAGES = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def name(
    common_name: str | None = None,
    organization: str | None = None,
    *,
    unit: str | None = None,
    country: str | None = None,
    state: str | None = None,
    locality: str | None = None,
) -> x509.Name:
    """A distinguished name from its usual parts (in the order C, ST, L, O, OU, CN)."""
    parts = [
        (NameOID.COUNTRY_NAME, country),
        (NameOID.STATE_OR_PROVINCE_NAME, state),
        (NameOID.LOCALITY_NAME, locality),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        (NameOID.COMMON_NAME, common_name),
    ]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])


def new_key(key_type: KeyType = "ec") -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Credential:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class IssuedCert(Credential):
    """A leaf certificate (a TLS server's, or an app's credential)."""

    @classmethod
    def self_signed(
        cls,
        *hosts: str,
        common_name: str | None = None,
        organization: str | None = None,
        subject: x509.Name | None = None,
        key_type: KeyType = "ec",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCert:
        """A leaf that signs itself; with no ``hosts`` it carries no SAN (an app credential)."""
        return _leaf(hosts, None, common_name, organization, subject, None, key_type, not_before, not_after)

    def write(self, directory: Path, stem: str, chain: Iterable[Credential] = ()) -> tuple[Path, Path]:
        """Write ``stem.pem`` (this certificate, then ``chain``: what a server sends) and
        ``stem.key``; return their paths."""
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        write_private(key_path, self.key_pem)
        write_public(cert_path, self.cert_pem + b"".join(c.cert_pem for c in chain))
        return cert_path, key_path


@dataclass(frozen=True)
class CA(Credential):
    """A certificate authority: a root, or an intermediate signed by another CA."""

    @classmethod
    def new(
        cls,
        common_name: str | None = None,
        organization: str | None = None,
        *,
        unit: str | None = None,
        country: str | None = None,
        subject: x509.Name | None = None,
        issuer: CA | None = None,
        path_length: int | None = None,
        basic_constraints_critical: bool = True,
        key_usage: bool = True,
        key_type: KeyType = "ec",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> CA:
        """A root (or, with ``issuer``, an intermediate). ``subject`` replaces the name built
        from the other parts."""
        subject = subject or name(common_name, organization, unit=unit, country=country)
        return _ca(subject, issuer, path_length, basic_constraints_critical, key_usage, key_type, not_before, not_after)

    def intermediate(self, common_name: str | None = None, organization: str | None = None, **options: Any) -> CA:
        """A CA signed by this one (it also carries the TLS extended key usages); ``options``
        as for :meth:`new`."""
        return CA.new(common_name, organization, issuer=self, **options)

    def issue(
        self,
        *hosts: str,
        common_name: str | None = None,
        organization: str | None = None,
        subject: x509.Name | None = None,
        key: PrivateKey | None = None,
        key_type: KeyType = "ec",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> IssuedCert:
        """A leaf for ``hosts`` (DNS names, wildcards or IP addresses) signed by this CA.

        The subject is ``common_name`` (default: the first host) and ``organization``,
        unless ``subject`` is given. ``key`` reuses a key (a proxy's leaves share one).
        """
        return _leaf(hosts, self, common_name, organization, subject, key, key_type, not_before, not_after)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CA | None:
        """A CA written by :meth:`save`; None when absent, unreadable or about to expire."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            return None
        if cert.not_valid_after_utc < now() + RELOAD_MARGIN:
            return None
        return cls(cert, key)

    def save(self, cert_path: Path, key_path: Path) -> None:
        write_private(key_path, self.key_pem)
        write_public(cert_path, self.cert_pem)


# --------------------------------------------------------------------------- building


def _key_usage(*, ca: bool, key: PrivateKey) -> x509.KeyUsage:
    rsa_leaf = not ca and isinstance(key, rsa.RSAPrivateKey)
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_leaf,
        data_encipherment=False,
        key_agreement=not ca and not rsa_leaf,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca(
    subject: x509.Name,
    issuer: CA | None,
    path_length: int | None,
    basic_constraints_critical: bool,
    key_usage: bool,
    key_type: KeyType,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> CA:
    key = new_key(key_type)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=path_length), basic_constraints_critical)
    ]
    if key_usage:
        extensions.append((_key_usage(ca=True, key=key), True))
    if issuer is not None:
        extensions.append((_TLS_USAGES, False))
    start = not_before or now() - CA_VALIDITY
    cert = _certificate(subject, key, issuer, start, not_after or now() + CA_VALIDITY, extensions)
    return CA(cert, key)


def _leaf(
    hosts: tuple[str, ...],
    issuer: CA | None,
    common_name: str | None,
    organization: str | None,
    subject: x509.Name | None,
    key: PrivateKey | None,
    key_type: KeyType,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> IssuedCert:
    key = key or new_key(key_type)
    if subject is None:
        subject = name(common_name or hosts[0], organization)
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(ca=False, key=key), True),
        (_TLS_USAGES, False),
    ]
    if hosts:
        extensions.append((x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False))
    start = not_before or now() - DAY
    cert = _certificate(subject, key, issuer, start, not_after or now() + LEAF_VALIDITY, extensions)
    return IssuedCert(cert, key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _certificate(
    subject: x509.Name,
    key: PrivateKey,
    issuer: CA | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """Sign ``subject``'s certificate: by ``issuer``, or by ``key`` itself when None."""
    signer = issuer.key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


# --------------------------------------------------------------------------- files


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_public(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, world-readable (certificates only)."""
    write_private(path, data)
    path.chmod(0o644)
