"""``entragate status`` as a monitor: exit 1 while a location is failing or not in sync,
0 otherwise, in text and in JSON; against a real agent process and the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from entragate.emulator import AppRegistration, Emulator, EmulatorFault
from tests.helpers.process import TOKEN, running_agent
from tests.helpers.sync import wait_for


@pytest.fixture
def agent(emu: Emulator, app: AppRegistration, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with running_agent(emu, app, tmp_path) as running:
        yield running


def status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTRAGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "entragate", "--config", str(config), *args, "status"],
        capture_output=True, text=True, timeout=60, env=env,
    )


def test_status_exits_1_while_a_location_fails_and_0_when_in_sync(
    agent: tuple[str, Path], emu: Emulator, app: AppRegistration
) -> None:
    url, config = agent
    assert wait_for(lambda: status(config).returncode == 0, 30)
    in_sync = status(config, "--json")
    assert in_sync.returncode == 0, in_sync.stdout + in_sync.stderr
    assert json.loads(in_sync.stdout)["mode"] == "agent"

    emu.set_fault(EmulatorFault("status", host="graph", method="PATCH", status=403))
    granted = requests.post(f"{url}/v1/grants", json={"acl": "staff", "ip": "81.2.69.142", "user": "alice",
                                                      "ttl": 3600},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert granted.status_code == 201
    assert wait_for(lambda: "ENTRA002" in status(config).stderr, 30)
    failing = status(config)
    assert failing.returncode == 1
    assert "failing or not in sync" in failing.stderr and "ENTRA002" in failing.stderr
    as_json = status(config, "--json")
    assert as_json.returncode == 1
    location = json.loads(as_json.stdout)["acls"]["staff"]["locations"][0]
    assert location["last_error"]["code"] == "ENTRA002"
