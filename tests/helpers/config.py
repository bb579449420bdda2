"""Configurations pointing at the emulated tenant, built in code (no file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from entragate.config import AclConfig, AgentConfig, Config, ConnectTo, Secret

if TYPE_CHECKING:
    from entragate.emulator import AppRegistration, Emulator

SECRET = "Qx8~emulated.Secret-Value_0123456789abcdEF"


def make_config(emu: Emulator, app: AppRegistration, tmp_path: Path | None = None, **overrides: Any) -> Config:
    acls = overrides.pop("acls", {"staff": AclConfig(name="staff", location="Entragate staff", create=True)})
    agent_overrides = overrides.pop("agent", {})
    store = f"sqlite:///{tmp_path / 'grants.db'}" if tmp_path else "sqlite:///:memory:"
    agent = AgentConfig(
        listen="127.0.0.1:0",
        api_token=Secret("test-api-token-Jd7Rq2Wx9Lc4Ns6Hb1Vz8Pk3"),
        store=store,
        rate=agent_overrides.pop("rate", 50.0),
        verify_interval=agent_overrides.pop("verify_interval", 300.0),
        **agent_overrides,
    )
    values: dict[str, Any] = {
        "tenant_id": app.tenant_id,
        "client_id": app.client_id,
        "client_secret": Secret(app.secret) if app.secret else None,
        "ca_bundle": Path(emu.ca_bundle_path),
        "ca_bundle_origin": "ca_bundle",
        "expected_roots": Path(emu.ca_bundle_path),
        "connect_to": tuple(ConnectTo.parse(e) for e in emu.connect_to()),
        "timeout": 5.0,
        "acls": acls,
        "agent": agent,
    }
    values.update(overrides)
    return Config(**values)
