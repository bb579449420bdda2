"""A small threaded HTTP/1.1-over-TLS server with per-SNI certificates.

One listening socket; each accepted connection gets a thread that completes the TLS
handshake (the SNI callback picks the certificate) and then serves keep-alive requests
with :class:`http.server.BaseHTTPRequestHandler`. The application callable returns a
:class:`Response`, which may ask for an abrupt reset (RST via ``SO_LINGER`` 0) or a
hang (read the request, never answer, until ``close()``, which shuts down every open
connection so hung or idle handlers return at once).
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._http import Request, Response
from ._listener import ThreadedListener, shutdown

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
MAX_BODY = 16 * 1024 * 1024


@dataclass(eq=False)
class _Conn:
    sock: ssl.SSLSocket
    generation: int
    busy: bool = False
    sni: str | None = None


class TLSHTTPServer(ThreadedListener):
    def __init__(
        self,
        app: Callable[[Request], Response],
        pick_context: Callable[[str | None], ssl.SSLContext],
        now: Callable[[], float],
        on_event: Callable[[str], None],
    ) -> None:
        super().__init__("emulator", backlog=128)
        self._app = app
        self._pick_context = pick_context
        self._now = now
        self._on_event = on_event
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self.generation = 0
        self.last_error: BaseException | None = None
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.minimum_version = ssl.TLSVersion.TLSv1_2
        base.sni_callback = self._sni
        self._base = base

    def drop_connections(self) -> None:
        """Close idle keep-alive connections and make busy ones close after their answer."""
        with self._lock:
            self.generation += 1
            idle = [c for c in self._conns if not c.busy]
        for c in idle:
            shutdown(c.sock)

    # ------------------------------------------------------------------ internals

    def _sni(self, sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = self._pick_context(server_name)
        with contextlib.suppress(AttributeError):
            sslobj.emulator_sni = server_name

    def serve_connection(self, sock: socket.socket) -> None:
        conn: _Conn | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(HANDSHAKE_TIMEOUT)
            try:
                tls = self._base.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            with self._lock:
                conn = _Conn(tls, self.generation)
                self._conns.add(conn)
            self.track(tls)
            if self.stopping.is_set():
                return
            try:
                tls.do_handshake()
            except (OSError, ssl.SSLError, ValueError):
                self._on_event("tls_failure")
                return
            conn.sni = getattr(tls, "emulator_sni", None)
            self._on_event("connections")
            _Handler(tls, ("", 0), _HandlerServer(self, conn))  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - a broken connection must never kill the server
            self.last_error = e
            self._on_event("handler_error")
        finally:
            if conn is not None:
                with self._lock:
                    self._conns.discard(conn)
                self.untrack(conn.sock)
            with contextlib.suppress(OSError):
                (conn.sock if conn is not None else sock).close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socket.socket.close(sock)


@dataclass
class _HandlerServer:
    server: TLSHTTPServer
    conn: _Conn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _HandlerServer  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(self.server.server._now(), usegmt=True)

    def handle_one_request(self) -> None:
        owner = self.server
        owner.conn.busy = False
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (OSError, ValueError):
            self.close_connection = True
            return
        owner.conn.busy = True
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        try:
            body = self._read_body()
        except ValueError as e:
            self.send_error(400, str(e))
            self.close_connection = True
            return
        host = (self.headers.get("Host") or owner.conn.sni or "").strip().lower()
        if host.startswith("["):
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        req = Request(self.command, host, self.path, self.headers, body, owner.conn.sni)
        resp = owner.server._app(req)
        if resp.action == "reset":
            self.close_connection = True
            _reset(self.connection)
            return
        if resp.action == "hang":
            owner.server.stopping.wait()
            self.close_connection = True
            return
        self.send_response(resp.status)
        names = {k.lower() for k, _ in resp.headers}
        for k, v in resp.headers:
            self.send_header(k, v)
        if resp.status not in (204, 304) and "content-length" not in names:
            self.send_header("Content-Length", str(len(resp.body)))
        if owner.conn.generation != owner.server.generation or owner.server.stopping.is_set():
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if resp.body and self.command != "HEAD" and resp.status not in (204, 304):
            self.wfile.write(resp.body)
        with contextlib.suppress(OSError, ValueError):
            self.wfile.flush()

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        n = int(length)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
