"""Configuration: one TOML file, every key overridable by ``ENTRAGATE_<KEY>``.

Problems are collected, not raised one by one, so an operator fixing a broken
file sees every mistake in one run (``ConfigError.problems``).

One piece (a little over 400 lines) because ``load_config`` is one pass over the file
and the environment that collects every problem; the key table (``config_keys``), the
file and address checks (``config_check``), the value types (``config_values``) and the
API's exposure rule (``exposure``) already live apart.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entragate.config_check import check_listen
from entragate.config_keys import did_you_mean, table_keys
from entragate.config_values import CLOUDS, Cloud, ConnectTo, Secret, ValueReader
from entragate.exposure import tls_problems
from entragate.tenants import (
    DEFAULT_TENANT,
    GUID,
    IDENTITY_FIELDS,
    TenantConfig,
    TenantIdentity,
    parse_tenant,
    parse_tenant_tables,
    serving_tenants,
    tenant_of_config,
    tenant_problems,
    tenant_view,
)

__all__ = ["CLOUDS", "AclConfig", "AgentConfig", "Cloud", "Config", "ConfigError", "ConnectTo", "Secret",
           "TenantConfig", "find_config_file", "load_config", "looks_like_secret_id"]

DEFAULT_PATHS = (Path("/etc/entragate/config.toml"), Path("entragate.toml"))


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
    #: Revoke a user's sessions when their last grant in this ACL ends (docs/design.md#sessions).
    revoke_sessions: bool = False
    #: The tenant holding the location (docs/design.md#tenants).
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True)
class AgentConfig:
    listen: str = "127.0.0.1:8787"
    api_token: Secret | None = None
    api_token_file: Path | None = None
    store: str = "sqlite:///var/lib/entragate/grants.db"
    rate: float = 1.0
    verify_interval: float = 300.0
    lease_timeout: float = 10.0
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
class Config(TenantIdentity):
    """The whole configuration; its identity fields (``TenantIdentity``) are the default
    tenant's (docs/design.md#tenants)."""

    timeout: float = 10.0
    acls: dict[str, AclConfig] = field(default_factory=dict)
    agent: AgentConfig = field(default_factory=AgentConfig)
    source: str | None = None
    #: The ``[tenant.NAME]`` tables; the top-level fields above are ``tenant_name``'s.
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    tenant_name: str = DEFAULT_TENANT

    def tenant(self, name: str) -> TenantConfig:
        """One tenant's settings; KeyError naming the configured ones for an unknown name."""
        return tenant_of_config(self, name)

    def tenant_of(self, acl: str) -> TenantConfig:
        """The tenant holding ``acl``'s location."""
        return tenant_of_config(self, self.acls[acl].tenant)

    def tenant_names(self) -> list[str]:
        return [self.tenant_name, *self.tenants]

    def serving_tenants(self) -> list[str]:
        """The tenants with ACLs (each gets its own writer), the default tenant first."""
        return serving_tenants(self)

    def for_tenant(self, name: str) -> Config:
        """The single-tenant configuration of one tenant (its identity, its ACLs)."""
        return tenant_view(self, name)

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

    def lines(self) -> list[str]:
        """One line per problem, each naming the file (the key starts the problem)."""
        where = self.source or "(no file)"
        return [f"entragate: {where}: {p}" for p in self.problems]

    def report(self) -> list[str]:
        """What a command prints: a heading, then :meth:`lines`."""
        count = f"{len(self.problems)} problem" + ("s" if len(self.problems) != 1 else "")
        return [f"entragate: configuration error ({count}):", *self.lines()]


# The known keys of each table come from the one table of keys (config_keys.KEYS).
_SIMPLE_KEYS = table_keys("")
_AGENT_KEYS = table_keys("agent")
_ACL_KEYS = table_keys("acl")


def find_config_file(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if path:
        return Path(path)
    if env.get("ENTRAGATE_CONFIG"):
        return Path(env["ENTRAGATE_CONFIG"])
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return candidate
    return None


def _configured_by_environment(env: Mapping[str, str]) -> bool:
    """A container may configure everything through ``ENTRAGATE_*`` variables and no file."""
    return bool(env.get("ENTRAGATE_TENANT_ID") or env.get("ENTRAGATE_ACLS"))


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Load the file (if any), apply ``ENTRAGATE_*`` overrides and validate.

    ``require_credentials=False`` serves commands that work on the grant store
    alone (``grant`` without a running agent, ``list``) and the doctor, which
    reports missing values as a check instead of refusing to start. It also skips
    the checks of the files on the path to Microsoft (``ca_bundle``,
    ``expected_roots``, ``client_certificate``): those commands do not use them, and
    the doctor diagnoses them in more detail than one line can.
    """
    env = os.environ if env is None else env
    file_path = find_config_file(path, env)
    raw: dict[str, Any] = {}
    problems: list[str] = []
    source = str(file_path) if file_path else None
    if file_path is None and not _configured_by_environment(env):
        looked = ", ".join(str(p) for p in DEFAULT_PATHS)
        raise ConfigError(
            [f"no configuration file: looked for --config, $ENTRAGATE_CONFIG, then {looked}"
             " (or configure by ENTRAGATE_TENANT_ID and the other ENTRAGATE_* variables)"]
        )
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
    tenant_raw: Any = raw.get("tenant")
    known_top = set(_SIMPLE_KEYS) | {"agent", "tenant", "acl"}
    for key in raw:
        if key not in known_top:
            problems.append(f"unknown key {key!r}{did_you_mean(key, '')}")
    for key in agent_raw:
        if key not in _AGENT_KEYS:
            problems.append(f"unknown key agent.{key}{did_you_mean(key, 'agent')}")

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
    read = ValueReader(problems, base)
    as_path, as_str, as_number, as_bool = read.as_path, read.as_str, read.as_number, read.as_bool

    # --- the default tenant: the top-level keys (docs/design.md#tenants)
    acls_of_default = not tenant_raw or any(
        not isinstance(t, dict) or t.get("tenant", DEFAULT_TENANT) == DEFAULT_TENANT for t in acl_raw.values()
    )
    default = parse_tenant(
        DEFAULT_TENANT, top, read, rate=1.0, require_credentials=require_credentials and acls_of_default,
        ca_bundle_origin=ca_bundle_origin,
    )
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
        lease_timeout=as_number(
            "agent.lease_timeout", agent_raw.get("lease_timeout"), AgentConfig.lease_timeout
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
    problems += check_listen(agent.listen)
    if agent.lease_timeout < 3:
        problems.append(
            f"agent.lease_timeout = {agent.lease_timeout:g}: use at least 3 seconds (the lease "
            "heartbeat is renewed about once a second)"
        )
    problems += tls_problems(agent)
    if not agent.store.startswith(("sqlite:", "postgresql://", "postgres://")):
        problems.append(f"agent.store {agent.store!r} must start with sqlite:/// or postgresql://")
    tenants = parse_tenant_tables(
        tenant_raw, read, default=default, rate=agent.rate, require_credentials=require_credentials
    )

    # --- ACLs
    acls: dict[str, AclConfig] = {}
    for name, table in acl_raw.items():
        if not isinstance(table, dict):
            problems.append(f"acl.{name} must be a table")
            continue
        for key in table:
            if key not in _ACL_KEYS:
                problems.append(f"unknown key acl.{name}.{key}{did_you_mean(key, 'acl')}")
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
            revoke_sessions=as_bool(f"acl.{name}.revoke_sessions", table.get("revoke_sessions"), False),
            tenant=as_str(f"acl.{name}.tenant", table.get("tenant")) or DEFAULT_TENANT,
        )
        if acls[name].max_locations > 195:
            problems.append(f"acl.{name}.max_locations exceeds Microsoft's 195 named locations")

    problems += tenant_problems(default, tenants, acls)
    if problems:
        raise ConfigError(problems, source)
    return Config(
        **{f: getattr(default, f) for f in IDENTITY_FIELDS},
        timeout=timeout,
        acls=acls,
        agent=agent,
        source=source,
        tenants=tenants,
    )


def looks_like_secret_id(secret: Secret | None) -> bool:
    """Entra shows a secret's ID (a GUID) beside its Value; people paste the wrong one."""
    return secret is not None and bool(GUID.match(secret.reveal().strip()))
