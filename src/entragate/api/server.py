"""The agent's HTTP API server: uvicorn on a thread of its own.

``start()`` binds the listening socket in the caller's thread (so "address in use"
surfaces there), then serves on a background thread; ``stop()`` stops accepting,
lets requests in flight finish (up to :data:`GRACEFUL_STOP` seconds) and returns.
Limits (docs/design.md#api): bodies of at most 64 KiB, headers within
``header_timeout``, bodies within ``body_timeout``, idle keep-alive connections closed
after :data:`KEEP_ALIVE`, at most :data:`MAX_CONCURRENCY` connections and requests at
once, a listen backlog of :data:`BACKLOG` so a burst of fresh connections waits instead
of being refused.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from entragate.agent_client import loopback_url
from entragate.config import Config
from entragate.exposure import is_loopback
from entragate.logs import get_logger, printable
from entragate.metrics import Metrics
from entragate.service import GrantService

from .app import create_app
from .auth import BearerToken
from .context import ApiContext
from .protocol import protocol_class

BACKLOG = 2048
MAX_CONCURRENCY = 1000
KEEP_ALIVE = 5
GRACEFUL_STOP = 5
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0


class _ToAuditLog(logging.Handler):
    """uvicorn's own warnings and errors, as events of the agent's log."""

    def emit(self, record: logging.LogRecord) -> None:
        get_logger(component="api").warning(
            "api.server_message", message=printable(record.getMessage()[:300])
        )


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = [_ToAuditLog()]
        logger.setLevel(logging.ERROR)  # its info lines and per-request warnings are ours
        logger.propagate = False


class ApiServer:
    """The agent's HTTP API. ``start()`` serves on a background thread; ``stop()`` ends it."""

    def __init__(
        self,
        config: Config,
        service: GrantService,
        *,
        token: str,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], bool],
        metrics: Metrics,
        not_ready_reason: Callable[[], tuple[str, str] | None] | None = None,
        alive: Callable[[], bool] | None = None,
        host: str | None = None,
        port: int | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        max_concurrency: int = MAX_CONCURRENCY,
    ) -> None:
        self.config = config
        self.service = service
        self.token = BearerToken(token)
        self.status = status
        self.ready = ready
        self.not_ready_reason = not_ready_reason
        self.alive = alive
        self.metrics = metrics
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_concurrency = max_concurrency
        configured_host = config.agent.listen_host
        self.host = host if host is not None else configured_host
        self.requested_port = port if port is not None else config.agent.listen_port
        if not is_loopback(self.host) and self.host != configured_host:
            raise ValueError(
                f"refusing to bind the API to non-loopback address {self.host!r}: "
                f'set agent.listen = "{self.host}:PORT" to expose it deliberately'
            )
        self.tls = config.agent.tls_cert is not None and config.agent.tls_key is not None
        if not is_loopback(self.host) and not self.tls:
            raise ValueError(
                f"refusing to serve the API on non-loopback address {self.host!r} without "
                "TLS: set agent.tls_cert and agent.tls_key"
            )
        self._socket: socket.socket | None = None
        self._bound_port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def log(self) -> Any:
        return get_logger(component="api")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ApiServer:
        if self._server is not None:
            return self
        sock = self._bind()
        self._bound_port = int(sock.getsockname()[1])
        app = create_app(
            ApiContext(
                config=self.config,
                service=self.service,
                token=self.token,
                status=self.status,
                ready=self.ready,
                metrics=self.metrics,
                server_url=loopback_url(self.host, self._bound_port, tls=self.tls),
                body_timeout=self.body_timeout,
                not_ready_reason=self.not_ready_reason,
                alive=self.alive,
            )
        )
        _route_uvicorn_logs()
        settings = uvicorn.Config(
            app,
            http=protocol_class(self.header_timeout),
            lifespan="off",
            log_config=None,
            access_log=False,  # ours: the api.request event
            proxy_headers=False,  # nothing sits in front of the agent to be trusted
            server_header=False,  # ours: entragate/<version>
            limit_concurrency=self.max_concurrency,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE,
            timeout_graceful_shutdown=GRACEFUL_STOP,
            ssl_certfile=str(self.config.agent.tls_cert) if self.tls else None,
            ssl_keyfile=str(self.config.agent.tls_key) if self.tls else None,
        )
        try:
            settings.load()  # a bad certificate fails here, in the caller's thread
        except Exception:
            sock.close()
            raise
        server = uvicorn.Server(settings)
        self._socket, self._server = sock, server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="entragate-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the API server did not start; see the log")
            time.sleep(0.005)
        if not is_loopback(self.host):
            self.log.warning(
                "api.listening_beyond_loopback",
                host=self.host,
                port=self.port,
                note="anyone who can reach this address can try the bearer token; "
                "put a firewall in front of it",
            )
        self.log.info("api.listening", url=self.url)
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET
        try:
            if ipaddress.ip_address(self.host).version == 6:
                family = socket.AF_INET6
        except ValueError:
            pass
        # proto=TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it Nagle holds each answer's body for the client's delayed ACK (~40 ms)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        return sock

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(GRACEFUL_STOP + 5)
        if self._socket is not None:
            self._socket.close()
        self.log.info("api.stopped")

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.requested_port if self._bound_port is None else self._bound_port

    @property
    def url(self) -> str:
        return loopback_url(self.host, self.port, tls=self.tls)
