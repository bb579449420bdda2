"""A small threaded HTTP/1.1-over-TLS server with per-SNI certificates.

One listening socket; each accepted connection gets a thread that completes the TLS
handshake (the SNI callback picks the certificate) and then serves keep-alive requests
with :class:`http.server.BaseHTTPRequestHandler`. The application callable returns a
:class:`Response`, which may ask for an abrupt reset (RST via ``SO_LINGER`` 0) or a
hang (read the request, never answer, until :meth:`TLSHTTPServer.stop`).
``stop()`` closes the listener and shuts down every open connection, so hung or idle
handlers return at once and the port is released.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Request:
    method: str
    host: str
    target: str
    headers: Message
    body: bytes
    sni: str | None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str | None = None  # None | "reset" | "hang"


@dataclass(eq=False)
class _Conn:
    sock: ssl.SSLSocket
    generation: int
    busy: bool = False
    sni: str | None = None


class TLSHTTPServer:
    def __init__(
        self,
        app: Callable[[Request], Response],
        pick_context: Callable[[str | None], ssl.SSLContext],
        now: Callable[[], float],
        on_event: Callable[[str], None],
    ) -> None:
        self._app = app
        self._pick_context = pick_context
        self._now = now
        self._on_event = on_event
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.generation = 0
        self.port = 0
        self.host = "127.0.0.1"
        self.last_error: BaseException | None = None
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.minimum_version = ssl.TLSVersion.TLSv1_2
        base.sni_callback = self._sni
        self._base = base

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self.stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"emulator-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for c in conns:
            _shutdown(c.sock)
        for t in threads:
            t.join(timeout=5)

    def drop_connections(self) -> None:
        """Close idle keep-alive connections and make busy ones close after their answer."""
        with self._lock:
            self.generation += 1
            idle = [c for c in self._conns if not c.busy]
        for c in idle:
            _shutdown(c.sock)

    # ------------------------------------------------------------------ internals

    def _sni(self, sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = self._pick_context(server_name)
        with contextlib.suppress(AttributeError):
            sslobj.emulator_sni = server_name

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self.stopping.is_set():
            try:
                raw, _addr = listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            t = threading.Thread(target=self._serve, args=(raw,), name="emulator-conn", daemon=True)
            with self._lock:
                self._threads.add(t)
            t.start()

    def _serve(self, raw: socket.socket) -> None:
        conn: _Conn | None = None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(HANDSHAKE_TIMEOUT)
            try:
                tls = self._base.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                raw.close()
                return
            with self._lock:
                conn = _Conn(tls, self.generation)
                self._conns.add(conn)
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
            with self._lock:
                if conn is not None:
                    self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            sock = conn.sock if conn is not None else raw
            with contextlib.suppress(OSError):
                sock.close()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: wake a blocked reader at the OS
    # level without touching the SSL object another thread is using.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


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
