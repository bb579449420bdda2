"""Tenants in the configuration (docs/design.md#tenants).

The top-level identity keys describe the default tenant (named ``default``), so every
single-tenant file keeps its meaning; each ``[tenant.NAME]`` table describes one more,
and ``[acl.X] tenant = "NAME"`` binds an ACL to it. A :class:`TenantConfig` is one
tenant's identity, credential and path to Microsoft; :func:`tenant_view` turns a
:class:`~entragate.config.Config` into the single-tenant configuration of one tenant
(its identity in the top-level fields, only its ACLs), which is what the Graph
client, the writer and the doctor take.

Network keys (``ca_bundle``, ``expected_roots``, ``proxy``, ``connect_to``) of a
``[tenant.NAME]`` table default to the top-level ones (one host, one path out);
identity keys (``tenant_id``, ``client_id``, the credential, ``cloud`` and hosts) are
never inherited.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entragate.config_check import check_certificate, check_secret_file, check_trust_file
from entragate.config_keys import did_you_mean, table_keys
from entragate.config_values import CLOUDS, ConnectTo, Secret, ValueReader

if TYPE_CHECKING:
    from entragate.config import AclConfig, Config

DEFAULT_TENANT = "default"
#: Tenant names appear in metric labels, log events and ``status --tenant``.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT_KEYS = table_keys("tenant")

@dataclass(frozen=True)
class TenantIdentity:
    """Who the agent is in one tenant, and how it reaches Microsoft: the top-level fields
    of ``Config`` (the default tenant) and each ``[tenant.NAME]`` table, defined once."""

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


#: The fields a TenantConfig shares, by name, with Config's top-level fields.
IDENTITY_FIELDS = tuple(f.name for f in dataclasses.fields(TenantIdentity))


@dataclass(frozen=True)
class TenantConfig(TenantIdentity):
    """One tenant: its name, who the agent is there and how it reaches Microsoft."""

    name: str = DEFAULT_TENANT
    #: Graph requests per second for this tenant (Microsoft's budget is per tenant).
    rate: float = 1.0

    def key(self, name: str) -> str:
        """The dotted key of one of this tenant's settings, as problems name it."""
        return name if self.name == DEFAULT_TENANT else f"tenant.{self.name}.{name}"


def parse_tenant(
    name: str,
    table: Mapping[str, Any],
    read: ValueReader,
    *,
    rate: float,
    require_credentials: bool,
    inherit: TenantConfig | None = None,
    ca_bundle_origin: str | None = None,
) -> TenantConfig:
    """One tenant's keys (the top level for ``default``, else a ``[tenant.NAME]`` table);
    problems go to ``read.problems``. ``inherit``: where unset network keys come from."""
    problems = read.problems
    key = TenantConfig(name=name).key

    # --- cloud and hosts
    cloud = read.as_str(key("cloud"), table.get("cloud")) or "global"
    if cloud not in CLOUDS:
        problems.append(f"{key('cloud')} {cloud!r} is not one of {', '.join(CLOUDS)}")
        cloud = "global"
    login_host = read.as_str(key("login_host"), table.get("login_host")) or CLOUDS[cloud].login_host
    graph_host = read.as_str(key("graph_host"), table.get("graph_host")) or CLOUDS[cloud].graph_host

    # --- credentials
    tenant_id = read.as_str(key("tenant_id"), table.get("tenant_id")).strip()
    client_id = read.as_str(key("client_id"), table.get("client_id")).strip()
    secret_value = table.get("client_secret")
    secret_file = read.as_path(key("client_secret_file"), table.get("client_secret_file"))
    if secret_value is None and secret_file is not None:
        try:
            secret_value = secret_file.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            problems.append(f"{key('client_secret_file')} {secret_file}: {exc.strerror}")
        problems += check_secret_file(key("client_secret_file"), secret_file)
    client_secret = Secret(read.as_str(key("client_secret"), secret_value)) if secret_value else None
    client_certificate = read.as_path(key("client_certificate"), table.get("client_certificate"))
    password_value = table.get("client_certificate_password")
    password = (
        Secret(read.as_str(key("client_certificate_password"), password_value)) if password_value else None
    )
    if require_credentials:
        if not tenant_id:
            problems.append(f"{key('tenant_id')} is missing (the directory (tenant) ID of your Entra tenant)")
        if not client_id:
            problems.append(f"{key('client_id')} is missing (the application (client) ID)")
        if client_secret is None and client_certificate is None:
            where = "" if name == DEFAULT_TENANT else f" in [tenant.{name}]"
            problems.append(f"no credential{where}: set client_secret, client_secret_file or client_certificate")
    if client_secret is not None and client_certificate is not None:
        where = "" if name == DEFAULT_TENANT else f" in [tenant.{name}]"
        problems.append(f"set either client_secret or client_certificate{where}, not both")
    if require_credentials:
        problems += check_certificate(client_certificate, password.reveal() if password else None,
                                      key=key("client_certificate"))
    if tenant_id and not (GUID.match(tenant_id) or "." in tenant_id):
        problems.append(
            f"{key('tenant_id')} {tenant_id!r} is neither a GUID nor a domain such as contoso.onmicrosoft.com"
        )

    # --- trust, proxy, routing (inherited from the top level when unset)
    ca_bundle = read.as_path(key("ca_bundle"), table.get("ca_bundle"))
    if ca_bundle is not None:
        ca_bundle_origin = ca_bundle_origin or key("ca_bundle")
    elif inherit is not None:
        ca_bundle, ca_bundle_origin = inherit.ca_bundle, inherit.ca_bundle_origin
    else:
        ca_bundle_origin = None
    expected_roots = read.as_path(key("expected_roots"), table.get("expected_roots"))
    if require_credentials:
        problems += check_trust_file(key("ca_bundle"), ca_bundle if "ca_bundle" in table else None)
        problems += check_trust_file(key("expected_roots"), expected_roots)
    if expected_roots is None and inherit is not None:
        expected_roots = inherit.expected_roots
    proxy = read.as_str(key("proxy"), table.get("proxy")) or None
    if proxy is None and inherit is not None:
        proxy = inherit.proxy
    connect_to = _connect_to(key("connect_to"), table.get("connect_to"), problems)
    if "connect_to" not in table and inherit is not None:
        connect_to = inherit.connect_to
    return TenantConfig(
        name=name, tenant_id=tenant_id, client_id=client_id, client_secret=client_secret,
        client_certificate=client_certificate, client_certificate_password=password, cloud=cloud,
        login_host=login_host.lower(), graph_host=graph_host.lower(), ca_bundle=ca_bundle,
        ca_bundle_origin=ca_bundle_origin, expected_roots=expected_roots, proxy=proxy,
        connect_to=connect_to, rate=read.as_number(key("rate"), table.get("rate"), rate),
    )


def _connect_to(key: str, raw: Any, problems: list[str]) -> tuple[ConnectTo, ...]:
    raw = raw or []
    if isinstance(raw, str):
        raw = [e for e in re.split(r"[,\s]+", raw) if e]
    if not isinstance(raw, list):
        problems.append(f"{key} must be a list of HOST1:PORT1:HOST2:PORT2 strings")
        return ()
    entries: list[ConnectTo] = []
    for entry in raw:
        try:
            entries.append(ConnectTo.parse(str(entry)))
        except ValueError as exc:
            problems.append(str(exc))
    return tuple(entries)


def parse_tenant_tables(
    raw: Any, read: ValueReader, *, default: TenantConfig, rate: float, require_credentials: bool
) -> dict[str, TenantConfig]:
    """The ``[tenant.NAME]`` tables (problems to ``read.problems``)."""
    tenants: dict[str, TenantConfig] = {}
    if raw is None:
        return tenants
    if not isinstance(raw, dict):
        read.problems.append("tenant must be a table of [tenant.NAME] tables")
        return tenants
    for name, table in raw.items():
        if not isinstance(table, dict):
            read.problems.append(f"tenant.{name} must be a table")
            continue
        if name == DEFAULT_TENANT:
            read.problems.append(
                "tenant.default: 'default' is the tenant of the top-level keys; give this table another name"
            )
            continue
        if not _NAME.match(name):
            read.problems.append(
                f"tenant.{name}: a tenant name is letters, digits, '.', '_' and '-' (at most 64)"
            )
            continue
        for k in table:
            if k not in _TENANT_KEYS:
                read.problems.append(f"unknown key tenant.{name}.{k}{did_you_mean(k, 'tenant')}")
        tenants[name] = parse_tenant(
            name, table, read, rate=rate, require_credentials=require_credentials, inherit=default
        )
    return tenants


def tenant_problems(default: TenantConfig, tenants: Mapping[str, TenantConfig],
                    acls: Mapping[str, AclConfig]) -> list[str]:
    """What no single table shows: unknown tenant names in ACLs, one tenant configured
    twice, one location claimed by two ACLs of one tenant."""
    problems: list[str] = []
    every = {default.name: default, **tenants}
    for acl in acls.values():
        if acl.tenant not in every:
            known = ", ".join(every)
            problems.append(
                f"acl.{acl.name}.tenant {acl.tenant!r} is not a tenant (add a [tenant.{acl.tenant}] "
                f"table; configured: {known})"
            )
    seen: dict[tuple[str, str], str] = {}
    for tenant in every.values():
        if not tenant.tenant_id:
            continue
        ident = (tenant.tenant_id.lower(), tenant.cloud)
        if ident in seen:
            problems.append(
                f"{tenant.key('tenant_id')} {tenant.tenant_id!r} ({tenant.cloud}) is the same tenant as "
                f"{seen[ident]}: one tenant has one writer, so configure it once"
            )
        else:
            seen[ident] = tenant.key("tenant_id")
    claimed: dict[tuple[str, str], str] = {}
    for acl in acls.values():
        where = (acl.tenant, acl.location.casefold())
        if where in claimed:
            problems.append(
                f"acl.{acl.name}.location {acl.location!r} is already acl.{claimed[where]}'s location "
                f"in tenant {acl.tenant!r}: two ACLs would overwrite each other's ranges"
            )
        else:
            claimed[where] = acl.name
    return problems


def tenant_of_config(config: Config, name: str) -> TenantConfig:
    """The TenantConfig named ``name`` (the top-level fields are ``config.tenant_name``'s)."""
    if name == config.tenant_name:
        values = {f: getattr(config, f) for f in IDENTITY_FIELDS}
        return TenantConfig(name=name, rate=config.agent.rate, **values)
    try:
        return config.tenants[name]
    except KeyError:
        known = ", ".join([config.tenant_name, *config.tenants])
        raise KeyError(f"no tenant {name!r} (configured: {known})") from None


def tenant_view(config: Config, name: str) -> Config:
    """The single-tenant configuration of tenant ``name``: its identity in the top-level
    fields, its ACLs only, its rate as ``agent.rate``."""
    tenant = tenant_of_config(config, name)
    if name == config.tenant_name and not config.tenants:
        return config
    return dataclasses.replace(
        config,
        **{f: getattr(tenant, f) for f in IDENTITY_FIELDS},
        acls={n: acl for n, acl in config.acls.items() if acl.tenant == name},
        agent=dataclasses.replace(config.agent, rate=tenant.rate),
        tenants={},
        tenant_name=name,
    )


def serving_tenants(config: Config) -> list[str]:
    """The tenants an agent runs a writer for: those with ACLs (the default one first);
    the default tenant alone when no ACL is configured."""
    names = [config.tenant_name, *config.tenants]
    used = [n for n in names if any(acl.tenant == n for acl in config.acls.values())]
    return used or [config.tenant_name]
