"""An HTTP CONNECT proxy on loopback, for proxy and TLS-inspection tests.

Modes:

- ``tunnel``: answers ``200 Connection established`` and relays bytes to the target;
- ``refuse407``: answers ``407 Proxy Authentication Required`` (with ``Proxy-Authenticate``);
- ``refuse403``: answers ``403 Forbidden`` (a policy block);
- ``intercept``: answers 200, terminates the client's TLS with a leaf for the requested
  SNI name signed by its own CA (``ca_path``), and relays to the upstream over TLS that
  it verifies against ``upstream_ca``: a real TLS-inspecting proxy.

Targets are looked up in ``connect_to`` (``(host, port) -> (host, port)``); a target
that is not mapped is only reached when it is a loopback address, otherwise the proxy
answers ``502``: it never connects off the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from pathlib import Path

from ._listener import ThreadedListener
from .pki import CA, new_key, write_public

MODES = ("tunnel", "refuse407", "refuse403", "intercept")
_HEAD_LIMIT = 65536
_IO_TIMEOUT = 30.0


class ConnectProxy(ThreadedListener):
    def __init__(
        self,
        mode: str = "tunnel",
        connect_to: dict[tuple[str, int], tuple[str, int]] | None = None,
        intercept_ca_cn: str = "Netskope Inc Root CA",
        intercept_ca_o: str = "Netskope Inc",
        upstream_ca: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__("proxy", backlog=64)
        self.mode = mode
        self.connect_map = {(h.lower(), p): t for (h, p), t in (connect_to or {}).items()}
        self.upstream_ca = upstream_ca
        self.host = host
        self.connects: list[str] = []
        self.errors: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix="entragate-proxy-"))
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._ca = CA.new(intercept_ca_cn, intercept_ca_o)
        self.ca_path = self._dir / "proxy-ca.pem"
        write_public(self.ca_path, self._ca.cert_pem)
        self._leaf_key = new_key()
        self._leaf_contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    def start(self) -> ConnectProxy:
        self.listen(self.host, 0)
        return self

    def stop(self) -> None:
        self.close()

    def __enter__(self) -> ConnectProxy:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def serve_connection(self, client: socket.socket) -> None:
        opened: list[socket.socket] = [self.track(client)]
        try:
            client.settimeout(_IO_TIMEOUT)
            head = _read_head(client)
            if head is None:
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            if len(parts) != 3 or parts[0].upper() != "CONNECT":
                _answer(client, 405, "Method Not Allowed", "This proxy only supports CONNECT.")
                return
            target = parts[1]
            host, _, port_s = target.rpartition(":")
            host = host.strip("[]").lower()
            try:
                port = int(port_s)
            except ValueError:
                _answer(client, 400, "Bad Request", "Bad CONNECT target.")
                return
            with self._lock:
                self.connects.append(f"{host}:{port}")
            if self.mode == "refuse407":
                _answer(
                    client,
                    407,
                    "Proxy Authentication Required",
                    "Proxy authentication required.",
                    [("Proxy-Authenticate", 'Basic realm="emulated corporate proxy"')],
                )
                return
            if self.mode == "refuse403":
                _answer(client, 403, "Forbidden", f"Access to {host} is blocked by policy.")
                return
            upstream_addr = self.connect_map.get((host, port))
            if upstream_addr is None:
                if not _is_loopback(host):
                    _answer(client, 502, "Bad Gateway", f"No route to {host}:{port} from this test proxy.")
                    return
                upstream_addr = (host, port)
            try:
                upstream = socket.create_connection(upstream_addr, timeout=_IO_TIMEOUT)
            except OSError as e:
                self.errors.append(f"connect {upstream_addr}: {e}")
                _answer(client, 502, "Bad Gateway", f"Cannot connect to {host}:{port}.")
                return
            opened.append(self.track(upstream))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if self.mode == "tunnel":
                _relay(client, upstream, self.stopping)
                return
            # intercept: TLS to the client with our own leaf, verified TLS upstream.
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.sni_callback = self._sni
            server_ctx.load_cert_chain(*self._leaf_files(host))
            try:
                tls_client = server_ctx.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError) as e:
                self.errors.append(f"client handshake: {e}")
                return
            opened.append(self.track(tls_client))
            sni = getattr(tls_client, "proxy_sni", None) or host
            up_ctx = ssl.create_default_context(cafile=str(self.upstream_ca) if self.upstream_ca else None)
            try:
                tls_up = up_ctx.wrap_socket(upstream, server_hostname=sni)
            except (OSError, ssl.SSLError) as e:
                self.errors.append(f"upstream handshake {sni}: {e}")
                return
            opened.append(self.track(tls_up))
            _relay(tls_client, tls_up, self.stopping)
        except (OSError, ssl.SSLError) as e:
            self.errors.append(str(e))
        finally:
            for s in opened:
                with contextlib.suppress(OSError):
                    s.close()
            self.untrack(*opened)

    def _leaf_files(self, name: str) -> tuple[Path, Path]:
        with self._lock:
            cert = self._dir / f"{name}.pem"
            if not cert.exists():
                leaf = self._ca.issue(name, key=self._leaf_key)
                return leaf.write(self._dir, name, chain=[self._ca])
            return cert, self._dir / f"{name}.key"

    def _sni(self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return
        with self._lock:
            ctx = self._leaf_contexts.get(server_name)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self._leaf_files(server_name))
            with self._lock:
                self._leaf_contexts[server_name] = ctx
        sslobj.context = ctx
        with contextlib.suppress(AttributeError):
            sslobj.proxy_sni = server_name  # type: ignore[union-attr]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_head(sock: socket.socket) -> bytes | None:
    """Read exactly the request head (up to the blank line), leaving later bytes unread."""
    buf = b""
    while len(buf) < _HEAD_LIMIT:
        peek = sock.recv(4096, socket.MSG_PEEK)
        if not peek:
            return None
        end = (buf[-3:] + peek).find(b"\r\n\r\n")
        if end >= 0:
            take = end - min(3, len(buf)) + 4
            buf += _recv_exact(sock, take)
            return buf
        buf += _recv_exact(sock, len(peek))
    return None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _answer(
    sock: socket.socket, status: int, reason: str, text: str, headers: list[tuple[str, str]] | None = None
) -> None:
    body = f"<html><body><h1>{status} {reason}</h1><p>{text}</p></body></html>".encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/html", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    with contextlib.suppress(OSError):
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = sock.send(view)
            view = view[n:]
        except (ssl.SSLWantWriteError, BlockingIOError):
            select.select([], [sock], [], 1.0)
        except ssl.SSLWantReadError:
            select.select([sock], [], [], 1.0)


def _relay(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    """Copy bytes both ways until either side closes (works for plain and TLS sockets)."""
    a.setblocking(False)
    b.setblocking(False)
    peer: dict[socket.socket, socket.socket] = {a: b, b: a}
    while not stopping.is_set():
        ready: list[socket.socket] = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select([a, b], [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            try:
                _send_all(peer[s], data)
            except (OSError, ssl.SSLError):
                return
