"""Fixtures and helpers for tests that talk to the emulated tenant.

The fixtures (``fresh_emulator``, ``tenant``) are registered for every test by
``tests/conftest.py``; import the helpers you need.

``emulator_session(emu)`` is a ``requests.Session`` whose connections to the Microsoft
host names go to the emulator (SNI, Host header and certificate checks still use the
real names) and always verify against the emulator's root, whatever
``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``/``SSL_CERT_FILE`` say.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from jwt.utils import base64url_encode
from requests.adapters import HTTPAdapter

from entragate.emulator import AppRegistration, Emulator, pki
from entragate.emulator.pki import IssuedCert, PrivateKey


class MappedAdapter(HTTPAdapter):
    """An adapter that sends ``https://HOST:PORT`` to a mapped address (curl --connect-to)."""

    def __init__(
        self, mapping: dict[tuple[str, int], tuple[str, int]], ca_file: Path | str, **kw: Any
    ) -> None:
        self.mapping = mapping
        self.ca_file = str(ca_file)
        super().__init__(**kw)

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        u = urlsplit(request.url)
        host = (u.hostname or "").lower()
        port = u.port or 443
        target = self.mapping.get((host, port))
        if target is None:
            raise ConnectionError(f"{host}:{port} is not mapped (tests never leave loopback)")
        pool_kwargs = {
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": self.ca_file,
            "server_hostname": host,
            "assert_hostname": host,
        }
        return self.poolmanager.connection_from_host(
            target[0], target[1], scheme="https", pool_kwargs=pool_kwargs
        )

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Always the adapter's own trust, whatever `verify` the session merged from the env.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = self.ca_file
        conn.ca_cert_dir = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        u = urlsplit(request.url)
        request.headers["Host"] = u.hostname if u.port in (None, 443) else f"{u.hostname}:{u.port}"
        return super().send(request, **kwargs)


def emu_mapping(emu: Emulator) -> dict[tuple[str, int], tuple[str, int]]:
    return {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}


def emulator_session(emu: Emulator, ca_file: Path | str | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.mount("https://", MappedAdapter(emu_mapping(emu), ca_file or emu.ca_bundle_path))
    return s


@pytest.fixture
def fresh_emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A new emulator of its own (counters start at zero), stopped after the test."""
    emu = Emulator(state_dir=tmp_path / "emu").start()
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class TenantApp:
    emu: Emulator
    tenant_id: str
    app: AppRegistration
    session: requests.Session

    @property
    def token_url(self) -> str:
        return f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"

    def token(self, **form: str) -> requests.Response:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.app.client_id,
            "client_secret": self.app.secret or "",
            "scope": "https://graph.microsoft.com/.default",
        }
        data.update(form)
        return self.session.post(self.token_url, data=data, timeout=10)

    def access_token(self) -> str:
        r = self.token()
        r.raise_for_status()
        return str(r.json()["access_token"])

    def graph(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.access_token()}"
        url = path if path.startswith("https://") else "https://graph.microsoft.com/v1.0/" + path.lstrip("/")
        return self.session.request(method, url, headers=headers, timeout=10, **kw)


@pytest.fixture
def tenant(fresh_emulator: Emulator) -> Iterator[TenantApp]:
    """A tenant with one app (secret, both Policy roles) on a fresh emulator, and a session."""
    tid = fresh_emulator.add_tenant()
    app = fresh_emulator.add_app(tid)
    s = emulator_session(fresh_emulator)
    try:
        yield TenantApp(fresh_emulator, tid, app, s)
    finally:
        s.close()


def client_context(ca_file: Path | str | None, *, strict: bool = False) -> ssl.SSLContext:
    """A verifying client context that trusts only ``ca_file`` (environment variables ignored)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def tls_handshake(
    port: int, server_name: str, ctx: ssl.SSLContext, host: str = "127.0.0.1"
) -> ssl.SSLSocket:
    """Open a TLS connection to ``host:port`` with SNI ``server_name``; the caller closes it."""
    raw = socket.create_connection((host, port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def verify_code(port: int, server_name: str, ctx: ssl.SSLContext) -> int:
    """0 when the handshake verifies, else the OpenSSL verify code."""
    try:
        tls_handshake(port, server_name, ctx).close()
    except ssl.SSLCertVerificationError as e:
        return int(e.verify_code)
    return 0


def make_app_certificate(
    cn: str = "entragate-test-app", days: int = 365
) -> tuple[PrivateKey, x509.Certificate, bytes, bytes]:
    """(key, cert, key_pem, cert_pem): a self-signed RSA app credential, as Entra uses."""
    credential = IssuedCert.self_signed(
        common_name=cn, key_type="rsa", not_after=pki.now() + dt.timedelta(days=days)
    )
    return credential.key, credential.cert, credential.key_pem, credential.cert_pem


def client_assertion(
    key: PrivateKey,
    cert: x509.Certificate,
    client_id: str,
    audience: str,
    *,
    now: float | None = None,
    lifetime: int = 600,
    header: str = "x5t#S256",
) -> str:
    """An RS256 client assertion JWT, signed with PyJWT here (not with the emulator's code)."""
    t = time.time() if now is None else now
    digest = cert.fingerprint(hashes.SHA256() if header == "x5t#S256" else hashes.SHA1())
    claims = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": int(t),
        "iat": int(t),
        "exp": int(t) + lifetime,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={header: base64url_encode(digest).decode()})
