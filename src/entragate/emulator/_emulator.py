"""The emulated tenant as one object: state, TLS serving, faults and the two services
behind one TLS port (docs/design.md#emulator).

:class:`Emulator` *is* the :class:`~entragate.emulator.state.TenantState` (tenants, apps,
locations, counters, the clock) and adds the server: it dispatches every request to the
token service or the Graph routes by host name, after the faults that apply.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Protocol

from ._http import Exchange, Request, Response
from ._server import TLSHTTPServer
from .directory import add_sign_in
from .faults import EmulatorFault, Faults
from .graph_api import GraphApi
from .state import ALL_HOSTS, GRAPH_HOSTS, LOGIN_HOSTS, RequestRecord, TenantState
from .tls import DEFAULT_INTERCEPTING_CA, TlsServing
from .token_service import TokenService
from .tokens import SigningKey


class _Service(Protocol):
    def operation(self, method: str, path: str) -> str | None: ...
    def handle(self, req: Request, ex: Exchange, parsed: urllib.parse.SplitResult) -> Response: ...
    def status_error(self, req: Request, ex: Exchange, status: int) -> Response: ...
    def throttled(self, req: Request, ex: Exchange) -> Response: ...


class Emulator(TenantState):
    """An emulated Entra tenant set (four clouds) behind one TLS port on loopback."""

    def __init__(
        self,
        state_dir: Path | None = None,
        rate_limit: float | None = None,
        token_lifetime: int = 3599,
    ) -> None:
        super().__init__(state_dir, rate_limit, token_lifetime)
        self._server: TLSHTTPServer | None = None
        self._stopped = threading.Event()
        self._faults = Faults()
        self._tls = TlsServing(self.state_dir)
        self.ca_bundle_path = self._tls.ca_bundle_path
        signing_key = SigningKey()
        self._login = TokenService(self, signing_key)
        self._graph = GraphApi(self, signing_key)

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._tls.select(self._tls.scenario, self.date_offset_seconds)
        server = TLSHTTPServer(self._dispatch, self._tls.pick_context, self.now, self.count)
        server.listen(host, port)
        self._server = server
        self._stopped.clear()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._stopped.set()
        if server is not None:
            server.close()

    def __enter__(self) -> Emulator:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.port

    @property
    def listen_host(self) -> str:
        return self._server.host if self._server else "127.0.0.1"

    @property
    def hosts(self) -> list[str]:
        return list(ALL_HOSTS)

    def connect_to(self) -> list[str]:
        h = self.listen_host
        target = f"[{h}]" if ":" in h else h
        return [f"{name}:443:{target}:{self.port}" for name in ALL_HOSTS]

    # ------------------------------------------------------------------ TLS

    @property
    def root_pem(self) -> bytes:
        return self._tls.root.cert_pem

    @property
    def intermediate_pem(self) -> bytes:
        return self._tls.intermediate.cert_pem

    @property
    def tls_scenario(self) -> str | None:
        return self._tls.scenario

    @property
    def scenario_ca_path(self) -> Path | None:
        """The inspection CA of the ``intercepted`` / ``noncompliant_ca`` scenario in force."""
        return self._tls.scenario_ca_path

    def set_tls_scenario(
        self,
        name: str | None,
        *,
        issuer_cn: str = DEFAULT_INTERCEPTING_CA[0],
        issuer_o: str = DEFAULT_INTERCEPTING_CA[1],
    ) -> None:
        """Serve new connections with a broken chain (see TLS_SCENARIOS); None restores.

        Open keep-alive connections are closed (after any answer in flight), as when a
        proxy appears on the path. For ``expired`` and ``not_yet_valid`` with a non-zero
        ``date_offset_seconds``, the leaf is valid around the *server's* skewed time
        (so it fails at the client's clock only: clock skew); set the offset first.
        """
        self._tls.select(name, self.date_offset_seconds, (issuer_cn, issuer_o))
        if self._server is not None:
            self._server.drop_connections()

    def serve_certificate(self, pem: Path) -> None:
        """Serve every host name with the chain and key in ``pem`` (``--certificate``)."""
        self._tls.use_chain(pem)
        if self._server is not None:
            self._server.drop_connections()

    # ------------------------------------------------------------------ faults

    def faults(self) -> list[dict[str, object]]:
        """The faults in force, each with what is left of its count."""
        return self._faults.describe()

    def set_fault(self, fault: EmulatorFault) -> None:
        self._faults.set(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ users and sign-ins (directory.py)

    def add_user(self, tenant_id: str, upn: str, *, object_id: str | None = None) -> str:
        """A user of the tenant; returns its object id (the existing one for a known UPN)."""
        with self.lock:
            return str(self.tenant(tenant_id).directory.add_user(upn, object_id)["id"])

    def add_sign_in(self, tenant_id: str, user: str, ip_address: str, *, seconds_ago: float = 0.0,
                    **fields: Any) -> dict[str, Any]:
        """A sign-in of ``user`` (UPN, created when unknown, or object id) from ``ip_address``,
        ``seconds_ago`` before the emulated clock: ``error_code``, ``ca_status``, ``policies``
        (applied Conditional Access policies: id, displayName, result), ``app_display_name``."""
        with self.lock:
            return add_sign_in(self.tenant(tenant_id).directory, user, ip_address,
                               when=self.now() - seconds_ago, **fields)

    def set_premium(self, tenant_id: str, premium: bool) -> None:
        """Whether the tenant holds an Entra ID P1/P2 licence (Graph serves sign-in logs only then)."""
        with self.lock:
            self.tenant(tenant_id).directory.premium = premium

    def session_revocations(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every ``revokeSignInSessions`` served for the tenant, oldest first."""
        with self.lock:
            return [dict(r) for r in self.tenant(tenant_id).directory.revocations]

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, req: Request) -> Response:
        parsed = urllib.parse.urlsplit(req.target)
        path = parsed.path
        known = req.host in LOGIN_HOSTS or req.host in GRAPH_HOSTS
        # Error answers (faults, internal errors) take the shape of the host's service.
        service: _Service = self._login if req.host in LOGIN_HOSTS else self._graph
        ex = Exchange(
            request_id=str(uuid.uuid4()),
            client_request_id=req.headers.get("client-request-id"),
            operation=service.operation(req.method, path) if known else None,
        )
        self.count("requests")
        if known:
            self.count("login" if req.host in LOGIN_HOSTS else "graph")
        if ex.operation:
            self.count(ex.operation)
        latency, fault = self._faults.take(req.host, req.method, path)
        if latency > 0:
            self.count("fault latency")
            if self._stopped.wait(latency):
                return self._record(req, ex, Response(0, action="reset"))
        if fault is not None:
            self.count(f"fault {fault.kind}")
            if fault.kind in ("reset", "hang"):
                return self._record(req, ex, Response(0, action=fault.kind))
            if fault.kind == "throttle":
                return self._record(req, ex, service.throttled(req, ex))
            return self._record(req, ex, service.status_error(req, ex, fault.status))
        try:
            if known:
                resp = service.handle(req, ex, parsed)
            else:
                resp = Response(
                    421,
                    b"Misdirected Request: this emulator serves " + ", ".join(ALL_HOSTS).encode(),
                    [("Content-Type", "text/plain")],
                )
        except Exception:  # noqa: BLE001 - a bug in a handler answers 500, as a real service does
            resp = service.status_error(req, ex, 500)
            self.count("handler_error")
        return self._record(req, ex, resp)

    def _record(self, req: Request, ex: Exchange, resp: Response) -> Response:
        self.log_request(
            RequestRecord(
                time.time(),
                req.host,
                req.method,
                req.target,
                resp.status,
                ex.tenant,
                ex.client_request_id,
                ex.request_id,
                ex.operation,
            )
        )
        return resp
