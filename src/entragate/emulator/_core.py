"""The emulated tenant: token endpoint + Graph named locations over one TLS port."""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from . import _jwt, _pki
from ._model import (
    ALL_HOSTS,
    CLOUDS,
    COUNTRY_TYPE,
    DOMAIN_SUFFIX,
    GRAPH_HOSTS,
    IP_TYPE,
    LOGIN_HOSTS,
    MAX_LOCATIONS,
    READ_ROLES,
    WRITE_ROLE,
    App,
    AppRegistration,
    GraphError,
    Tenant,
    TokenError,
    cloud_of_host,
    decode_skiptoken,
    encode_skiptoken,
    graph_time,
    ip_ranges,
    new_location,
    parse_filter,
    patch_location,
    select,
    tenant_segment_kind,
)
from ._server import Request, Response, TLSHTTPServer

TLS_SCENARIOS: tuple[str, ...] = (
    "intercepted",
    "expired",
    "not_yet_valid",
    "wrong_host",
    "self_signed",
    "missing_intermediate",
    "noncompliant_ca",
)
FAULT_KINDS = ("latency", "status", "reset", "hang", "throttle")
DEFAULT_ROLES: tuple[str, ...] = ("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_TOLERANCE = 300  # seconds of skew the token endpoint forgives on client assertions
THROTTLE_SLACK = 0.05  # a request up to 5 % early is admitted (jitter), still ≤ rate long-term
WRONG_HOST = "wronghost.example.net"

_GRAPH_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
_JSON_CT = "application/json; charset=utf-8"
_NL_PATH = "identity/conditionalaccess/namedlocations"


@dataclass(frozen=True)
class EmulatorFault:
    """A switchable failure. ``host``: exact name, ``"graph"``, ``"login"`` or None (any).

    ``method``: HTTP method or None (any). ``count``: how many matching requests it
    affects (None: until cleared). ``path``: optional substring of the request path.
    """

    kind: str
    host: str | None = None
    method: str | None = None
    status: int = 503
    seconds: float = 0.0
    count: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be positive or None")

    def matches(self, host: str, method: str, path: str) -> bool:
        if self.host == "graph":
            if host not in GRAPH_HOSTS:
                return False
        elif self.host == "login":
            if host not in LOGIN_HOSTS:
                return False
        elif self.host is not None and self.host.lower() != host:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in path


@dataclass(frozen=True)
class RequestRecord:
    time: float
    host: str
    method: str
    path: str
    status: int  # 0 when the connection was reset or left hanging
    tenant: str | None
    client_request_id: str | None
    request_id: str
    operation: str | None


@dataclass(frozen=True)
class WriteRecord:
    time: float
    tenant: str
    method: str
    location_id: str
    client_request_id: str | None
    request_id: str
    ranges: list[str] | None  # the ipRanges written (POST, or PATCH that replaced them)


@dataclass
class _Ctx:
    request_id: str
    client_request_id: str | None
    operation: str | None
    tenant: str | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


_SIGNING_KEY: rsa.RSAPrivateKey | None = None
_SIGNING_LOCK = threading.Lock()


def _signing_key() -> rsa.RSAPrivateKey:
    """The RSA key the emulated STS signs access tokens with (one per process)."""
    global _SIGNING_KEY
    with _SIGNING_LOCK:
        if _SIGNING_KEY is None:
            _SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _SIGNING_KEY


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _aad_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Emulator:
    """An emulated Entra tenant set (four clouds) behind one TLS port on loopback."""

    def __init__(
        self,
        state_dir: Path | None = None,
        rate_limit: float | None = None,
        token_lifetime: int = 3599,
    ) -> None:
        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix="entragate-emulator-"))
            weakref.finalize(self, shutil.rmtree, state_dir, True)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.rate_limit = rate_limit
        self.token_lifetime = token_lifetime
        self.date_offset_seconds = 0
        self.page_size = 100
        self._lock = threading.RLock()
        self._tenants: dict[str, Tenant] = {}
        self._counters: Counter[str] = Counter()
        self._requests: deque[RequestRecord] = deque(maxlen=200_000)
        self._writes: deque[WriteRecord] = deque(maxlen=200_000)
        self._faults: list[list[Any]] = []  # [fault, remaining or None]
        self._server: TLSHTTPServer | None = None
        self._stopped = threading.Event()
        self._key = _signing_key()
        self._kid = _jwt.b64url(uuid.uuid4().bytes)
        self._scenario: str | None = None
        self._scenario_issuer = ("Zscaler Root CA", "Zscaler Inc.")
        self._scenario_cas: dict[tuple[str, str, bool], _pki.Issued] = {}
        self._contexts: dict[tuple[Any, ...], dict[str, ssl.SSLContext]] = {}
        self._active: dict[str, ssl.SSLContext] = {}
        self.scenario_ca_path: Path | None = None
        root = _pki.load_issued(self.state_dir / "root-ca.pem", self.state_dir / "root-ca.key")
        if root is None:
            root = _pki.make_ca(
                _pki.name("Emulated Microsoft ECC Root Certificate Authority 2017", "entragate emulator", c="US"),
                path_length=1,
            )
            _pki.save_issued(root, self.state_dir / "root-ca.pem", self.state_dir / "root-ca.key")
        self._root = root
        self._intermediate = _pki.make_ca(
            _pki.name("Emulated Microsoft Azure ECC TLS Issuing CA 01", "entragate emulator", c="US"),
            issuer=root,
            path_length=0,
        )
        self.ca_bundle_path = self.state_dir / "ca-bundle.pem"
        _pki.write_public(self.ca_bundle_path, root.pem)

    # ================================================================== lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._active = self._build_contexts()
        server = TLSHTTPServer(self._app, self._pick_context, self.now, self._count)
        server.start(host, port)
        self._server = server
        self._stopped.clear()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._stopped.set()
        if server is not None:
            server.stop()

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
    def root_pem(self) -> bytes:
        return self._root.pem

    @property
    def intermediate_pem(self) -> bytes:
        return self._intermediate.pem

    @property
    def hosts(self) -> list[str]:
        return list(ALL_HOSTS)

    def connect_to(self) -> list[str]:
        h = self.listen_host
        target = f"[{h}]" if ":" in h else h
        return [f"{name}:443:{target}:{self.port}" for name in ALL_HOSTS]

    def now(self) -> float:
        """The emulated server clock (wall clock + ``date_offset_seconds``)."""
        return time.time() + self.date_offset_seconds

    # ================================================================== tenants and apps

    def add_tenant(self, tenant_id: str | None = None, cloud: str = "global") -> str:
        if cloud not in CLOUDS:
            raise ValueError(f"cloud must be one of {sorted(CLOUDS)}")
        tid = (tenant_id or str(uuid.uuid4())).lower()
        with self._lock:
            if tid in self._tenants:
                raise ValueError(f"tenant {tid} exists")
            domain = f"emu{tid.replace('-', '')[:10]}.{DOMAIN_SUFFIX[cloud]}"
            self._tenants[tid] = Tenant(tid, cloud, domain)
        return tid

    def tenant_domain(self, tenant_id: str) -> str:
        """The tenant's initial domain (``….onmicrosoft.com``), usable in place of its id."""
        return self._tenant(tenant_id).domain

    def tenant_cloud(self, tenant_id: str) -> str:
        return self._tenant(tenant_id).cloud

    def add_app(
        self,
        tenant_id: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        secret_expired: bool = False,
        certificate_pem: bytes | None = None,
        roles: Iterable[str] = DEFAULT_ROLES,
    ) -> AppRegistration:
        """Register an app. With neither ``secret`` nor ``certificate_pem`` a secret is generated."""
        tenant = self._tenant(tenant_id)
        cid = (client_id or str(uuid.uuid4())).lower()
        if secret is None and certificate_pem is None:
            secret = _new_secret()
        certs = x509.load_pem_x509_certificates(certificate_pem) if certificate_pem else []
        secret_id = str(uuid.uuid4()) if secret is not None else None
        with self._lock:
            if cid in tenant.apps:
                raise ValueError(f"app {cid} exists in tenant {tenant.id}")
            tenant.apps[cid] = App(cid, secret, secret_id, secret_expired, certs, set(roles))
        return AppRegistration(tenant.id, cid, secret, secret_id, certificate_pem)

    def set_roles(self, tenant_id: str, client_id: str, roles: Iterable[str]) -> None:
        """Change an app's granted application permissions; Graph checks them live."""
        app = self._app_reg(tenant_id, client_id)
        with self._lock:
            app.roles = set(roles)

    def set_secret_expired(self, tenant_id: str, client_id: str, expired: bool = True) -> None:
        app = self._app_reg(tenant_id, client_id)
        with self._lock:
            app.secret_expired = expired

    def _tenant(self, tenant_id: str) -> Tenant:
        with self._lock:
            t = self._tenants.get(tenant_id.lower())
        if t is None:
            raise KeyError(f"no tenant {tenant_id}")
        return t

    def _app_reg(self, tenant_id: str, client_id: str) -> App:
        t = self._tenant(tenant_id)
        with self._lock:
            app = t.apps.get(client_id.lower())
        if app is None:
            raise KeyError(f"no app {client_id} in tenant {tenant_id}")
        return app

    # ================================================================== portal actions

    def locations(self, tenant_id: str) -> list[dict[str, Any]]:
        t = self._tenant(tenant_id)
        with self._lock:
            return copy.deepcopy(list(t.locations.values()))

    def create_location(
        self, tenant_id: str, display_name: str, cidrs: list[str], trusted: bool = False
    ) -> str:
        body = {
            "@odata.type": IP_TYPE,
            "displayName": display_name,
            "isTrusted": trusted,
            "ipRanges": ip_ranges(cidrs),
        }
        return self._portal_create(tenant_id, body)

    def create_country_location(
        self, tenant_id: str, display_name: str, countries: list[str]
    ) -> str:
        body = {"@odata.type": COUNTRY_TYPE, "displayName": display_name, "countriesAndRegions": countries}
        return self._portal_create(tenant_id, body)

    def _portal_create(self, tenant_id: str, body: dict[str, Any]) -> str:
        t = self._tenant(tenant_id)
        try:
            obj = new_location(body, self.now())
        except GraphError as e:
            raise ValueError(e.message) from None
        with self._lock:
            t.locations[obj["id"]] = obj
        return str(obj["id"])

    def edit_location(self, tenant_id: str, location_id: str, cidrs: list[str]) -> None:
        t = self._tenant(tenant_id)
        with self._lock:
            obj = t.locations.get(location_id)
            if obj is None:
                raise KeyError(location_id)
            try:
                patch_location(obj, {"@odata.type": obj["@odata.type"], "ipRanges": ip_ranges(cidrs)}, self.now())
            except GraphError as e:
                raise ValueError(e.message) from None

    def set_trusted(self, tenant_id: str, location_id: str, trusted: bool) -> None:
        t = self._tenant(tenant_id)
        with self._lock:
            obj = t.locations[location_id]
            obj["isTrusted"] = trusted
            obj["modifiedDateTime"] = graph_time(self.now())

    def delete_location(self, tenant_id: str, location_id: str) -> None:
        t = self._tenant(tenant_id)
        with self._lock:
            del t.locations[location_id]

    # ================================================================== observation

    @property
    def counters(self) -> Counter[str]:
        """A snapshot of the counters (a Counter: missing keys read as 0).

        Keys: ``requests`` (every HTTP request), ``login`` / ``graph`` (by host kind),
        operations ``token``, ``openid``, ``discovery``, ``keys``, ``GET namedLocations``
        (each page), ``GET namedLocation``, ``POST namedLocations``, ``PATCH namedLocation``,
        ``DELETE namedLocation``, ``graph other``; every answered status as a string
        (``"200"``, ``"429"`` …); ``token_ok`` / ``token_error``; ``throttled`` (429s
        from the rate limit, as opposed to a throttle fault), ``writes`` (successful
        POST/PATCH/DELETE); faults applied: ``fault latency``, ``fault status``,
        ``fault reset``, ``fault hang``, ``fault throttle``; connection level:
        ``connections`` (TLS handshakes completed), ``tls_failure`` (handshakes that
        failed, e.g. the client rejected the certificate), ``handler_error``.
        """
        with self._lock:
            return Counter(self._counters)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def writes(self, tenant_id: str | None = None) -> list[WriteRecord]:
        with self._lock:
            return [w for w in self._writes if tenant_id is None or w.tenant == tenant_id.lower()]

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()
            self._requests.clear()
            self._writes.clear()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] += n

    # ================================================================== faults

    def set_fault(self, fault: EmulatorFault) -> None:
        with self._lock:
            self._faults.append([fault, fault.count])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_faults(self, host: str, method: str, path: str) -> tuple[float, EmulatorFault | None]:
        latency = 0.0
        chosen: EmulatorFault | None = None
        with self._lock:
            for entry in list(self._faults):
                fault, remaining = entry
                if not fault.matches(host, method, path):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if remaining is not None:
                    entry[1] = remaining - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
        return latency, chosen

    # ================================================================== TLS

    def set_tls_scenario(
        self,
        name: str | None,
        *,
        issuer_cn: str = "Zscaler Root CA",
        issuer_o: str = "Zscaler Inc.",
    ) -> None:
        """Serve new connections with a broken chain (see TLS_SCENARIOS); None restores.

        Open keep-alive connections are closed (after any answer in flight), as when a
        proxy appears on the path. For ``expired`` and ``not_yet_valid`` with a non-zero
        ``date_offset_seconds``, the leaf is valid around the *server's* skewed time
        (so it fails at the client's clock only: clock skew); set the offset first.
        """
        if name is not None and name not in TLS_SCENARIOS:
            raise ValueError(f"TLS scenario must be one of {TLS_SCENARIOS} or None")
        with self._lock:
            self._scenario = name
            self._scenario_issuer = (issuer_cn, issuer_o)
            self._active = self._build_contexts()
        if self._server is not None:
            self._server.drop_connections()

    @property
    def tls_scenario(self) -> str | None:
        return self._scenario

    def _scenario_ca(self, cn: str, o: str, compliant: bool) -> _pki.Issued:
        key = (cn, o, compliant)
        ca = self._scenario_cas.get(key)
        if ca is None:
            ca = _pki.make_ca(_pki.name(cn, o), bcons_critical=compliant)
            self._scenario_cas[key] = ca
        return ca

    def _build_contexts(self) -> dict[str, ssl.SSLContext]:
        scenario = self._scenario
        cn, o = self._scenario_issuer
        offset = self.date_offset_seconds if scenario in ("expired", "not_yet_valid") else 0
        key = (scenario, cn, o, offset)
        cached = self._contexts.get(key)
        if cached is not None:
            self._publish_scenario_ca(scenario, cn, o)
            return cached
        stem = scenario or "normal"
        directory = self.state_dir / "certs" / f"{stem}-{uuid.uuid4().hex[:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        day = dt.timedelta(days=1)
        server_now = now + dt.timedelta(seconds=offset)
        half = min(day, abs(dt.timedelta(seconds=offset)) / 2)
        contexts: dict[str, ssl.SSLContext] = {}
        names = list(ALL_HOSTS) + ([] if scenario else ["localhost"])
        for host in names:
            sans = [host, "127.0.0.1", "::1"] if host == "localhost" else [host]
            chain: list[_pki.Issued] = [self._intermediate]
            if scenario is None:
                leaf = _pki.make_leaf(sans, issuer=self._intermediate)
            elif scenario == "intercepted":
                ca = self._scenario_ca(cn, o, True)
                leaf = _pki.make_leaf(sans, issuer=ca)
                chain = [ca]
            elif scenario == "noncompliant_ca":
                ca = self._scenario_ca(cn, o, False)
                leaf = _pki.make_leaf(sans, issuer=ca)
                chain = [ca]
            elif scenario in ("expired", "not_yet_valid"):
                if offset:
                    nb, na = server_now - half, server_now + half
                elif scenario == "expired":
                    nb, na = now - 90 * day, now - 2 * day
                else:
                    nb, na = now + 2 * day, now + 90 * day
                leaf = _pki.make_leaf(sans, issuer=self._intermediate, not_before=nb, not_after=na)
            elif scenario == "wrong_host":
                leaf = _pki.make_leaf([WRONG_HOST], issuer=self._intermediate)
            elif scenario == "self_signed":
                leaf = _pki.make_leaf(sans, issuer=None)
                chain = []
            else:  # missing_intermediate
                leaf = _pki.make_leaf(sans, issuer=self._intermediate)
                chain = []
            cert_path, key_path = _pki.chain_files(directory, host, leaf, chain)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert_path, key_path)
            contexts[host] = ctx
        self._contexts[key] = contexts
        self._publish_scenario_ca(scenario, cn, o)
        return contexts

    def _publish_scenario_ca(self, scenario: str | None, cn: str, o: str) -> None:
        if scenario in ("intercepted", "noncompliant_ca"):
            ca = self._scenario_ca(cn, o, scenario == "intercepted")
            path = self.state_dir / f"scenario-ca-{scenario}.pem"
            _pki.write_public(path, ca.pem)
            self.scenario_ca_path = path
        else:
            self.scenario_ca_path = None

    def _pick_context(self, server_name: str | None) -> ssl.SSLContext:
        active = self._active
        ctx = active.get((server_name or "").lower())
        if ctx is None:
            ctx = active.get("localhost") or active[ALL_HOSTS[0]]
        return ctx

    # ================================================================== HTTP app

    def _app(self, req: Request) -> Response:
        parsed = urllib.parse.urlsplit(req.target)
        path = parsed.path
        ctx = _Ctx(
            request_id=str(uuid.uuid4()),
            client_request_id=req.headers.get("client-request-id"),
            operation=self._operation(req.host, req.method, path),
        )
        self._count("requests")
        if req.host in GRAPH_HOSTS:
            self._count("graph")
        elif req.host in LOGIN_HOSTS:
            self._count("login")
        if ctx.operation:
            self._count(ctx.operation)
        latency, fault = self._take_faults(req.host, req.method, path)
        if latency > 0:
            self._count("fault latency")
            if self._stopped.wait(latency):
                return self._record(req, ctx, Response(0, action="reset"))
        if fault is not None:
            self._count(f"fault {fault.kind}")
            if fault.kind in ("reset", "hang"):
                return self._record(req, ctx, Response(0, action=fault.kind))
            if fault.kind == "throttle":
                resp = self._throttled_response(req, ctx)
            else:
                resp = self._status_response(req, ctx, fault.status)
            return self._record(req, ctx, resp)
        try:
            if req.host in LOGIN_HOSTS:
                resp = self._login(req, ctx, parsed)
            elif req.host in GRAPH_HOSTS:
                resp = self._graph(req, ctx, parsed)
            else:
                resp = Response(
                    421,
                    b"Misdirected Request: this emulator serves " + ", ".join(ALL_HOSTS).encode(),
                    [("Content-Type", "text/plain")],
                )
        except Exception:  # noqa: BLE001
            resp = self._status_response(req, ctx, 500)
            self._count("handler_error")
        return self._record(req, ctx, resp)

    def _record(self, req: Request, ctx: _Ctx, resp: Response) -> Response:
        with self._lock:
            if resp.status:
                self._counters[str(resp.status)] += 1
            self._requests.append(
                RequestRecord(
                    time.time(),
                    req.host,
                    req.method,
                    req.target,
                    resp.status,
                    ctx.tenant,
                    ctx.client_request_id,
                    ctx.request_id,
                    ctx.operation,
                )
            )
        return resp

    @staticmethod
    def _operation(host: str, method: str, path: str) -> str | None:
        low = path.lower().rstrip("/")
        if host in LOGIN_HOSTS:
            if low.endswith("/oauth2/v2.0/token"):
                return "token"
            if low.endswith("/.well-known/openid-configuration"):
                return "openid"
            if low.endswith("/discovery/instance"):
                return "discovery"
            if low.endswith("/discovery/v2.0/keys"):
                return "keys"
            return None
        if host in GRAPH_HOSTS:
            for prefix in ("/v1.0/", "/beta/"):
                if low.startswith(prefix + _NL_PATH):
                    rest = low[len(prefix + _NL_PATH) :]
                    if rest == "":
                        return f"{method} namedLocations"
                    if rest.count("/") == 1:
                        return f"{method} namedLocation"
            return "graph other"
        return None

    # ------------------------------------------------------------------ shared answers

    def _graph_error(self, ctx: _Ctx, status: int, code: str, message: str) -> Response:
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": dt.datetime.fromtimestamp(self.now(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": ctx.request_id,
                    "client-request-id": ctx.client_request_id or ctx.request_id,
                },
            }
        }
        return Response(status, _dumps(body), self._graph_headers(ctx, _JSON_CT))

    def _graph_headers(self, ctx: _Ctx, content_type: str | None = _GRAPH_CT) -> list[tuple[str, str]]:
        h = [
            ("Cache-Control", "no-cache"),
            ("Strict-Transport-Security", "max-age=31536000"),
            ("request-id", ctx.request_id),
            ("client-request-id", ctx.client_request_id or ctx.request_id),
            (
                "x-ms-ags-diagnostic",
                '{"ServerInfo":{"DataCenter":"Emulated","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"EMULATOR"}}',
            ),
        ]
        if content_type:
            h.insert(0, ("Content-Type", content_type))
        return h + ctx.extra_headers

    def _token_error(self, ctx: _Ctx, err: TokenError) -> Response:
        now = self.now()
        correlation = ctx.client_request_id or str(uuid.uuid4())
        ts = _aad_time(now)
        body = {
            "error": err.error,
            "error_description": f"AADSTS{err.code}: {err.description} Trace ID: {ctx.request_id} "
            f"Correlation ID: {correlation} Timestamp: {ts}",
            "error_codes": [err.code],
            "timestamp": ts,
            "trace_id": ctx.request_id,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
        }
        if ctx.operation == "token":
            self._count("token_error")
        return Response(err.status, _dumps(body), self._login_headers(ctx))

    def _login_headers(self, ctx: _Ctx) -> list[tuple[str, str]]:
        h = [
            ("Content-Type", _JSON_CT),
            ("Cache-Control", "no-store, no-cache"),
            ("Pragma", "no-cache"),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
            ("x-ms-request-id", ctx.request_id),
        ]
        if ctx.client_request_id:
            h.append(("client-request-id", ctx.client_request_id))
        return h

    def _status_response(self, req: Request, ctx: _Ctx, status: int) -> Response:
        if req.host in LOGIN_HOSTS:
            if status >= 500:
                err = TokenError(status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
            elif status == 429:
                err = TokenError(429, "temporarily_unavailable", 50196, "The server terminated an operation because it encountered a client request loop.")
            elif status == 401:
                err = TokenError(401, "invalid_client", 7000215, "Invalid client secret provided.")
            else:
                err = TokenError(status, "invalid_request", 90014, "The request was rejected (emulated fault).")
            return self._token_error(ctx, err)
        if status == 429:
            return self._throttled_response(req, ctx)
        code = {
            400: "BadRequest",
            401: "InvalidAuthenticationToken",
            403: "Authorization_RequestDenied",
            404: "itemNotFound",
            409: "Conflict",
            413: "RequestEntityTooLarge",
            500: "generalException",
            502: "serviceNotAvailable",
            503: "serviceNotAvailable",
            504: "gatewayTimeout",
        }.get(status, "serviceNotAvailable" if status >= 500 else "BadRequest")
        message = {
            403: "Insufficient privileges to complete the operation.",
            401: "Access token validation failure.",
        }.get(status, "The service is currently unavailable." if status >= 500 else "The request was rejected.")
        return self._graph_error(ctx, status, code, message)

    def _throttled_response(self, req: Request, ctx: _Ctx) -> Response:
        if req.host in LOGIN_HOSTS:
            return self._status_response(req, ctx, 429)
        return self._graph_error(
            ctx,
            429,
            "TooManyRequests",
            "Too many requests. The Conditional Access resources of this tenant allow about "
            "1 request per second; retry later.",
        )

    # ================================================================== login host

    def _login(self, req: Request, ctx: _Ctx, parsed: urllib.parse.SplitResult) -> Response:
        segments = [s for s in parsed.path.split("/") if s]
        op = ctx.operation
        if op == "discovery":
            return self._instance_discovery(req, ctx, parsed)
        if not segments or op is None:
            return Response(404, b"", self._login_headers(ctx))
        seg = segments[0]
        try:
            tenant = self._resolve_tenant(req.host, seg, oidc=op != "token")
            ctx.tenant = tenant.id
            if op == "openid":
                return self._openid(req, ctx, tenant)
            if op == "keys":
                return self._jwks(ctx)
            if req.method != "POST":
                raise TokenError(400, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a GET request.")
            return self._token(req, ctx, tenant, seg)
        except TokenError as e:
            return self._token_error(ctx, e)

    def _resolve_tenant(self, host: str, seg: str, *, oidc: bool) -> Tenant:
        error = "invalid_tenant" if oidc else "invalid_request"
        kind = tenant_segment_kind(seg)
        if kind == "malformed":
            raise TokenError(
                400,
                error,
                900023,
                f"Specified tenant identifier '{seg}' is neither a valid DNS name, nor a valid external domain.",
            )
        clouds = cloud_of_host(host)
        with self._lock:
            if kind == "guid":
                tenant = self._tenants.get(seg.lower())
            else:
                tenant = next((t for t in self._tenants.values() if t.domain == seg.lower()), None)
        if tenant is None or tenant.cloud not in clouds:
            raise TokenError(
                400,
                error,
                90002,
                f"Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud. Check with your subscription administrator, this may "
                "happen if there are no active subscriptions for the tenant.",
            )
        return tenant

    def _openid(self, req: Request, ctx: _Ctx, tenant: Tenant) -> Response:
        base = f"https://{req.host}/{tenant.id}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"https://{req.host}/{tenant.id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"https://{tenant.graph_host}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "appid", "roles"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": req.host.removeprefix("login."),
            "msgraph_host": tenant.graph_host,
        }
        return Response(200, _dumps(doc), self._login_headers(ctx))

    def _instance_discovery(self, req: Request, ctx: _Ctx, parsed: urllib.parse.SplitResult) -> Response:
        q = urllib.parse.parse_qs(parsed.query)
        auth = (q.get("authorization_endpoint") or [f"https://{req.host}/common/oauth2/v2.0/authorize"])[0]
        a = urllib.parse.urlsplit(auth)
        tenant = [s for s in a.path.split("/") if s][:1] or ["common"]
        doc = {
            "tenant_discovery_endpoint": f"https://{a.hostname}/{tenant[0]}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": h, "preferred_cache": h, "aliases": [h]} for h in LOGIN_HOSTS],
        }
        return Response(200, _dumps(doc), self._login_headers(ctx))

    def _jwks(self, ctx: _Ctx) -> Response:
        pub = self._key.public_key().public_numbers()
        n = _jwt.b64url(pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big"))
        e = _jwt.b64url(pub.e.to_bytes(3, "big"))
        doc = {"keys": [{"kty": "RSA", "use": "sig", "kid": self._kid, "x5t": self._kid, "n": n, "e": e}]}
        return Response(200, _dumps(doc), self._login_headers(ctx))

    def _token(self, req: Request, ctx: _Ctx, tenant: Tenant, seg: str) -> Response:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if not grant:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")
        client_id = (form.get("client_id") or "").strip().lower()
        if not client_id:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
        with self._lock:
            app = tenant.apps.get(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory "
                f"'{tenant.domain}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                "your authentication request to the wrong tenant.",
            )
        assertion = form.get("client_assertion")
        secret = form.get("client_secret")
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise TokenError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_assertion_type'.",
                )
            self._check_assertion(req, tenant, app, assertion)
            acr = "2"
        elif secret is not None and secret != "":
            if app.secret is not None and secrets.compare_digest(secret.encode(), app.secret.encode()):
                if app.secret_expired:
                    raise TokenError(
                        401,
                        "invalid_client",
                        7000222,
                        f"The provided client secret keys for app '{app.client_id}' are expired. Visit the "
                        "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
                        "consider using certificate credentials for added security: https://aka.ms/certCreds.",
                    )
            else:
                raise TokenError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client secret value, not the client secret ID, for a secret added to app "
                    f"'{app.client_id}'.",
                )
            acr = "1"
        else:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        resource = self._check_scope(tenant, form.get("scope"))
        now = int(self.now())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tenant.id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "aio": _jwt.b64url(secrets.token_bytes(24)),
            "app_displayname": "entragate (emulated)",
            "appid": app.client_id,
            "appidacr": acr,
            "idp": f"https://sts.windows.net/{tenant.id}/",
            "idtyp": "app",
            "oid": app.object_id,
            "roles": sorted(app.roles),
            "sub": app.object_id,
            "tenant_region_scope": "NA",
            "tid": tenant.id,
            "uti": _jwt.b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        token = _jwt.sign_rs256(claims, self._key, {"x5t": self._kid, "kid": self._kid})
        body = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        self._count("token_ok")
        return Response(200, _dumps(body), self._login_headers(ctx))

    def _check_scope(self, tenant: Tenant, scope: str | None) -> str:
        if not scope:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        parts = [p for p in scope.split() if p not in ("openid", "profile", "offline_access")]
        if len(parts) != 1 or not parts[0].endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = parts[0][: -len("/.default")].rstrip("/")
        expected = f"https://{tenant.graph_host}"
        if resource.lower() in (expected, GRAPH_APP_ID):
            return expected
        raise TokenError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {tenant.domain}. "
            "This can happen if the application has not been installed by the administrator of the tenant "
            "or consented to by any user in the tenant. You might have sent your authentication request to "
            "the wrong tenant.",
        )

    def _check_assertion(self, req: Request, tenant: Tenant, app: App, assertion: str) -> None:
        try:
            header, claims, signing_input, signature = _jwt.parse(assertion)
        except _jwt.JwtError:
            raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
        # msal pads its base64url thumbprints, RFC 7515 does not: accept both.
        wanted_sha1 = str(header.get("x5t") or "").rstrip("=")
        wanted_sha256 = str(header.get("x5t#S256") or "").rstrip("=")
        cert = None
        for c in app.certificates:
            sha1, sha256 = _jwt.thumbprints(c)
            if (wanted_sha256 and wanted_sha256 == sha256) or (wanted_sha1 and wanted_sha1 == sha1):
                cert = c
                break
        if cert is None:
            shown = wanted_sha256 or wanted_sha1 or ""
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: '{shown}', "
                "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys "
                f"for app Id '{app.client_id}'.]",
            )
        if not _jwt.verify(str(header.get("alg", "")), cert.public_key(), signing_input, signature):
            raise TokenError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        now = self.now()
        if cert.not_valid_after_utc.timestamp() < now:
            raise TokenError(
                401, "invalid_client", 700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]"
            )
        if claims.get("iss") != app.client_id and str(claims.get("iss", "")).lower() != app.client_id:
            raise TokenError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        if str(claims.get("sub", "")).lower() != app.client_id:
            raise TokenError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if not any(self._audience_ok(req.host, tenant, a) for a in auds):
            raise TokenError(401, "invalid_client", 50012, "Client assertion audience claim does not match Realm issuer.")
        exp = claims.get("exp")
        nbf = claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or (nbf is not None and not isinstance(nbf, int | float)):
            raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        if exp + CLOCK_TOLERANCE < now or (nbf is not None and nbf - CLOCK_TOLERANCE > now):
            start = _iso(nbf) if nbf is not None else "(unset)"
            raise TokenError(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {_iso(now)}, "
                f"assertion valid from {start}, expiry time of assertion {_iso(exp)}. Review the "
                "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            )

    def _audience_ok(self, host: str, tenant: Tenant, aud: Any) -> bool:
        if not isinstance(aud, str):
            return False
        u = urllib.parse.urlsplit(aud)
        if u.scheme != "https" or (u.hostname or "").lower() != host:
            return False
        segs = [s for s in u.path.split("/") if s]
        if not segs or segs[0].lower() not in (tenant.id, tenant.domain):
            return False
        return "/".join(segs[1:]).lower() in ("oauth2/v2.0/token", "oauth2/token", "v2.0")

    # ================================================================== graph host

    def _graph(self, req: Request, ctx: _Ctx, parsed: urllib.parse.SplitResult) -> Response:
        try:
            tenant, roles = self._authenticate(req)
            ctx.tenant = tenant.id
            self._throttle(tenant)
            op = ctx.operation
            if op is None or op == "graph other":
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Resource not found for the segment '{parsed.path.rstrip('/').rsplit('/', 1)[-1]}'.",
                )
            write = req.method in ("POST", "PATCH", "DELETE", "PUT")
            if not (roles & READ_ROLES) or (write and WRITE_ROLE not in roles):
                raise GraphError(
                    403,
                    "AccessDenied",
                    "You cannot perform the requested operation, required scopes are missing in the token.",
                )
            query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
            if op == "GET namedLocations":
                return self._list(req, ctx, tenant, query)
            if op == "POST namedLocations":
                return self._create(req, ctx, tenant)
            if op.endswith(" namedLocation"):
                loc_id = urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
                if req.method == "GET":
                    return self._get(ctx, tenant, loc_id, query)
                if req.method == "PATCH":
                    return self._patch(req, ctx, tenant, loc_id)
                if req.method == "DELETE":
                    return self._delete(ctx, tenant, loc_id)
            raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")
        except GraphError as e:
            if e.status == 429:
                self._count("throttled")
                return self._throttled_response(req, ctx)
            if e.status == 401:
                ctx.extra_headers.append(
                    (
                        "WWW-Authenticate",
                        f'Bearer realm="", authorization_uri="https://{LOGIN_HOSTS[0]}/common/oauth2/authorize", '
                        f'client_id="{GRAPH_APP_ID}"',
                    )
                )
            return self._graph_error(ctx, e.status, e.code, e.message)

    def _authenticate(self, req: Request) -> tuple[Tenant, set[str]]:
        auth = req.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            header, claims, signing_input, signature = _jwt.parse(token)
        except _jwt.JwtError:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.") from None
        if header.get("kid") != self._kid or not _jwt.verify(
            str(header.get("alg")), self._key.public_key(), signing_input, signature
        ):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature.")
        if claims.get("aud") != f"https://{req.host}":
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.now():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        with self._lock:
            tenant = self._tenants.get(str(claims.get("tid")))
            app = tenant.apps.get(str(claims.get("appid"))) if tenant else None
        if tenant is None or app is None or tenant.graph_host != req.host:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        # Like Graph, authorise by the roles in the token: a permission granted after the
        # token was issued is seen only in a new token.
        roles = claims.get("roles")
        return tenant, {str(r) for r in roles} if isinstance(roles, list) else set()

    def _throttle(self, tenant: Tenant) -> None:
        rate = self.rate_limit
        if rate is None or rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if tenant.bucket_time is not None:
                tenant.bucket = min(1.0, tenant.bucket + (now - tenant.bucket_time) * rate)
            tenant.bucket_time = now
            if tenant.bucket < 1.0 - THROTTLE_SLACK:
                raise GraphError(429, "TooManyRequests", "throttled")
            tenant.bucket -= 1.0

    def _json_body(self, req: Request) -> dict[str, Any]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if "json" not in ctype:
            raise GraphError(415, "UnsupportedMediaType", "The request must have Content-Type application/json.")
        try:
            body = json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return body

    def _list(self, req: Request, ctx: _Ctx, tenant: Tenant, query: dict[str, list[str]]) -> Response:
        for k in query:
            if k.startswith("$") and k not in ("$filter", "$top", "$select", "$skiptoken", "$count", "$orderby"):
                raise GraphError(400, "BadRequest", f"Query option '{k}' is not supported.")
        pred = parse_filter(query["$filter"][0]) if query.get("$filter", [""])[0] else None
        page = self.page_size
        if "$top" in query:
            try:
                page = int(query["$top"][0])
            except ValueError:
                raise GraphError(400, "BadRequest", "Invalid value for $top.") from None
            if not 1 <= page <= 999:
                raise GraphError(400, "BadRequest", "$top must be between 1 and 999.")
        offset = decode_skiptoken(query["$skiptoken"][0]) if "$skiptoken" in query else 0
        fields = [f.strip() for f in query["$select"][0].split(",") if f.strip()] if "$select" in query else None
        with self._lock:
            items = [o for o in tenant.locations.values() if pred is None or pred(o)]
            chunk = [select(o, fields) for o in items[offset : offset + page]]
        base = f"https://{req.host}{req.target.split('?', 1)[0]}"
        version = "beta" if "/beta/" in base else "v1.0"
        body: dict[str, Any] = {
            "@odata.context": f"https://{req.host}/{version}/$metadata#identity/conditionalAccess/namedLocations"
            + (f"({','.join(fields)})" if fields else "")
        }
        if offset + page < len(items):
            params = {k: v[0] for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = encode_skiptoken(offset + page)
            body["@odata.nextLink"] = base + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$,'()")
        body["value"] = chunk
        return Response(200, _dumps(body), self._graph_headers(ctx))

    def _get(self, ctx: _Ctx, tenant: Tenant, loc_id: str, query: dict[str, list[str]]) -> Response:
        fields = [f.strip() for f in query["$select"][0].split(",") if f.strip()] if "$select" in query else None
        with self._lock:
            obj = tenant.locations.get(loc_id)
            if obj is None:
                raise self._not_found(loc_id)
            out = {"@odata.context": f"https://{tenant.graph_host}/v1.0/$metadata#identity/conditionalAccess/namedLocations/$entity"}
            out.update(select(obj, fields))
        return Response(200, _dumps(out), self._graph_headers(ctx))

    @staticmethod
    def _not_found(loc_id: str) -> GraphError:
        return GraphError(404, "itemNotFound", f"The named location '{loc_id}' was not found.")

    def _create(self, req: Request, ctx: _Ctx, tenant: Tenant) -> Response:
        body = self._json_body(req)
        obj = new_location(body, self.now())
        with self._lock:
            if len(tenant.locations) >= MAX_LOCATIONS:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"The tenant already has {len(tenant.locations)} named locations; at most {MAX_LOCATIONS} are allowed.",
                )
            tenant.locations[obj["id"]] = obj
            ranges = [r["cidrAddress"] for r in obj.get("ipRanges", [])] if obj["@odata.type"] == IP_TYPE else None
            self._log_write(tenant, "POST", obj["id"], ctx, ranges)
            out = {"@odata.context": f"https://{req.host}/v1.0/$metadata#identity/conditionalAccess/namedLocations/$entity"}
            out.update(copy.deepcopy(obj))
        headers = self._graph_headers(ctx)
        headers.append(("Location", f"https://{req.host}/v1.0/identity/conditionalAccess/namedLocations/{obj['id']}"))
        return Response(201, _dumps(out), headers)

    def _patch(self, req: Request, ctx: _Ctx, tenant: Tenant, loc_id: str) -> Response:
        body = self._json_body(req)
        with self._lock:
            obj = tenant.locations.get(loc_id)
            if obj is None:
                raise self._not_found(loc_id)
            ranges = patch_location(obj, body, self.now())
            self._log_write(tenant, "PATCH", loc_id, ctx, ranges)
        return Response(204, b"", self._graph_headers(ctx, None))

    def _delete(self, ctx: _Ctx, tenant: Tenant, loc_id: str) -> Response:
        with self._lock:
            obj = tenant.locations.get(loc_id)
            if obj is None:
                raise self._not_found(loc_id)
            if obj.get("isTrusted"):
                raise GraphError(
                    400,
                    "BadRequest",
                    "A trusted named location cannot be deleted. Mark it as not trusted (isTrusted false) first.",
                )
            del tenant.locations[loc_id]
            self._log_write(tenant, "DELETE", loc_id, ctx, None)
        return Response(204, b"", self._graph_headers(ctx, None))

    def _log_write(self, tenant: Tenant, method: str, loc_id: str, ctx: _Ctx, ranges: list[str] | None) -> None:
        self._writes.append(
            WriteRecord(time.time(), tenant.id, method, loc_id, ctx.client_request_id, ctx.request_id, ranges)
        )
        self._counters["writes"] += 1


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _new_secret() -> str:
    # Looks like an Entra secret Value: 40 characters, a '~' in it, not a GUID.
    raw = secrets.token_urlsafe(30)[:36].replace("-", "_")
    return raw[:3] + "8Q~" + raw[3:37]

