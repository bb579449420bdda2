"""Capture the certificate chain a server presents, without trusting it.

This is the one place in entragate where certificate verification is turned
off, and only to *look at* what the server (or a proxy in the middle) sends:
nothing read here is trusted, no credential is sent, and the only request made
on the connection is ``HEAD /`` to read the server's ``Date`` header.  Each
line that disables verification carries the marker comment ``doctor-probe``.
"""

from __future__ import annotations

import _ssl
import base64
import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from cryptography import x509

_MAX_HEADER = 64 * 1024


@dataclass
class Capture:
    """What the server presented: certificates (leaf first), its ``Date``, and any error."""

    certs: list[x509.Certificate] = field(default_factory=list)
    server_date: datetime | None = None
    error: str | None = None
    #: where the probe stopped or failed: resolve, connect, proxy, tls, http, done
    stage: str = "resolve"
    proxy_status: int | None = None
    http_status: int | None = None
    tls_version: str | None = None
    timed_out: bool = False
    elapsed: float = 0.0


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + max(timeout, 0.0)

    def left(self) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        return remaining


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _resolve(host: str, port: int, timeout: float) -> list[tuple[int, tuple[str, int]]]:
    """getaddrinfo bounded by ``timeout`` (the resolver itself has no timeout)."""
    result: list[tuple[int, tuple[str, int]]] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            for family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            ):
                result.append((family, (str(sockaddr[0]), int(sockaddr[1]))))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            error.append(exc)

    t = threading.Thread(target=work, name="doctor-resolve", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"resolving {host} timed out")
    if error:
        raise error[0]
    return result


def open_tcp(host: str, port: int, deadline: _Deadline) -> socket.socket:
    """TCP connection to host:port (each address in turn), bounded by ``deadline``."""
    last: BaseException | None = None
    for family, sockaddr in _resolve(host, port, deadline.left()):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect(sockaddr)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            if isinstance(exc, TimeoutError):
                raise
    if last is not None:
        raise last
    raise OSError(f"no address for {host}")


def _read_head(sock: socket.socket | ssl.SSLSocket, deadline: _Deadline) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < _MAX_HEADER:
        sock.settimeout(deadline.left())
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _status(head: bytes) -> int | None:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _header(head: bytes, name: str) -> str | None:
    for raw in head.split(b"\r\n")[1:]:
        if b":" not in raw:
            continue
        key, value = raw.split(b":", 1)
        if key.strip().decode("latin-1").lower() == name.lower():
            return value.strip().decode("latin-1")
    return None


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def proxy_address(proxy_url: str) -> tuple[str, int]:
    """(host, port) of an ``http://`` proxy URL (port 80 when omitted, like urllib3)."""
    parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    if parts.scheme not in ("http", ""):
        raise OSError(f"proxy scheme {parts.scheme!r} is not supported by the doctor's probe")
    return parts.hostname or "", parts.port or 80


def connect_via_proxy(
    proxy_url: str,
    target_host: str,
    target_port: int,
    deadline: _Deadline,
    *,
    dial: tuple[str, int] | None = None,
) -> tuple[socket.socket, int | None, str | None]:
    """Open a CONNECT tunnel like urllib3: ``CONNECT host:port HTTP/1.1`` with a Host header.

    ``dial`` replaces the proxy's own address (``connect_to`` applied to the proxy).
    Returns the socket, the proxy's status and an error (None when tunnelled).
    """
    parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    phost, pport = dial or proxy_address(proxy_url)
    sock = open_tcp(phost, pport, deadline)
    authority = _authority(target_host, target_port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(token).decode("ascii"))
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock.settimeout(deadline.left())
    sock.sendall(request)
    head = _read_head(sock, deadline)
    status = _status(head)
    if status is None:
        sock.close()
        return sock, None, "the proxy closed the connection or sent no HTTP answer to CONNECT"
    if not 200 <= status < 300:
        sock.close()
        reason = head.split(b"\r\n", 1)[0].decode("latin-1")
        return sock, status, f"the proxy refused CONNECT {authority}: {reason}"
    return sock, status, None


def probe_context() -> ssl.SSLContext:
    """A client context that accepts any certificate, for capture only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # doctor-probe
    ctx.verify_mode = ssl.CERT_NONE  # doctor-probe
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def presented_chain(ssock: ssl.SSLSocket) -> list[x509.Certificate]:
    """The certificates the peer sent, leaf first (unverified)."""
    der_list: list[bytes] = []
    sslobj = getattr(ssock, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is not None:
        try:
            chain = getter() or []
            der_list = [c.public_bytes(_ssl.ENCODING_DER) for c in chain]
        except (AttributeError, ValueError, ssl.SSLError):
            der_list = []
    if not der_list:
        leaf = ssock.getpeercert(binary_form=True)
        if leaf:
            der_list = [leaf]
    certs: list[x509.Certificate] = []
    for der in der_list:
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue
    return certs


def capture(
    host: str,
    port: int = 443,
    *,
    connect_addr: tuple[str, int] | None = None,
    proxy_url: str | None = None,
    timeout: float = 10.0,
) -> Capture:
    """Connect (directly or through ``proxy_url``), complete TLS with SNI=``host`` and read
    the presented chain and the ``Date`` header.  The whole probe is bounded by ``timeout``.

    ``connect_addr`` replaces the TCP destination (``connect_to``): the server's
    address, or the proxy's when ``proxy_url`` is set.  SNI, the Host header and
    the CONNECT request always name ``host:port``, as the agent's urllib3 does.
    """
    started = time.monotonic()
    deadline = _Deadline(timeout)
    out = Capture()
    sock: socket.socket | None = None
    ssock: ssl.SSLSocket | None = None
    try:
        if proxy_url:
            out.stage = "proxy"
            sock, out.proxy_status, err = connect_via_proxy(
                proxy_url, host, port, deadline, dial=connect_addr
            )
            if err is not None:
                out.error = err
                return out
        else:
            out.stage = "connect"
            dest_host, dest_port = connect_addr or (host, port)
            sock = open_tcp(dest_host, dest_port, deadline)
        out.stage = "tls"
        sock.settimeout(deadline.left())
        ssock = probe_context().wrap_socket(sock, server_hostname=host)
        sock = None
        out.tls_version = ssock.version()
        out.certs = presented_chain(ssock)
        out.stage = "http"
        host_header = host if port == 443 else _authority(host, port)
        request = (
            f"HEAD / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: entragate-doctor\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        ssock.settimeout(deadline.left())
        ssock.sendall(request)
        head = _read_head(ssock, deadline)
        out.http_status = _status(head)
        out.server_date = parse_http_date(_header(head, "Date"))
        out.stage = "done"
    except TimeoutError:
        out.timed_out = True
        out.error = f"timed out after {timeout:g}s during {out.stage}"
    except ssl.SSLError as exc:
        out.error = f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        out.error = f"{out.stage} failed: {exc.strerror or exc}"
    finally:
        for s in (ssock, sock):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        out.elapsed = time.monotonic() - started
    return out


def now_utc() -> datetime:
    return datetime.now(UTC)
