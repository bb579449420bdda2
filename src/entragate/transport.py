"""The one HTTP stack: a ``requests`` session that msal and the Graph client share.

Three things requests does not do the way an agent must, and why each shim exists:

* **Trust.** requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the
  environment override a session's ``verify`` and falls back to certifi, not the
  system store. We resolve trust once (``ca_bundle`` > environment > system store),
  build one ``SSLContext`` and hand it to urllib3 for every request, so a configured
  ``ca_bundle`` wins on every request, msal's included.
* **connect_to.** curl's ``--connect-to`` keeps SNI, the Host header and hostname
  verification on the real name while dialling another address; urllib3 supports
  this if the connection class dials elsewhere, so ours does.
* **Proxy refusals.** http.client reports a refused CONNECT as a formatted
  ``OSError``; our connection class turns it into ``ProxyTunnelRefused`` at the
  source so that classification never reads messages.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlparse

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
from urllib3.poolmanager import PoolManager

from entragate import __version__
from entragate.config import Config
from entragate.errors import ProxyTunnelRefused

USER_AGENT = f"entragate/{__version__}"


@dataclass(frozen=True)
class TrustSource:
    """Which trust anchors are in effect, and which setting chose them."""

    origin: str  # ca_bundle | ENTRAGATE_CA_BUNDLE | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | SSL_CERT_FILE | SSL_CERT_DIR | system
    cafile: str | None
    capath: str | None

    def describe(self) -> str:
        where = self.cafile or self.capath or "(none)"
        return f"{where} (from {self.origin})"


def resolve_trust(config: Config, env: Mapping[str, str] | None = None) -> TrustSource:
    env = os.environ if env is None else env
    if config.ca_bundle is not None:
        path = str(config.ca_bundle)
        origin = config.ca_bundle_origin or "ca_bundle"
        if os.path.isdir(path):
            return TrustSource(origin, None, path)
        return TrustSource(origin, path, None)
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = env.get(variable)
        if value:
            if os.path.isdir(value):
                return TrustSource(variable, None, value)
            return TrustSource(variable, value, None)
    cert_file, cert_dir = env.get("SSL_CERT_FILE"), env.get("SSL_CERT_DIR")
    if cert_file:
        return TrustSource("SSL_CERT_FILE", cert_file, cert_dir or None)
    if cert_dir:
        return TrustSource("SSL_CERT_DIR", None, cert_dir)
    defaults = ssl.get_default_verify_paths()
    cafile = defaults.openssl_cafile if os.path.exists(defaults.openssl_cafile) else None
    capath = defaults.openssl_capath if os.path.isdir(defaults.openssl_capath) else None
    return TrustSource("system", cafile, capath)


def build_ssl_context(trust: TrustSource) -> ssl.SSLContext:
    """A verifying client context with exactly the anchors of ``trust``.

    The flags match what Python 3.13 enables by default, so a CA that newer clients
    refuse is refused here too (the doctor calls that ``noncompliant_ca``).
    A trust store that cannot be loaded leaves the context with no anchors: every
    connection then fails verification (ENTRA003) and the doctor names the cause.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    context.set_alpn_protocols(["http/1.1"])
    try:
        if trust.cafile or trust.capath:
            context.load_verify_locations(cafile=trust.cafile, capath=trust.capath)
    except (OSError, ssl.SSLError):
        pass
    return context


# ---------------------------------------------------------------- proxies


def _proxy_from_env(env: Mapping[str, str], scheme: str) -> str | None:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = env.get(name)
        if value:
            return value
    return None


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """NO_PROXY as curl and requests read it: suffixes, leading dots, IPs, CIDRs, ``*``."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry_host, _, entry_port = entry.rpartition(":") if re.search(r":\d+$", entry) and entry.count(":") == 1 else (entry, "", "")
        if entry_port and int(entry_port) != port:
            continue
        entry_host = entry_host.lstrip(".").strip("[]")
        try:
            network = ipaddress.ip_network(entry_host, strict=False)
            if ipaddress.ip_address(host) in network:
                return True
            continue
        except ValueError:
            pass
        if host == entry_host or host.endswith("." + entry_host):
            return True
    return False


def proxy_for(config: Config, url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy a request to ``url`` goes through, or None for a direct connection."""
    env = os.environ if env is None else env
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if no_proxy and bypasses_proxy(host, port, no_proxy):
        return None
    return config.proxy or _proxy_from_env(env, parsed.scheme or "https")


def connect_target(config: Config, host: str, port: int) -> tuple[str, int]:
    """Where a connection for host:port is really dialled (``connect_to``)."""
    for entry in config.connect_to:
        if entry.host == host.lower().rstrip(".") and entry.port == port:
            return entry.target_host, entry.target_port
    return host, port


# ---------------------------------------------------------------- connection classes


class _EntraHTTPSConnection(urllib3.connection.HTTPSConnection):
    connect_to: ClassVar[dict[tuple[str, int], tuple[str, int]]] = {}

    def _new_conn(self) -> socket.socket:
        target = self.connect_to.get((self._dns_host.rstrip(".").lower(), self.port))
        if target is None:
            return super()._new_conn()
        # Dial the mapped address; SNI and the Host header still use the original name,
        # because connect() reads self.host after this returns.
        original = (self._dns_host, self.port)
        self._dns_host, self.port = target
        try:
            return super()._new_conn()
        finally:
            self._dns_host, self.port = original

    def _tunnel(self) -> None:
        try:
            super()._tunnel()
        except OSError as exc:
            # http.client's only report of a refused CONNECT: "Tunnel connection failed: 407 ..."
            match = re.match(r"Tunnel connection failed: (\d{3}) ?(.*)", str(exc))
            if match is None:
                raise
            proxy = f"{self._dns_host}:{self.port}"
            raise ProxyTunnelRefused(int(match.group(1)), match.group(2), proxy) from exc


class EntraAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, ssl_context: ssl.SSLContext, connect_to: dict[tuple[str, int], tuple[str, int]]) -> None:
        self._ssl_context = ssl_context
        connection_cls = type("ConnectToHTTPSConnection", (_EntraHTTPSConnection,), {"connect_to": connect_to})
        self._pool_cls = type(
            "EntraHTTPSConnectionPool",
            (urllib3.connectionpool.HTTPSConnectionPool,),
            {"ConnectionCls": connection_cls},
        )
        super().__init__(pool_connections=4, pool_maxsize=8, max_retries=0)

    def _install_pools(self, manager: PoolManager) -> None:
        manager.pool_classes_by_scheme = {
            "http": urllib3.connectionpool.HTTPConnectionPool,
            "https": self._pool_cls,
        }

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self._install_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh:
            self._install_pools(manager)
        return manager

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        host_params, _ = super().build_connection_pool_key_attributes(request, True, None)
        # verify is ignored on purpose: trust comes from our context, never from arguments.
        return host_params, {"ssl_context": self._ssl_context, "cert_reqs": "CERT_REQUIRED"}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


class EntraSession(requests.Session):
    """requests.Session with our trust, proxies, connect_to and default timeout."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.config = config
        self.env = dict(os.environ if env is None else env)
        # Environment handling (proxies) is ours; netrc and env CA variables must not leak in.
        self.trust_env = False
        self.trust = resolve_trust(config, self.env)
        self.ssl_context = build_ssl_context(self.trust)
        mapping = {(e.host, e.port): (e.target_host, e.target_port) for e in config.connect_to}
        adapter = EntraAdapter(self.ssl_context, mapping)
        self.mount("https://", adapter)
        self.headers["User-Agent"] = USER_AGENT
        self._local = threading.local()

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        target = url.decode() if isinstance(url, bytes) else (url or "")
        proxy = proxy_for(self.config, target, self.env)
        scheme = urlparse(target).scheme or "https"
        return {
            "proxies": {scheme: proxy} if proxy else {},
            "stream": stream,
            "verify": True,
            "cert": None,
        }

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (self.config.timeout, self.config.timeout)
        kwargs.pop("verify", None)
        response = super().request(method, url, *args, **kwargs)
        self._local.last_response = response
        return response

    def last_response(self) -> requests.Response | None:
        """The last response on this thread: msal hides status and body from its callers."""
        return getattr(self._local, "last_response", None)

    def forget_last_response(self) -> None:
        self._local.last_response = None


def new_session(config: Config, env: Mapping[str, str] | None = None) -> EntraSession:
    return EntraSession(config, env)
