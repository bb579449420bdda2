"""Configuration: one TOML file, every key overridable by ``ENTRAGATE_<KEY>``.

Problems are collected, not raised one by one, so an operator fixing a broken
file sees every mistake in one run (``ConfigError.problems``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entragate.exposure import tls_problems

DEFAULT_PATHS = (Path("/etc/entragate/config.toml"), Path("entragate.toml"))


@dataclass(frozen=True)
class Cloud:
    name: str
    login_host: str
    graph_host: str


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("global", "login.microsoftonline.com", "graph.microsoft.com"),
    "usgov": Cloud("usgov", "login.microsoftonline.us", "graph.microsoft.us"),
    "usgov-dod": Cloud("usgov-dod", "login.microsoftonline.us", "dod-graph.microsoft.us"),
    # China's current login host; the older login.chinacloudapi.cn still answers.
    "china": Cloud("china", "login.partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
}


class Secret:
    """A string that never prints itself: repr, str and format all mask it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class ConnectTo:
    """curl's ``--connect-to HOST1:PORT1:HOST2:PORT2``: dial HOST2:PORT2, keep HOST1 for SNI."""

    host: str
    port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, entry: str) -> ConnectTo:
        # IPv6 literals may be bracketed: [::1]
        match = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):(\w+):(\[[^\]]+\]|[^:\[\]]+):(\w+)", entry.strip())
        if match is None:
            raise ValueError(f"connect_to entry {entry!r} is not HOST1:PORT1:HOST2:PORT2")
        parts = match.groups()
        h1, p1, h2, p2 = (p.strip("[]") for p in parts)
        try:
            port1, port2 = int(p1), int(p2)
        except ValueError:
            raise ValueError(f"connect_to entry {entry!r} has a non-numeric port") from None
        if not h1 or not h2:
            raise ValueError(f"connect_to entry {entry!r} needs both host names")
        return cls(h1.lower(), port1, h2, port2)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.target_host}:{self.target_port}"


@dataclass(frozen=True)
class AclConfig:
    name: str
    location: str
    trusted: bool = False
    #: Create the location when no location has its name (never from an id): off by
    #: default, so a typo in a name cannot silently create an unused location.
    create: bool = False
    static: tuple[str, ...] = ()
    max_ranges: int = 2000
    max_locations: int = 1


@dataclass(frozen=True)
class AgentConfig:
    listen: str = "127.0.0.1:8787"
    api_token: Secret | None = None
    api_token_file: Path | None = None
    store: str = "sqlite:///var/lib/entragate/grants.db"
    rate: float = 1.0
    verify_interval: float = 300.0
    max_ttl: int = 7 * 86400
    script_ttl: int = 12 * 3600
    placeholder: str = "192.0.2.255/32"
    tls_cert: Path | None = None  # PEM; required when listen is not a loopback address
    tls_key: Path | None = None

    @property
    def listen_host(self) -> str:
        host, _, _ = self.listen.rpartition(":")
        return host.strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class Config:
    tenant_id: str = ""
    client_id: str = ""
    client_secret: Secret | None = None
    client_certificate: Path | None = None
    client_certificate_password: Secret | None = None
    cloud: str = "global"
    login_host: str = CLOUDS["global"].login_host
    graph_host: str = CLOUDS["global"].graph_host
    ca_bundle: Path | None = None
    ca_bundle_origin: str | None = None
    expected_roots: Path | None = None
    proxy: str | None = None
    connect_to: tuple[ConnectTo, ...] = ()
    timeout: float = 10.0
    acls: dict[str, AclConfig] = field(default_factory=dict)
    agent: AgentConfig = field(default_factory=AgentConfig)
    source: str | None = None

    @property
    def authority(self) -> str:
        return f"https://{self.login_host}/{self.tenant_id}"

    @property
    def graph_scope(self) -> str:
        return f"https://{self.graph_host}/.default"

    @property
    def graph_base(self) -> str:
        return f"https://{self.graph_host}/v1.0"


class ConfigError(Exception):
    """Every problem found in the configuration, one line each."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(problems))


_SIMPLE_KEYS = (
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_file",
    "client_certificate",
    "client_certificate_password",
    "cloud",
    "login_host",
    "graph_host",
    "ca_bundle",
    "expected_roots",
    "proxy",
    "connect_to",
    "timeout",
)
_AGENT_KEYS = (
    "listen",
    "api_token",
    "api_token_file",
    "store",
    "rate",
    "verify_interval",
    "max_ttl",
    "script_ttl",
    "placeholder",
    "tls_cert",
    "tls_key",
)
_ACL_KEYS = ("location", "trusted", "create", "static", "max_ranges", "max_locations")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def find_config_file(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if path:
        return Path(path)
    if env.get("ENTRAGATE_CONFIG"):
        return Path(env["ENTRAGATE_CONFIG"])
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return candidate
    return None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Load the file (if any), apply ``ENTRAGATE_*`` overrides and validate.

    ``require_credentials=False`` serves commands that work on the grant store
    alone (``grant`` without a running agent, ``list``) and the doctor, which
    reports missing values as a check instead of refusing to start.
    """
    env = os.environ if env is None else env
    file_path = find_config_file(path, env)
    raw: dict[str, Any] = {}
    problems: list[str] = []
    source = str(file_path) if file_path else None
    if file_path is not None:
        try:
            raw = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"configuration file {file_path} does not exist"], source) from None
        except PermissionError:
            raise ConfigError([f"configuration file {file_path} is not readable"], source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{file_path} is not valid TOML: {exc}"], source) from None

    top: dict[str, Any] = {k: raw[k] for k in _SIMPLE_KEYS if k in raw}
    agent_raw: dict[str, Any] = dict(raw.get("agent", {}) or {})
    acl_raw: dict[str, Any] = dict(raw.get("acl", {}) or {})
    known_top = set(_SIMPLE_KEYS) | {"agent", "acl"}
    for key in raw:
        if key not in known_top:
            problems.append(f"unknown key {key!r}")
    for key in agent_raw:
        if key not in _AGENT_KEYS:
            problems.append(f"unknown key agent.{key!r}")

    ca_bundle_origin = "ca_bundle" if "ca_bundle" in top else None
    for key in _SIMPLE_KEYS:
        env_value = env.get(f"ENTRAGATE_{key.upper()}")
        if env_value is not None:
            top[key] = env_value
            if key == "ca_bundle":
                ca_bundle_origin = "ENTRAGATE_CA_BUNDLE"
    for key in _AGENT_KEYS:
        env_value = env.get(f"ENTRAGATE_{key.upper()}")
        if env_value is not None:
            agent_raw[key] = env_value
    if env.get("ENTRAGATE_ACLS"):
        # ENTRAGATE_ACLS="staff=Entragate staff;vpn=VPN users" for container setups
        for item in env["ENTRAGATE_ACLS"].split(";"):
            name, _, location = item.partition("=")
            if name.strip():
                acl_raw.setdefault(name.strip(), {})["location"] = location.strip() or name.strip()

    base = file_path.parent if file_path else Path.cwd()

    def as_path(key: str, value: Any) -> Path | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            problems.append(f"{key} must be a path string")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    def as_str(key: str, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            problems.append(f"{key} must be a string")
            return ""
        return value

    def as_number(key: str, value: Any, default: float, minimum: float = 0.0) -> float:
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            problems.append(f"{key} must be a number, got {value!r}")
            return default
        if number <= minimum:
            problems.append(f"{key} must be greater than {minimum:g}, got {value!r}")
            return default
        return number

    def as_bool(key: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        problems.append(f"{key} must be true or false, got {value!r}")
        return default

    # --- cloud and hosts
    cloud = as_str("cloud", top.get("cloud")) or "global"
    if cloud not in CLOUDS:
        problems.append(f"cloud {cloud!r} is not one of {', '.join(CLOUDS)}")
        cloud = "global"
    login_host = as_str("login_host", top.get("login_host")) or CLOUDS[cloud].login_host
    graph_host = as_str("graph_host", top.get("graph_host")) or CLOUDS[cloud].graph_host

    # --- credentials
    tenant_id = as_str("tenant_id", top.get("tenant_id")).strip()
    client_id = as_str("client_id", top.get("client_id")).strip()
    secret_value = top.get("client_secret")
    secret_file = as_path("client_secret_file", top.get("client_secret_file"))
    if secret_value is None and secret_file is not None:
        try:
            secret_value = secret_file.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            problems.append(f"client_secret_file {secret_file}: {exc.strerror}")
    client_secret = Secret(as_str("client_secret", secret_value)) if secret_value else None
    client_certificate = as_path("client_certificate", top.get("client_certificate"))
    cert_password_value = top.get("client_certificate_password")
    client_certificate_password = (
        Secret(as_str("client_certificate_password", cert_password_value))
        if cert_password_value
        else None
    )
    if require_credentials:
        if not tenant_id:
            problems.append("tenant_id is missing (the directory (tenant) ID of your Entra tenant)")
        if not client_id:
            problems.append("client_id is missing (the application (client) ID)")
        if client_secret is None and client_certificate is None:
            problems.append(
                "no credential: set client_secret, client_secret_file or client_certificate"
            )
    if client_secret is not None and client_certificate is not None:
        problems.append("set either client_secret or client_certificate, not both")
    if client_certificate is not None and not client_certificate.exists():
        problems.append(f"client_certificate {client_certificate} does not exist")
    if tenant_id and not (_GUID.match(tenant_id) or "." in tenant_id):
        problems.append(
            f"tenant_id {tenant_id!r} is neither a GUID nor a domain such as contoso.onmicrosoft.com"
        )

    # --- trust, proxy, routing
    ca_bundle = as_path("ca_bundle", top.get("ca_bundle"))
    if ca_bundle is None:
        ca_bundle_origin = None
    expected_roots = as_path("expected_roots", top.get("expected_roots"))
    proxy = as_str("proxy", top.get("proxy")) or None
    connect_to_raw = top.get("connect_to") or []
    if isinstance(connect_to_raw, str):
        connect_to_raw = [e for e in re.split(r"[,\s]+", connect_to_raw) if e]
    connect_to: list[ConnectTo] = []
    if not isinstance(connect_to_raw, list):
        problems.append("connect_to must be a list of HOST1:PORT1:HOST2:PORT2 strings")
        connect_to_raw = []
    for entry in connect_to_raw:
        try:
            connect_to.append(ConnectTo.parse(str(entry)))
        except ValueError as exc:
            problems.append(str(exc))
    timeout = as_number("timeout", top.get("timeout"), 10.0)

    # --- agent
    api_token_value = agent_raw.get("api_token")
    agent = AgentConfig(
        listen=as_str("agent.listen", agent_raw.get("listen")) or AgentConfig.listen,
        api_token=Secret(str(api_token_value)) if api_token_value else None,
        api_token_file=as_path("agent.api_token_file", agent_raw.get("api_token_file")),
        store=as_str("agent.store", agent_raw.get("store")) or AgentConfig.store,
        rate=as_number("agent.rate", agent_raw.get("rate"), AgentConfig.rate),
        verify_interval=as_number(
            "agent.verify_interval", agent_raw.get("verify_interval"), AgentConfig.verify_interval
        ),
        max_ttl=int(as_number("agent.max_ttl", agent_raw.get("max_ttl"), AgentConfig.max_ttl)),
        script_ttl=int(
            as_number("agent.script_ttl", agent_raw.get("script_ttl"), AgentConfig.script_ttl)
        ),
        placeholder=as_str("agent.placeholder", agent_raw.get("placeholder"))
        or AgentConfig.placeholder,
        tls_cert=as_path("agent.tls_cert", agent_raw.get("tls_cert")),
        tls_key=as_path("agent.tls_key", agent_raw.get("tls_key")),
    )
    host, sep, port = agent.listen.rpartition(":")
    if not sep or not port.isdigit():
        problems.append(f"agent.listen {agent.listen!r} is not HOST:PORT")
    problems.extend(tls_problems(agent))
    if not agent.store.startswith(("sqlite:", "postgresql://", "postgres://")):
        problems.append(f"agent.store {agent.store!r} must start with sqlite:/// or postgresql://")

    # --- ACLs
    acls: dict[str, AclConfig] = {}
    for name, table in acl_raw.items():
        if not isinstance(table, dict):
            problems.append(f"acl.{name} must be a table")
            continue
        for key in table:
            if key not in _ACL_KEYS:
                problems.append(f"unknown key acl.{name}.{key}")
        static = table.get("static", [])
        if isinstance(static, str):
            static = [s for s in re.split(r"[,\s]+", static) if s]
        if not isinstance(static, list):
            problems.append(f"acl.{name}.static must be a list of CIDR strings")
            static = []
        max_ranges = int(as_number(f"acl.{name}.max_ranges", table.get("max_ranges"), 2000))
        if max_ranges > 2000:
            problems.append(
                f"acl.{name}.max_ranges {max_ranges} exceeds Microsoft's 2000 ranges per location"
            )
        acls[name] = AclConfig(
            name=name,
            location=as_str(f"acl.{name}.location", table.get("location")) or name,
            trusted=as_bool(f"acl.{name}.trusted", table.get("trusted"), False),
            create=as_bool(f"acl.{name}.create", table.get("create"), AclConfig.create),
            static=tuple(str(s) for s in static),
            max_ranges=max_ranges,
            max_locations=int(
                as_number(f"acl.{name}.max_locations", table.get("max_locations"), 1)
            ),
        )
        if acls[name].max_locations > 195:
            problems.append(f"acl.{name}.max_locations exceeds Microsoft's 195 named locations")

    if problems:
        raise ConfigError(problems, source)
    return Config(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        client_certificate=client_certificate,
        client_certificate_password=client_certificate_password,
        cloud=cloud,
        login_host=login_host.lower(),
        graph_host=graph_host.lower(),
        ca_bundle=ca_bundle,
        ca_bundle_origin=ca_bundle_origin,
        expected_roots=expected_roots,
        proxy=proxy,
        connect_to=tuple(connect_to),
        timeout=timeout,
        acls=acls,
        agent=agent,
        source=source,
    )


def looks_like_secret_id(secret: Secret | None) -> bool:
    """Entra shows a secret's ID (a GUID) beside its Value; people paste the wrong one."""
    return secret is not None and bool(_GUID.match(secret.reveal().strip()))
