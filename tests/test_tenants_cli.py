"""``entragate status --tenant`` and ``entragate doctor`` of a two-tenant agent (global and
usgov in one emulator), through a real ``entragate run`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from entragate.emulator import AppRegistration, Emulator
from entragate.errors import Code
from tests.helpers.process import healthy, start, stop, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import remote_ranges, wait_for
from tests.helpers.tenants import new_app


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTRAGATE_")}
    return subprocess.run([sys.executable, "-m", "entragate", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def two_tenants(emu: Emulator, app: AppRegistration, tmp_path: Path) -> Iterator[tuple[Path, AppRegistration]]:
    gov = new_app(emu, "usgov")
    port = free_port()
    config = write_config(emu, app, tmp_path, port, rate=20)
    text = config.read_text().replace(f'ca_bundle = "{emu.ca_bundle_path}"',
                                      f'ca_bundle = "{emu.ca_bundle_path}"\nexpected_roots = "{emu.ca_bundle_path}"')
    config.write_text(text + f"""
[tenant.gov]
tenant_id = "{gov.tenant_id}"
client_id = "{gov.client_id}"
client_secret = "{gov.secret}"
cloud = "usgov"

[acl.gov]
location = "Entragate gov"
create = true
tenant = "gov"
""")
    process = start(config, tmp_path / "agent.log")
    try:
        assert wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), 30), (tmp_path / "agent.log").read_text()
        assert wait_for(lambda: remote_ranges(emu, gov.tenant_id, "Entragate gov") is not None, 30)
        yield config, gov
    finally:
        stop(process)


def test_status_of_one_tenant(two_tenants: tuple[Path, AppRegistration], app: AppRegistration) -> None:
    config, gov = two_tenants
    assert wait_for(lambda: cli(config, "status", "--json").returncode == 0, 30)
    everything = json.loads(cli(config, "status", "--json").stdout)
    assert set(everything["acls"]) == {"staff", "gov"} and set(everything["tenants"]) == {"default", "gov"}
    assert everything["tenants"]["gov"]["tenant_id"] == gov.tenant_id
    assert everything["tenants"]["default"]["tenant_id"] == app.tenant_id

    one = cli(config, "status", "--tenant", "gov", "--json")
    assert one.returncode == 0, one.stderr
    data = json.loads(one.stdout)
    assert data["tenant"] == "gov" and data["cloud"] == "usgov" and data["writer"] is True
    assert list(data["acls"]) == ["gov"]

    unknown = cli(config, "status", "--tenant", "nope")
    assert unknown.returncode == 2 and "no tenant 'nope'" in unknown.stderr and "default, gov" in unknown.stderr


def test_doctor_checks_every_tenant_and_one_on_request(
    two_tenants: tuple[Path, AppRegistration], emu: Emulator
) -> None:
    config, gov = two_tenants
    both = cli(config, "doctor", "--json")
    data = json.loads(both.stdout)
    assert set(data["tenants"]) == {"default", "gov"}, both.stdout[-2000:]
    assert data["ok"] and both.returncode == 0, both.stdout[-3000:]
    text = cli(config, "doctor")
    assert f"tenant gov ({gov.tenant_id}, usgov)" in text.stdout and "tenant default (" in text.stdout

    emu.set_secret_expired(gov.tenant_id, gov.client_id)
    broken = cli(config, "doctor", "--json")
    data = json.loads(broken.stdout)
    assert broken.returncode == 1 and data["tenants"]["default"]["ok"] and not data["tenants"]["gov"]["ok"]
    assert data["tenants"]["gov"]["code"] == Code.ENTRA001
    only = cli(config, "doctor", "--tenant", "default", "--json")
    assert only.returncode == 0 and json.loads(only.stdout)["ok"]
