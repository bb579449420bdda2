"""``entragate doctor --chain FILE``: analyse a saved chain offline (docs/design.md#doctor).

Operators behind a proxy can often run ``openssl s_client -showcerts`` or export
a chain from a browser where they cannot run the agent.  The file holds one or
more PEM certificates in any order, with any text between the blocks.  The
chain is verified against the trust store the agent would use (no network),
and a failure is named by the same diagnosis as a live one.  Only the leaf's
names are not checked unless ``--host`` says which host the chain is for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from entragate.doctor.causes import Cause
from entragate.doctor.certinfo import display_name, names_in
from entragate.doctor.checks import FAIL, PASS, CheckResult, check_truststore
from entragate.doctor.checks.tls import tls_fixes
from entragate.doctor.osfix import OsInfo
from entragate.doctor.roots import (
    chain_path,
    is_self_signed,
    publisher_root_name,
    signed_by,
    spki_sha256,
)
from entragate.doctor.runner import Report
from entragate.doctor.tlsdiag import diagnose
from entragate.doctor.tlsprobe import Capture
from entragate.doctor.truststore import TrustStoreReport, parse_pem_bundle
from entragate.errors import Code


class ChainFileError(ValueError):
    """The file holds no usable certificate (exit 2: nothing to analyse)."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, as ``AA:BB:…`` (how browsers and ``openssl x509 -fingerprint`` show it)."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def read_chain(data: bytes, source: str) -> list[x509.Certificate]:
    """The certificates of a saved chain, leaf first, then its issuers, then any others."""
    certs, bad = parse_pem_bundle(data)
    if bad:
        raise ChainFileError(f"{source} has {bad} malformed certificate block(s)")
    unique = list({c.fingerprint(hashes.SHA256()): c for c in certs}.values())
    if not unique:
        raise ChainFileError(f"{source} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    # The leaf issued nothing else in the file; among several such, prefer a non-CA.
    issuers = {id(i) for c in unique for i in unique if i is not c and signed_by(c, i)}
    tops = [c for c in unique if id(c) not in issuers] or unique
    leaf = next((c for c in tops if not _is_ca(c)), tops[0])
    path = chain_path([leaf, *[c for c in unique if c is not leaf]])
    return path + [c for c in unique if all(c is not p for p in path)]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _subject_for(name: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        # A wildcard name is matched by any host of its domain.
        return x509.DNSName("x." + name[2:] if name.startswith("*.") else name)


def verify_offline(
    certs: Sequence[x509.Certificate], trust: TrustStoreReport, name: str, now: datetime
) -> str | None:
    """None when ``certs`` verify for ``name`` against the store at ``now``; else why not."""
    if not trust.certificates:
        return "the trust store in use holds no certificate"
    try:
        verifier = (
            PolicyBuilder().store(Store(list(trust.certificates))).time(now).build_server_verifier(_subject_for(name))
        )
        verifier.verify(certs[0], list(certs[1:]))
    except (VerificationError, ValueError) as exc:
        return str(exc)
    return None


@dataclass
class ChainReport(Report):
    """A doctor report for a saved chain: the ``tls`` and ``truststore`` checks, and the chain."""

    chain: list[x509.Certificate] = field(default_factory=list)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["chain"] = [
            {
                "subject": display_name(c.subject),
                "issuer": display_name(c.issuer),
                "sha256": fingerprint(c),
                "spki_sha256": spki_sha256(c),
                "not_before": c.not_valid_before_utc.isoformat(),
                "not_after": c.not_valid_after_utc.isoformat(),
                "publisher_root": publisher_root_name(c),
            }
            for c in self.chain
        ]
        out.update(self.extra)
        return out


def analyse_chain(
    certs: Sequence[x509.Certificate],
    *,
    trust: TrustStoreReport,
    env: Mapping[str, str],
    os_info: OsInfo,
    expected_roots: Sequence[x509.Certificate] = (),
    host: str | None = None,
    now: datetime | None = None,
    source: str = "",
) -> ChainReport:
    """Verify the saved chain against ``trust`` and name the cause when it does not verify."""
    now = now or datetime.now(UTC)
    leaf = certs[0]
    name = host or next(iter(names_in(leaf)), "") or "unnamed.invalid"
    error = verify_offline(certs, trust, name, now)
    where = f"{trust.origin}" + (f" {trust.path}" if trust.path else "")
    if error is None:
        path = " → ".join(display_name(c.subject) for c in chain_path(list(certs)))
        tls = CheckResult("tls", PASS, f"the chain in {source} verifies against {where}: {path}")
    else:
        causes = diagnose(
            name, Capture(certs=list(certs), stage="tls"), verify_code=None, trust=trust,
            expected_roots=expected_roots, now=now,
        )
        if host is None:
            causes = [c for c in causes if c.id != "hostname_mismatch"]  # no host was named
        top = chain_path(list(certs))[-1]
        for cause in causes:
            if cause.id == "tls_interception":  # what to compare out of band before trusting it
                cause.details["sha256"] = fingerprint(top)
        if not causes:
            causes = [Cause("verify_failed", f"The chain in {source} does not verify against {where}: {error}.")]
        fix = tls_fixes(causes, os_info=os_info, trust=trust, hosts=[name], proxied=False)
        tls = CheckResult("tls", FAIL, causes[0].summary, code=Code.ENTRA003, causes=causes, fix=fix)
    store = check_truststore(trust, env=env, os_info=os_info, tls=tls)
    return ChainReport([tls, store], os_info=os_info, chain=list(certs), source=source)


def intercepting_root(report: ChainReport) -> x509.Certificate | None:
    """The self-signed CA at the top of an intercepted chain (None when not intercepted, or when
    the proxy did not send its root)."""
    if not any(c.id == "tls_interception" for c in report.check("tls").causes):
        return None
    top = chain_path(report.chain)[-1]
    return top if is_self_signed(top) else None
