"""Phase-1 doctor analysis: trust store, chain capture and cause diagnosis.

Chains are built with the emulator's certificate builder (``entragate.emulator.pki``)
and served by tiny TLS servers on loopback, so every capture goes through a real TLS
handshake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from entragate.doctor.roots import chain_leads_to_publisher_root, chain_path, is_publisher_root
from entragate.doctor.tlsdiag import Cause, diagnose, hostname_matches
from entragate.doctor.tlsprobe import Capture, capture
from entragate.doctor.truststore import inspect_trust
from entragate.emulator.pki import CA, Credential, IssuedCert

HOST = "login.microsoftonline.com"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)

# ---------------------------------------------------------------------------------------
# tiny PKI
# ---------------------------------------------------------------------------------------


def publisher(o: str = "Emulated Publisher") -> tuple[CA, CA]:
    root = CA.new(f"{o} Root CA", o)
    return root, root.intermediate(f"{o} TLS Issuing CA 01", o)


# ---------------------------------------------------------------------------------------
# loopback TLS server and CONNECT proxy
# ---------------------------------------------------------------------------------------


class TlsServer:
    """Serves ``chain`` (leaf first) and answers any request with a ``Date`` header."""

    def __init__(
        self,
        tmp: Path,
        leaf: IssuedCert,
        chain: list[CA],
        *,
        date: dt.datetime | None = None,
        hang: bool = False,
    ) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*leaf.write(tmp, f"srv-{id(self)}", chain))
        self.date = date
        self.hang = hang
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.hang:
                self.stop.wait(30)
                conn.close()
                return
            conn.settimeout(5)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                buf += chunk
            date = format_datetime(self.date or dt.datetime.now(dt.UTC), usegmt=True)
            tls.sendall(
                f"HTTP/1.1 404 Not Found\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            tls.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class ConnectProxy:
    """A minimal HTTP CONNECT proxy; records the request lines it received."""

    def __init__(self, *, refuse: int | None = None, target_override: tuple[str, int] | None = None) -> None:
        self.refuse = refuse
        self.target_override = target_override
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            self.requests.append(head)
            if self.refuse:
                conn.sendall(
                    f"HTTP/1.1 {self.refuse} Refused\r\nProxy-Authenticate: Basic realm=x\r\nContent-Length: 0\r\n\r\n".encode()
                )
                return
            target = head.split(b"\r\n")[0].split(b" ")[1].decode()
            thost, tport = target.rsplit(":", 1)
            upstream = socket.create_connection(self.target_override or (thost, int(tport)), timeout=5)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            with upstream:
                socks = [conn, upstream]
                while True:
                    ready, _, _ = select.select(socks, [], [], 5)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (upstream if s is conn else conn).sendall(data)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@contextlib.contextmanager
def serving(tmp: Path, leaf: IssuedCert, chain: list[CA], **kw: object) -> Iterator[TlsServer]:
    srv = TlsServer(tmp, leaf, chain, **kw)  # type: ignore[arg-type]
    try:
        yield srv
    finally:
        srv.close()


def verify_code_of(port: int, cafile: str, host: str = HOST, *, strict: bool = False) -> int | None:
    """What a verifying client (the agent) gets: the OpenSSL verify code, or None."""
    try:
        ctx = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError:
        return None  # the bundle cannot even be loaded
    if strict:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(
            s, server_hostname=host
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_code


def write_pem(path: Path, *issued: Credential) -> str:
    path.write_bytes(b"".join(i.cert_pem for i in issued))
    return str(path)


def grab(port: int, host: str = HOST, timeout: float = 5.0) -> Capture:
    return capture(host, 443, connect_addr=("127.0.0.1", port), timeout=timeout)


def ids(causes: list[Cause]) -> list[str]:
    return [c.id for c in causes]


# ---------------------------------------------------------------------------------------
# trust store
# ---------------------------------------------------------------------------------------


def test_inspect_trust_bundle(tmp_path: Path) -> None:
    root, _ = publisher()
    other = CA.new("Other Root")
    path = write_pem(tmp_path / "bundle.pem", root, other)
    r = inspect_trust(path, None, "ca_bundle", expected_roots=[root.cert])
    assert (r.exists, r.readable, r.parseable, r.count) == (True, True, True, 2)
    assert r.has_publisher_root and r.contains(root.cert) and not r.contains(CA.new("x").cert)
    assert r.age_days is not None and r.age_days < 1
    assert r.origin == "ca_bundle" and r.path == path
    r2 = inspect_trust(write_pem(tmp_path / "o.pem", other), None, "REQUESTS_CA_BUNDLE", expected_roots=[root.cert])
    assert r2.parseable and not r2.has_publisher_root


def test_inspect_trust_missing_corrupt_empty(tmp_path: Path) -> None:
    missing = inspect_trust(str(tmp_path / "nope.pem"), None, "ca_bundle")
    assert not missing.exists and not missing.parseable and missing.count == 0
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n")
    corrupt = inspect_trust(str(bad), None, "SSL_CERT_FILE")
    assert corrupt.exists and corrupt.readable and not corrupt.parseable
    trunc = tmp_path / "trunc.pem"
    trunc.write_bytes(CA.new("A").cert_pem + CA.new("B").cert_pem[:200])
    assert not inspect_trust(str(trunc), None, "ca_bundle").parseable
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    e = inspect_trust(str(empty), None, "CURL_CA_BUNDLE")
    assert e.exists and not e.parseable and e.problem


def test_inspect_trust_directory(tmp_path: Path) -> None:
    root, _ = publisher()
    d = tmp_path / "certs"
    d.mkdir()
    (d / "abcdef01.0").write_bytes(root.cert_pem)
    r = inspect_trust(None, str(d), "SSL_CERT_DIR", expected_roots=[root.cert])
    assert r.exists and r.parseable and r.count == 1 and r.has_publisher_root
    d2 = tmp_path / "unhashed"
    d2.mkdir()
    (d2 / "root.pem").write_bytes(root.cert_pem)
    r2 = inspect_trust(None, str(d2), "SSL_CERT_DIR")
    assert r2.count == 0 and "rehash" in (r2.problem or "")


def test_inspect_trust_system() -> None:
    r = inspect_trust(None, None, "system")
    # The Makefile's system-deps install ca-certificates, which ships DigiCert Global Root G2.
    assert r.exists, "no system CA store (make system-deps installs ca-certificates)"
    assert r.parseable and r.count > 50 and r.has_publisher_root
    assert "DigiCert Global Root G2" in r.publisher_roots


# ---------------------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------------------


def test_capture_direct_reads_chain_and_date(tmp_path: Path) -> None:
    root, inter = publisher()
    leaf = inter.issue(HOST)
    when = NOW - dt.timedelta(hours=5)
    with serving(tmp_path, leaf, [inter], date=when) as srv:
        cap = grab(srv.port)
    assert cap.error is None, cap.error
    assert [c.subject for c in cap.certs] == [leaf.cert.subject, inter.cert.subject]
    assert cap.server_date == when
    assert cap.http_status == 404 and cap.stage == "done"
    assert chain_leads_to_publisher_root(cap.certs, [root.cert])


def test_capture_through_connect_proxy(tmp_path: Path) -> None:
    _, inter = publisher()
    leaf = inter.issue(HOST)
    with serving(tmp_path, leaf, [inter]) as srv:
        proxy = ConnectProxy(target_override=("127.0.0.1", srv.port))
        try:
            cap = capture(HOST, 443, proxy_url=proxy.url, timeout=5)
        finally:
            proxy.close()
    assert cap.error is None and len(cap.certs) == 2 and cap.server_date is not None
    first = proxy.requests[0].decode().split("\r\n")
    assert first[0] == f"CONNECT {HOST}:443 HTTP/1.1"
    assert f"Host: {HOST}:443" in first


def test_capture_proxy_refused() -> None:
    proxy = ConnectProxy(refuse=407)
    try:
        cap = capture(HOST, 443, proxy_url=proxy.url, timeout=5)
    finally:
        proxy.close()
    assert cap.proxy_status == 407 and cap.error and "407" in cap.error and not cap.certs


def test_capture_hang_is_bounded(tmp_path: Path) -> None:
    _, inter = publisher()
    with serving(tmp_path, inter.issue(HOST), [inter], hang=True) as srv:
        t = time.monotonic()
        cap = grab(srv.port, timeout=0.5)
        took = time.monotonic() - t
    assert cap.timed_out and cap.error and took < 1.5


def test_capture_refused_port() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cap = grab(port)
    assert cap.error and not cap.timed_out and cap.stage == "connect"


def test_probe_lines_are_marked() -> None:
    """Verification is never disabled in src/ except on the doctor's chain-capture lines."""
    src = Path(__file__).resolve().parents[1] / "src/entragate"
    for path in src.rglob("*.py"):
        for line in path.read_text().splitlines():
            if "CERT_NONE" in line or "check_hostname = False" in line or "verify=False" in line:
                assert line.rstrip().endswith("# doctor-probe"), (path.name, line)


# ---------------------------------------------------------------------------------------
# diagnosis, through real TLS
# ---------------------------------------------------------------------------------------


def _diag(tmp_path: Path, leaf: IssuedCert, chain: list[CA], trust_pem: list[CA] | str, expected: list[CA],
          *, host: str = HOST, date: dt.datetime | None = None, now: dt.datetime | None = None,
          strict: bool = False, origin: str = "ca_bundle") -> tuple[list[Cause], int | None]:
    cafile = trust_pem if isinstance(trust_pem, str) else write_pem(tmp_path / "trust.pem", *trust_pem)
    with serving(tmp_path, leaf, chain, date=date) as srv:
        code = verify_code_of(srv.port, cafile, host, strict=strict) if os.path.exists(cafile) else None
        cap = grab(srv.port, host=host)
    assert cap.certs, cap.error
    trust = inspect_trust(cafile, None, origin, expected_roots=[e.cert for e in expected])
    causes = diagnose(host, cap, verify_code=code, trust=trust, expected_roots=[e.cert for e in expected],
                      now=now or dt.datetime.now(dt.UTC))
    return causes, code


def test_healthy_chain_has_no_cause(tmp_path: Path) -> None:
    root, inter = publisher()
    causes, code = _diag(tmp_path, inter.issue(HOST), [inter], [root], [root])
    assert code is None and causes == []


@pytest.mark.parametrize(
    ("cn", "o", "vendor"),
    [
        ("Zscaler Intermediate Root CA (zscalertwo.net)", "Zscaler Inc.", "Zscaler"),
        ("ca.contoso.goskope.com", "Netskope Inc", "Netskope"),
        ("FortiGate CA", "Fortinet", "Fortinet"),
        ("Cisco Umbrella Secondary SubCA ams-SG", "Cisco", "Cisco Umbrella"),
        ("mitmproxy", "mitmproxy", "mitmproxy"),
        ("Contoso Corp Issuing CA", "Contoso Corp", None),
    ],
)
def test_interception_named(tmp_path: Path, cn: str, o: str, vendor: str | None) -> None:
    root, _ = publisher()
    proxy_ca = CA.new(cn, o)
    leaf = proxy_ca.issue(HOST)
    causes, code = _diag(tmp_path, leaf, [proxy_ca], [root], [root])
    assert code in (19, 20)
    assert ids(causes) == ["tls_interception"]
    assert causes[0].vendor == vendor and causes[0].issuer is not None and cn in causes[0].issuer
    assert HOST in causes[0].summary and cn in causes[0].summary


def test_interception_leaf_only_names_issuer(tmp_path: Path) -> None:
    root, _ = publisher()
    proxy_root = CA.new("Zscaler Root CA", "Zscaler Inc.")
    proxy_int = proxy_root.intermediate("Zscaler Intermediate Root CA (zscloud.net)", "Zscaler Inc.")
    causes, code = _diag(tmp_path, proxy_int.issue(HOST), [], [root], [root])
    assert code == 20 and ids(causes) == ["tls_interception"]
    assert causes[0].vendor == "Zscaler" and "Zscaler Intermediate" in (causes[0].issuer or "")


def test_forged_publisher_name_is_still_interception(tmp_path: Path) -> None:
    root, _ = publisher()
    forged = CA.new(root.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "Emulated Publisher")  # type: ignore[arg-type]
    causes, _ = _diag(tmp_path, forged.issue(HOST), [forged], [root], [root])
    assert ids(causes) == ["tls_interception"]


def test_trusted_interception_is_not_a_cause(tmp_path: Path) -> None:
    root, _ = publisher()
    proxy_ca = CA.new("Zscaler Root CA", "Zscaler Inc.")
    causes, code = _diag(tmp_path, proxy_ca.issue(HOST), [proxy_ca], [root, proxy_ca], [root])
    assert code is None and causes == []


def test_clock_skew(tmp_path: Path) -> None:
    root, inter = publisher()
    leaf = inter.issue(HOST, not_before=NOW - dt.timedelta(hours=1))
    server_date = dt.datetime.now(dt.UTC).replace(microsecond=0)
    local = server_date - dt.timedelta(hours=3)
    causes, _ = _diag(tmp_path, leaf, [inter], [root], [root], date=server_date, now=local)
    assert ids(causes) == ["clock_skew"]
    assert causes[0].skew_seconds == 3 * 3600


def test_clock_skew_from_server_date(tmp_path: Path) -> None:
    """The real verifier fails (leaf not yet valid locally) but the server's clock says it is valid."""
    root, inter = publisher()
    leaf = inter.issue(HOST, not_before=NOW + dt.timedelta(hours=2), not_after=NOW + 30 * DAY)
    # From the clock at this moment, not the module's NOW: a long suite runs this minutes later.
    server_date = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=4)
    causes, code = _diag(tmp_path, leaf, [inter], [root], [root], date=server_date)
    assert code == 9 and ids(causes) == ["clock_skew"]
    assert causes[0].skew_seconds is not None and abs(causes[0].skew_seconds - 4 * 3600) < 60


def test_expired_and_not_yet_valid(tmp_path: Path) -> None:
    root, inter = publisher()
    old = inter.issue(HOST, not_before=NOW - 100 * DAY, not_after=NOW - 10 * DAY)
    causes, code = _diag(tmp_path, old, [inter], [root], [root])
    assert code == 10 and ids(causes) == ["cert_expired"]
    future = inter.issue(HOST, not_before=NOW + 10 * DAY, not_after=NOW + 100 * DAY)
    causes, code = _diag(tmp_path, future, [inter], [root], [root])
    assert code == 9 and ids(causes) == ["cert_not_yet_valid"]


def test_hostname_mismatch(tmp_path: Path) -> None:
    root, inter = publisher()
    causes, code = _diag(tmp_path, inter.issue("www.example.org"), [inter], [root], [root])
    assert code == 62 and ids(causes) == ["hostname_mismatch"]
    assert "www.example.org" in causes[0].summary


def test_self_signed(tmp_path: Path) -> None:
    root, _ = publisher()
    causes, code = _diag(tmp_path, IssuedCert.self_signed(HOST), [], [root], [root])
    assert code == 18 and ids(causes) == ["self_signed"]


def test_incomplete_chain(tmp_path: Path) -> None:
    root, inter = publisher()
    causes, code = _diag(tmp_path, inter.issue(HOST), [], [root], [root])
    assert code == 20 and ids(causes) == ["incomplete_chain"]
    assert "TLS Issuing CA 01" in (causes[0].issuer or "")


def test_incomplete_chain_supplied_by_store_is_not_reported(tmp_path: Path) -> None:
    root, inter = publisher()
    causes, code = _diag(tmp_path, inter.issue(HOST), [], [root, inter], [root])
    assert code is None and causes == []


def test_ca_bundle_missing_corrupt_lacks_root(tmp_path: Path) -> None:
    root, inter = publisher()
    leaf = inter.issue(HOST)
    causes, _ = _diag(tmp_path, leaf, [inter], str(tmp_path / "absent.pem"), [root])
    assert ids(causes) == ["ca_bundle_missing"]
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    causes, _ = _diag(tmp_path, leaf, [inter], str(bad), [root])
    assert ids(causes) == ["ca_bundle_corrupt"]
    causes, code = _diag(tmp_path, leaf, [inter], [CA.new("Unrelated Root")], [root])
    assert code == 20 and ids(causes) == ["ca_bundle_lacks_root"]


@pytest.mark.parametrize(("kw", "want"), [({"basic_constraints_critical": False}, 89), ({"key_usage": False}, 92)])
def test_noncompliant_ca(tmp_path: Path, kw: dict[str, bool], want: int) -> None:
    root, _ = publisher()
    proxy_ca = CA.new("Palo Alto Networks Forward Trust", "Palo Alto Networks", **kw)
    causes, code = _diag(tmp_path, proxy_ca.issue(HOST), [proxy_ca], [root, proxy_ca], [root], strict=True)
    assert code == want
    assert ids(causes) == ["noncompliant_ca"]
    assert causes[0].vendor == "Palo Alto Networks" and "Forward Trust" in (causes[0].issuer or "")


def test_cause_json_shape() -> None:
    c = Cause("tls_interception", "s", issuer="X", vendor=None)
    assert c.to_json() == {"id": "tls_interception", "summary": "s", "issuer": "X", "vendor": None, "skew_seconds": None}


def test_hostname_matching_rules() -> None:
    leaf = IssuedCert.self_signed("*.microsoftonline.com", "graph.microsoft.com").cert
    assert hostname_matches(leaf, "login.microsoftonline.com")
    assert hostname_matches(leaf, "GRAPH.microsoft.com")
    assert not hostname_matches(leaf, "a.b.microsoftonline.com")
    assert not hostname_matches(leaf, "microsoftonline.com")
    assert not hostname_matches(leaf, "graph.microsoft.us")


def test_chain_path_follows_signatures() -> None:
    root, inter = publisher()
    leaf = inter.issue(HOST)
    decoy = CA.new(inter.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "Emulated Publisher")  # type: ignore[arg-type]
    path = chain_path([leaf.cert, decoy.cert, inter.cert])
    assert path == [leaf.cert, inter.cert]
    assert chain_leads_to_publisher_root([leaf.cert, inter.cert], [root.cert])
    assert not chain_leads_to_publisher_root([leaf.cert, decoy.cert], [root.cert])
    assert is_publisher_root(root.cert, [root.cert]) and not is_publisher_root(inter.cert, [root.cert])
