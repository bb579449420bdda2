"""Inspect the trust store the agent actually uses (docs/design.md#doctor).

``origin`` names the setting that selected it: ``ca_bundle`` (config file or
``ENTRAGATE_CA_BUNDLE``), ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``,
``SSL_CERT_FILE``, ``SSL_CERT_DIR`` or ``system``.
"""

from __future__ import annotations

import os
import re
import ssl
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from entragate.doctor.roots import (
    CURRENT_ROOTS,
    LEGACY_ROOTS,
    MICROSOFT_ROOTS,
    microsoft_root_for,
    publisher_root_hashes,
    signed_by,
    spki_sha256,
)

ORIGINS = ("ca_bundle", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "system")

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)
_HASHED_NAME = re.compile(r"^[0-9a-f]{8}\.\d+$")
#: The legacy root a stale store often still relies on (browsers and certifi dropped it in 2026).
LEGACY_G1 = "DigiCert Global Root CA"


@dataclass
class TrustStoreReport:
    origin: str
    path: str | None
    exists: bool
    readable: bool
    parseable: bool
    count: int
    age_days: float | None
    has_publisher_root: bool
    certificates: list[x509.Certificate] = field(default_factory=list, repr=False)
    capath: str | None = None
    problem: str | None = None
    publisher_roots: list[str] = field(default_factory=list)
    #: The current Microsoft roots (by name) whose key the store lacks.
    missing_roots: list[str] = field(default_factory=list)
    #: The legacy roots the store holds (DigiCert Global Root CA, Baltimore).
    legacy_roots: list[str] = field(default_factory=list)
    #: The store holds one of ``expected_roots``: the endpoints are not Microsoft's own.
    holds_expected: bool = False
    _keys: set[str] = field(default_factory=set, repr=False)

    def outdated_roots(self) -> list[str]:
        """The current roots whose absence makes the store outdated: DigiCert Global Root G2
        when the store has only the legacy G1, and the roots of Microsoft's 2025-2026
        hierarchy.  Empty when the endpoints are vouched for by ``expected_roots``."""
        if self.holds_expected:
            return []
        names = [r.name for r in CURRENT_ROOTS if r.cross_signed_by and r.name in self.missing_roots]
        g1, g2 = LEGACY_G1, "DigiCert Global Root G2"
        if g1 in self.legacy_roots and g2 in self.missing_roots:
            names.insert(0, g2)
        return names

    def outdated_reason(self) -> str | None:
        """Why the store is behind Microsoft's current roots (None when it is not)."""
        names = self.outdated_roots()
        if not names:
            return None
        if names[0] == "DigiCert Global Root G2":
            return f"it holds the legacy {LEGACY_G1} (G1) but not DigiCert Global Root G2"
        return (
            f"it lacks {' and '.join(names)}, the roots of Microsoft's 2025-2026 hierarchy "
            "(chains whose front-end omits the cross certificate cannot verify against it)"
        )

    def contains(self, cert: x509.Certificate) -> bool:
        """The store holds a certificate with ``cert``'s key (its identity for trust)."""
        if not self._keys and self.certificates:
            self._keys = {spki_sha256(c) for c in self.certificates}
        return spki_sha256(cert) in self._keys

    def contains_key(self, spki_hash: str) -> bool:
        if not self._keys and self.certificates:
            self._keys = {spki_sha256(c) for c in self.certificates}
        return spki_hash in self._keys

    def find_issuer(self, cert: x509.Certificate) -> x509.Certificate | None:
        """A certificate in the store whose key signed ``cert``."""
        for candidate in self.certificates:
            if candidate.subject == cert.issuer and signed_by(cert, candidate):
                return candidate
        return None

    @property
    def usable(self) -> bool:
        return self.exists and self.readable and self.parseable and self.count > 0

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "path": self.path,
            "capath": self.capath,
            "exists": self.exists,
            "readable": self.readable,
            "parseable": self.parseable,
            "count": self.count,
            "age_days": None if self.age_days is None else round(self.age_days, 1),
            "has_publisher_root": self.has_publisher_root,
            "publisher_roots": list(self.publisher_roots),
            "missing_roots": list(self.missing_roots),
            "legacy_roots": list(self.legacy_roots),
            "outdated": self.outdated_reason(),
            "problem": self.problem,
        }


def parse_pem_bundle(data: bytes) -> tuple[list[x509.Certificate], int]:
    """Certificates in a PEM bundle and the number of malformed CERTIFICATE blocks."""
    certs: list[x509.Certificate] = []
    bad = 0
    for m in _PEM_BLOCK.finditer(data):
        label = m.group("label")
        if label == b"TRUSTED CERTIFICATE":
            # OpenSSL's "trusted certificate" form (cert + aux): not readable by
            # cryptography, but valid for OpenSSL; do not count it as corrupt.
            continue
        if label != b"CERTIFICATE":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                certs.append(x509.load_pem_x509_certificate(m.group(0)))
        except ValueError:
            bad += 1
    # A PEM armour that was opened but never closed is corruption too.
    if data.count(b"-----BEGIN CERTIFICATE-----") > len(certs) + bad:
        bad += data.count(b"-----BEGIN CERTIFICATE-----") - len(certs) - bad
    return certs, bad


def _load_file(path: str) -> tuple[bool, bool, list[x509.Certificate], int, float | None, str | None]:
    """exists, readable, certificates, malformed blocks, mtime, problem."""
    if not os.path.exists(path):
        return False, False, [], 0, None, f"{path} does not exist"
    if os.path.isdir(path):
        return True, False, [], 0, None, f"{path} is a directory, not a PEM file"
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        return True, False, [], 0, None, f"{path} cannot be read: {exc.strerror or exc}"
    certs, bad = parse_pem_bundle(data)
    problem = None
    if bad:
        problem = f"{path} has {bad} malformed certificate block(s)"
    elif not certs:
        problem = f"{path} holds no PEM certificate"
    return True, True, certs, bad, mtime, problem


def _load_dir(path: str) -> tuple[bool, bool, list[x509.Certificate], int, float | None, str | None]:
    if not os.path.exists(path):
        return False, False, [], 0, None, f"{path} does not exist"
    if not os.path.isdir(path):
        return True, False, [], 0, None, f"{path} is not a directory"
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return True, False, [], 0, None, f"{path} cannot be listed: {exc.strerror or exc}"
    hashed = [n for n in names if _HASHED_NAME.match(n)]
    certs: list[x509.Certificate] = []
    bad = 0
    newest: float | None = None
    for name in hashed:
        full = os.path.join(path, name)
        try:
            with open(full, "rb") as fh:
                data = fh.read()
            mtime = os.stat(full).st_mtime
        except OSError:
            bad += 1
            continue
        newest = mtime if newest is None else max(newest, mtime)
        found, nbad = parse_pem_bundle(data)
        bad += nbad
        certs.extend(found)
    problem = None
    if not hashed:
        loose = [n for n in names if n.endswith((".pem", ".crt"))]
        problem = (
            f"{path} has {len(loose)} certificate file(s) but no hash links (run `openssl rehash {path}`)"
            if loose
            else f"{path} holds no certificates"
        )
    elif bad:
        problem = f"{path} has {bad} malformed certificate file(s)"
    return True, True, certs, bad, newest, problem


def system_paths() -> tuple[str | None, str | None]:
    """OpenSSL's compiled-in default CA file and directory (ignoring SSL_CERT_* variables)."""
    paths = ssl.get_default_verify_paths()
    return paths.openssl_cafile or None, paths.openssl_capath or None


def inspect_trust(
    cafile: str | None,
    capath: str | None,
    origin: str,
    *,
    expected_roots: Sequence[x509.Certificate] = (),
    now: float | None = None,
) -> TrustStoreReport:
    """Describe the CA file and/or directory in use: presence, parse, size, age, publisher roots."""
    if origin == "system" and cafile is None and capath is None:
        sys_file, sys_dir = system_paths()
        cafile = sys_file if sys_file and os.path.exists(sys_file) else None
        capath = sys_dir if sys_dir and os.path.isdir(sys_dir) else None
        if cafile is None and capath is None:
            cafile = sys_file
    now = time.time() if now is None else now

    exists = readable = parseable = False
    certs: list[x509.Certificate] = []
    problems: list[str] = []
    mtimes: list[float] = []
    parts = 0
    seen: set[bytes] = set()
    for path, loader in ((cafile, _load_file), (capath, _load_dir)):
        if not path:
            continue
        parts += 1
        p_exists, p_readable, p_certs, p_bad, p_mtime, p_problem = loader(path)
        exists = exists or p_exists
        readable = readable or p_readable
        if p_readable and not p_bad and p_certs:
            parseable = True
        for c in p_certs:
            der = c.tbs_certificate_bytes
            if der not in seen:
                seen.add(der)
                certs.append(c)
        if p_mtime is not None:
            mtimes.append(p_mtime)
        if p_problem:
            problems.append(p_problem)
    if parts == 0:
        problems.append("no CA file or directory is configured")

    wanted = publisher_root_hashes(expected_roots)
    keys = {spki_sha256(c) for c in certs}
    names: list[str] = []
    for root in MICROSOFT_ROOTS:
        if root.spki_sha256 in keys:
            names.append(root.name)
    for exp in expected_roots:
        if spki_sha256(exp) in keys and microsoft_root_for(exp) is None:
            cns = exp.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            names.append(str(cns[0].value) if cns else exp.subject.rfc4514_string())
    missing = [r.name for r in CURRENT_ROOTS if r.spki_sha256 not in keys]
    legacy = [r.name for r in LEGACY_ROOTS if r.spki_sha256 in keys]
    age = (now - max(mtimes)) / 86400.0 if mtimes else None
    return TrustStoreReport(
        origin=origin,
        path=cafile or capath,
        capath=capath if cafile else None,
        exists=exists,
        readable=readable,
        parseable=parseable,
        count=len(certs),
        age_days=age,
        has_publisher_root=bool(keys & wanted),
        certificates=certs,
        problem="; ".join(problems) or None,
        publisher_roots=names,
        missing_roots=missing,
        legacy_roots=legacy,
        holds_expected=any(spki_sha256(exp) in keys for exp in expected_roots),
        _keys=keys,
    )
