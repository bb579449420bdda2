"""The emulated tenants' state: clouds and host names, tenants with their apps and named
locations, the portal's actions on them, the counters and logs tests read, and the state
directory (docs/design.md#emulator).

Everything is in memory except what lives in ``state_dir`` (the TLS root CA, written by
the TLS module). One re-entrant ``lock`` guards it all; the token service and the Graph
routes take it too.  The file is over 400 lines because it is that one locked piece: the
tenant model and the portal actions on it share the lock and the records, and splitting
them would spread one invariant over two modules.
"""

from __future__ import annotations

import copy
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from ._http import GraphError
from .directory import Directory
from .history import LocationHistory
from .locations import (
    COMPLIANT_NETWORK_TYPE,
    COUNTRY_TYPE,
    IP_TYPE,
    graph_time,
    ip_ranges,
    new_location,
    patch_location,
)

CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("login.microsoftonline.com", "graph.microsoft.com"),
    "usgov": ("login.microsoftonline.us", "graph.microsoft.us"),
    "usgov-dod": ("login.microsoftonline.us", "dod-graph.microsoft.us"),
    "china": ("login.partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
}
#: Login hosts a cloud still answers on besides its current one.
OLDER_LOGIN_HOSTS: dict[str, str] = {"login.chinacloudapi.cn": "china"}
DOMAIN_SUFFIX = {
    "global": "onmicrosoft.com",
    "usgov": "onmicrosoft.us",
    "usgov-dod": "onmicrosoft.us",
    "china": "partner.onmschina.cn",
}
LOGIN_HOSTS: tuple[str, ...] = tuple(dict.fromkeys([*(v[0] for v in CLOUDS.values()), *OLDER_LOGIN_HOSTS]))
GRAPH_HOSTS: tuple[str, ...] = tuple(dict.fromkeys(v[1] for v in CLOUDS.values()))
ALL_HOSTS: tuple[str, ...] = LOGIN_HOSTS + GRAPH_HOSTS

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's appId in every tenant
READ_ROLES = frozenset({"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"})
WRITE_ROLE = "Policy.ReadWrite.ConditionalAccess"
DEFAULT_ROLES: tuple[str, ...] = ("Policy.Read.All", "Policy.ReadWrite.ConditionalAccess")
LOG_LIMIT = 200_000  # request and write records kept (the oldest go first)

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DNS_RE = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$")


def cloud_of_host(host: str) -> list[str]:
    """Clouds served by ``host`` (a login host can serve two: usgov and usgov-dod)."""
    found = [c for c, (login, graph) in CLOUDS.items() if host in (login, graph)]
    return found + ([OLDER_LOGIN_HOSTS[host]] if host in OLDER_LOGIN_HOSTS else [])


def tenant_segment_kind(segment: str) -> str:
    """'guid', 'domain' or 'malformed' for a tenant path segment."""
    if GUID_RE.match(segment):
        return "guid"
    if _DNS_RE.match(segment):
        return "domain"
    return "malformed"


@dataclass(frozen=True)
class AppRegistration:
    """An app registration as a test (or operator) sees it.

    ``secret`` is the secret's Value (what goes in ``client_secret``); ``secret_id``
    is the GUID the portal shows next to it, which careless admins paste instead.
    """

    tenant_id: str
    client_id: str
    secret: str | None
    secret_id: str | None
    certificate_pem: bytes | None


@dataclass
class App:
    client_id: str
    secret: str | None
    secret_id: str | None
    secret_expired: bool
    certificates: list[x509.Certificate]
    roles: set[str]
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: A Conditional Access policy for workload identities blocks this app (AADSTS53003).
    blocked_by_policy: bool = False


@dataclass
class Tenant:
    id: str
    cloud: str
    domain: str
    apps: dict[str, App] = field(default_factory=dict)
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # Conditional Access
    bucket: float = 1.0  # the Graph throttle's token bucket
    bucket_time: float | None = None
    history: LocationHistory = field(default_factory=LocationHistory)
    directory: Directory = field(default_factory=Directory)  # users, sign-in log (directory.py)

    @property
    def login_host(self) -> str:
        return CLOUDS[self.cloud][0]

    @property
    def graph_host(self) -> str:
        return CLOUDS[self.cloud][1]


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


class TenantState:
    """Tenants, apps and named locations; the emulated clock; counters and logs.

    ``rate_limit`` (Graph requests per second per tenant, None: off), ``token_lifetime``,
    ``page_size``, ``date_offset_seconds`` (the server clock's skew), ``read_lag_seconds``
    (Graph's read-after-write lag, 0: off) and ``keep_deleted`` (DELETE keeps a
    restorable deleted item) may be changed while the emulator runs.
    """

    def __init__(self, state_dir: Path | None, rate_limit: float | None, token_lifetime: int) -> None:
        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix="entragate-emulator-"))
            weakref.finalize(self, shutil.rmtree, state_dir, True)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.rate_limit = rate_limit
        self.token_lifetime = token_lifetime
        self.date_offset_seconds = 0
        self.page_size = 100
        self.read_lag_seconds = 0.0
        self.keep_deleted = True
        self.lock = threading.RLock()
        self._tenants: dict[str, Tenant] = {}
        self._counters: Counter[str] = Counter()
        self._requests: deque[RequestRecord] = deque(maxlen=LOG_LIMIT)
        self._writes: deque[WriteRecord] = deque(maxlen=LOG_LIMIT)

    def now(self) -> float:
        """The emulated server clock (wall clock + ``date_offset_seconds``)."""
        return time.time() + self.date_offset_seconds

    # ------------------------------------------------------------------ tenants and apps

    def add_tenant(self, tenant_id: str | None = None, cloud: str = "global") -> str:
        if cloud not in CLOUDS:
            raise ValueError(f"cloud must be one of {sorted(CLOUDS)}")
        tid = (tenant_id or str(uuid.uuid4())).lower()
        with self.lock:
            if tid in self._tenants:
                raise ValueError(f"tenant {tid} exists")
            domain = f"emu{tid.replace('-', '')[:10]}.{DOMAIN_SUFFIX[cloud]}"
            self._tenants[tid] = Tenant(tid, cloud, domain)
        return tid

    def tenant_domain(self, tenant_id: str) -> str:
        """The tenant's initial domain (``….onmicrosoft.com``), usable in place of its id."""
        return self.tenant(tenant_id).domain

    def tenant_cloud(self, tenant_id: str) -> str:
        return self.tenant(tenant_id).cloud

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
        tenant = self.tenant(tenant_id)
        cid = (client_id or str(uuid.uuid4())).lower()
        if secret is None and certificate_pem is None:
            secret = _new_secret()
        certs = x509.load_pem_x509_certificates(certificate_pem) if certificate_pem else []
        secret_id = str(uuid.uuid4()) if secret is not None else None
        with self.lock:
            if cid in tenant.apps:
                raise ValueError(f"app {cid} exists in tenant {tenant.id}")
            tenant.apps[cid] = App(cid, secret, secret_id, secret_expired, certs, set(roles))
        return AppRegistration(tenant.id, cid, secret, secret_id, certificate_pem)

    def set_roles(self, tenant_id: str, client_id: str, roles: Iterable[str]) -> None:
        """Change an app's granted application permissions; Graph checks them live."""
        app = self._registered_app(tenant_id, client_id)
        with self.lock:
            app.roles = set(roles)

    def block_workload_identity(self, tenant_id: str, client_id: str, blocked: bool = True) -> None:
        """A workload-identity Conditional Access policy blocks (or stops blocking) the app."""
        app = self._registered_app(tenant_id, client_id)
        with self.lock:
            app.blocked_by_policy = blocked

    def set_secret_expired(self, tenant_id: str, client_id: str, expired: bool = True) -> None:
        app = self._registered_app(tenant_id, client_id)
        with self.lock:
            app.secret_expired = expired

    def all_tenants(self) -> list[Tenant]:
        """Every tenant (the live objects: hold ``lock`` while reading them)."""
        with self.lock:
            return list(self._tenants.values())

    def put_tenant(self, tenant: Tenant) -> None:
        """Add or replace a whole tenant (``persist.load``)."""
        with self.lock:
            self._tenants[tenant.id] = tenant

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant of that id; KeyError when there is none."""
        found = self.get_tenant(tenant_id)
        if found is None:
            raise KeyError(f"no tenant {tenant_id}")
        return found

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        with self.lock:
            return self._tenants.get(tenant_id.lower())

    def find_tenant(self, segment: str) -> Tenant | None:
        """The tenant a login URL names: by its id (a GUID) or by its initial domain."""
        if tenant_segment_kind(segment) == "guid":
            return self.get_tenant(segment)
        key = segment.lower()
        with self.lock:
            return next((t for t in self._tenants.values() if t.domain == key), None)

    def find_app(self, tenant: Tenant | None, client_id: str) -> App | None:
        if tenant is None:
            return None
        with self.lock:
            return tenant.apps.get(client_id.lower())

    def _registered_app(self, tenant_id: str, client_id: str) -> App:
        app = self.find_app(self.tenant(tenant_id), client_id)
        if app is None:
            raise KeyError(f"no app {client_id} in tenant {tenant_id}")
        return app

    # ------------------------------------------------------------------ portal actions

    def add_policy(self, tenant_id: str, display_name: str, **conditions: Any) -> str:
        """A Conditional Access policy (see :func:`~entragate.emulator.policies.new_policy`)."""
        from .policies import new_policy

        policy = new_policy(display_name, now=self.now(), **conditions)
        with self.lock:
            self.tenant(tenant_id).policies[policy["id"]] = policy
        return str(policy["id"])

    def policies(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.tenant(tenant_id).policies.values()))

    def locations(self, tenant_id: str) -> list[dict[str, Any]]:
        t = self.tenant(tenant_id)
        with self.lock:
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

    def create_compliant_network_location(self, tenant_id: str, display_name: str = "All Compliant Network locations") -> str:
        """The location Global Secure Access adds (it cannot be made through Graph)."""
        t = self.tenant(tenant_id)
        stamp = graph_time(self.now())
        location_id = str(uuid.uuid4())
        obj: dict[str, Any] = {
            "@odata.type": COMPLIANT_NETWORK_TYPE,
            "id": location_id,
            "displayName": display_name,
            "createdDateTime": stamp,
            "modifiedDateTime": stamp,
            "compliantNetworkType": "allTenantCompliantNetworks",
            "isTrusted": True,
        }
        with self.lock:
            t.locations[location_id] = obj
        return location_id

    def _portal_create(self, tenant_id: str, body: dict[str, Any]) -> str:
        t = self.tenant(tenant_id)
        try:
            obj = new_location(body, self.now())
        except GraphError as e:
            raise ValueError(e.message) from None
        with self.lock:
            t.locations[obj["id"]] = obj
        return str(obj["id"])

    def edit_location(self, tenant_id: str, location_id: str, cidrs: list[str]) -> None:
        t = self.tenant(tenant_id)
        with self.lock:
            obj = t.locations.get(location_id)
            if obj is None:
                raise KeyError(location_id)
            try:
                patch_location(obj, {"@odata.type": obj["@odata.type"], "ipRanges": ip_ranges(cidrs)}, self.now())
            except GraphError as e:
                raise ValueError(e.message) from None

    def set_trusted(self, tenant_id: str, location_id: str, trusted: bool) -> None:
        t = self.tenant(tenant_id)
        with self.lock:
            obj = t.locations[location_id]
            obj["isTrusted"] = trusted
            obj["modifiedDateTime"] = graph_time(self.now())

    def delete_location(self, tenant_id: str, location_id: str) -> None:
        t = self.tenant(tenant_id)
        with self.lock:
            obj = t.locations.pop(location_id)
            if self.keep_deleted:
                t.history.keep_deleted(location_id, obj, self.now(), graph_time)

    def deleted_locations(self, tenant_id: str) -> list[dict[str, Any]]:
        t = self.tenant(tenant_id)
        with self.lock:
            return copy.deepcopy(list(t.history.deleted_items(self.now()).values()))

    def restore_location(self, tenant_id: str, location_id: str) -> None:
        """Bring a deleted location back, id and ranges unchanged (KeyError when not deleted)."""
        t = self.tenant(tenant_id)
        with self.lock:
            obj = t.history.restore(location_id, self.now())
            if obj is None:
                raise KeyError(location_id)
            t.locations[location_id] = obj

    # ------------------------------------------------------------------ observation

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
        with self.lock:
            return Counter(self._counters)

    @property
    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._requests)

    def writes(self, tenant_id: str | None = None) -> list[WriteRecord]:
        with self.lock:
            return [w for w in self._writes if tenant_id is None or w.tenant == tenant_id.lower()]

    def reset_counters(self) -> None:
        with self.lock:
            self._counters.clear()
            self._requests.clear()
            self._writes.clear()

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self._counters[key] += n

    def log_request(self, record: RequestRecord) -> None:
        """Keep ``record`` and count its status (0, no answer, is not counted)."""
        with self.lock:
            if record.status:
                self._counters[str(record.status)] += 1
            self._requests.append(record)

    def log_write(self, record: WriteRecord) -> None:
        with self.lock:
            self._writes.append(record)
            self._counters["writes"] += 1


def _new_secret() -> str:
    # Looks like an Entra secret Value: 40 characters, a '~' in it, not a GUID.
    raw = secrets.token_urlsafe(30)[:36].replace("-", "_")
    return raw[:3] + "8Q~" + raw[3:37]
