"""TLS serving: a certificate per SNI name, good or broken on purpose (TLS_SCENARIOS).

The root CA persists in ``state_dir`` so a client that trusts ``ca-bundle.pem`` keeps
working across restarts; the issuing CA and the leaves are new each run. A scenario
replaces the leaves every SNI name is served with (docs/design.md#emulator):

- ``intercepted``: signed by a corporate TLS-inspection CA (``issuer_cn``/``issuer_o``),
  published at ``scenario_ca_path``;
- ``expired`` / ``not_yet_valid``: outside their validity at the client's clock (with a
  ``date_offset_seconds``, valid around the server's skewed time: clock skew);
- ``wrong_host``: for another name; ``self_signed``: a lone self-signed leaf;
- ``missing_intermediate``: the issuing CA is not sent;
- ``noncompliant_ca``: the inspection CA's basicConstraints are not critical, which
  only strict X.509 verification rejects.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import uuid
from pathlib import Path

from cryptography import x509

from . import pki
from .state import ALL_HOSTS

TLS_SCENARIOS: tuple[str, ...] = (
    "intercepted",
    "expired",
    "not_yet_valid",
    "wrong_host",
    "self_signed",
    "missing_intermediate",
    "noncompliant_ca",
)
WRONG_HOST = "wronghost.example.net"
ROOT_NAME = pki.name("Emulated Microsoft ECC Root Certificate Authority 2017", "entragate emulator", country="US")
ISSUING_NAME = pki.name("Emulated Microsoft Azure ECC TLS Issuing CA 01", "entragate emulator", country="US")
DEFAULT_INTERCEPTING_CA = ("Zscaler Root CA", "Zscaler Inc.")
_ROOT_FILES = ("root-ca.pem", "root-ca.key")

# (scenario, inspection CA common name, organisation, server clock offset) -> contexts by SNI name
_ContextKey = tuple[str | None, str, str, int]


def _leaf_subject(host: str) -> x509.Name:
    return pki.name(host, "Microsoft Corporation", country="US", state="WA", locality="Redmond")


class TlsServing:
    """The server contexts by SNI name for the scenario in force."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._lock = threading.Lock()
        cert_path, key_path = (state_dir / f for f in _ROOT_FILES)
        root = pki.CA.load(cert_path, key_path)
        if root is None:
            root = pki.CA.new(subject=ROOT_NAME, path_length=1)
            root.save(cert_path, key_path)
        self.root = root
        self.intermediate = root.intermediate(subject=ISSUING_NAME, path_length=0)
        self.ca_bundle_path = state_dir / "ca-bundle.pem"
        pki.write_public(self.ca_bundle_path, root.cert_pem)
        self.scenario: str | None = None
        self.scenario_ca_path: Path | None = None
        self._inspection_ca_name = DEFAULT_INTERCEPTING_CA
        self._inspection_cas: dict[tuple[str, str, bool], pki.CA] = {}
        self._contexts: dict[_ContextKey, dict[str, ssl.SSLContext]] = {}
        self._active: dict[str, ssl.SSLContext] = {}

    def select(
        self, scenario: str | None, date_offset_seconds: int, inspection_ca: tuple[str, str] | None = None
    ) -> None:
        """Serve new handshakes with ``scenario`` (None: the good chain)."""
        if scenario is not None and scenario not in TLS_SCENARIOS:
            raise ValueError(f"TLS scenario must be one of {TLS_SCENARIOS} or None")
        with self._lock:
            self.scenario = scenario
            if inspection_ca is not None:
                self._inspection_ca_name = inspection_ca
            cn, o = self._inspection_ca_name
            offset = date_offset_seconds if scenario in ("expired", "not_yet_valid") else 0
            key = (scenario, cn, o, offset)
            contexts = self._contexts.get(key)
            if contexts is None:
                contexts = self._contexts[key] = self._build(scenario, cn, o, offset)
            self._active = contexts
            self._publish_inspection_ca(scenario, cn, o)

    def use_chain(self, pem: Path) -> None:
        """Serve every name with this PEM (certificate chain and private key), whatever it
        holds: an operator's own chain, or one that reproduces a customer's failure."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(pem))
        with self._lock:
            self.scenario = "certificate"
            self.scenario_ca_path = None
            self._active = {host: ctx for host in (*ALL_HOSTS, "localhost")}

    def pick_context(self, server_name: str | None) -> ssl.SSLContext:
        """The SNI callback's choice: that name's context, else localhost's (or the first)."""
        active = self._active
        ctx = active.get((server_name or "").lower())
        if ctx is None:
            ctx = active.get("localhost") or active[ALL_HOSTS[0]]
        return ctx

    def _inspection_ca(self, cn: str, o: str, compliant: bool) -> pki.CA:
        key = (cn, o, compliant)
        ca = self._inspection_cas.get(key)
        if ca is None:
            ca = self._inspection_cas[key] = pki.CA.new(cn, o, basic_constraints_critical=compliant)
        return ca

    def _build(self, scenario: str | None, cn: str, o: str, offset: int) -> dict[str, ssl.SSLContext]:
        directory = self._dir / "certs" / f"{scenario or 'normal'}-{uuid.uuid4().hex[:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        contexts: dict[str, ssl.SSLContext] = {}
        names = list(ALL_HOSTS) + ([] if scenario else ["localhost"])
        for host in names:
            hosts = (host, "127.0.0.1", "::1") if host == "localhost" else (host,)
            leaf, chain = self._leaf(scenario, hosts, cn, o, offset)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(*leaf.write(directory, host, chain))
            contexts[host] = ctx
        return contexts

    def _leaf(
        self, scenario: str | None, hosts: tuple[str, ...], cn: str, o: str, offset: int
    ) -> tuple[pki.IssuedCert, list[pki.CA]]:
        """The leaf for ``hosts`` in ``scenario`` and the chain the server sends with it."""
        subject = _leaf_subject(hosts[0])
        issuing = self.intermediate
        if scenario in ("intercepted", "noncompliant_ca"):
            ca = self._inspection_ca(cn, o, scenario == "intercepted")
            return ca.issue(*hosts, subject=subject), [ca]
        if scenario in ("expired", "not_yet_valid"):
            now = pki.now()
            if offset:
                server_now = now + dt.timedelta(seconds=offset)
                half = min(pki.DAY, abs(dt.timedelta(seconds=offset)) / 2)
                start, end = server_now - half, server_now + half
            elif scenario == "expired":
                start, end = now - 90 * pki.DAY, now - 2 * pki.DAY
            else:
                start, end = now + 2 * pki.DAY, now + 90 * pki.DAY
            return issuing.issue(*hosts, subject=subject, not_before=start, not_after=end), [issuing]
        if scenario == "wrong_host":
            return issuing.issue(WRONG_HOST, subject=_leaf_subject(WRONG_HOST)), [issuing]
        if scenario == "self_signed":
            return pki.IssuedCert.self_signed(*hosts, subject=subject), []
        leaf = issuing.issue(*hosts, subject=subject)
        return leaf, [] if scenario == "missing_intermediate" else [issuing]

    def _publish_inspection_ca(self, scenario: str | None, cn: str, o: str) -> None:
        if scenario in ("intercepted", "noncompliant_ca"):
            ca = self._inspection_ca(cn, o, scenario == "intercepted")
            path = self._dir / f"scenario-ca-{scenario}.pem"
            pki.write_public(path, ca.cert_pem)
            self.scenario_ca_path = path
        else:
            self.scenario_ca_path = None
