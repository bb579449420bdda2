"""Agents serving several tenants of one emulator (docs/design.md#tenants)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from entragate.config import CLOUDS, AclConfig, Config, ConnectTo, Secret, TenantConfig
from entragate.emulator import AppRegistration, Emulator
from tests.helpers.config import SECRET, make_config


def tenant_config(emu: Emulator, name: str, app: AppRegistration, **overrides: Any) -> TenantConfig:
    """A [tenant.NAME] pointing at ``app``'s tenant of the emulator (its cloud's hosts)."""
    cloud = emu.tenant_cloud(app.tenant_id)
    values: dict[str, Any] = {
        "name": name,
        "tenant_id": app.tenant_id,
        "client_id": app.client_id,
        "client_secret": Secret(app.secret) if app.secret else None,
        "cloud": cloud,
        "login_host": CLOUDS[cloud].login_host,
        "graph_host": CLOUDS[cloud].graph_host,
        "ca_bundle": Path(emu.ca_bundle_path),
        "ca_bundle_origin": f"tenant.{name}.ca_bundle",
        "expected_roots": Path(emu.ca_bundle_path),
        "connect_to": tuple(ConnectTo.parse(e) for e in emu.connect_to()),
        "rate": 50.0,
    }
    values.update(overrides)
    return TenantConfig(**values)


def new_app(emu: Emulator, cloud: str = "global") -> AppRegistration:
    return emu.add_app(emu.add_tenant(cloud=cloud), secret=SECRET)


def multi_config(
    emu: Emulator, default: AppRegistration, tmp_path: Path, tenants: dict[str, TenantConfig], **overrides: Any
) -> Config:
    """The default tenant's ACL ``staff`` and, per further tenant NAME, an ACL ``NAME``
    (location "Entragate NAME", created when missing)."""
    base = make_config(emu, default, tmp_path, **overrides)
    acls = dict(base.acls)
    for name in tenants:
        acls[name] = AclConfig(name=name, location=f"Entragate {name}", create=True, tenant=name)
    return dataclasses.replace(base, acls=acls, tenants=tenants)
