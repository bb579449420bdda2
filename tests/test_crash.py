"""kill -9 of the agent in the middle of a burst loses no acknowledged grant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from entragate.emulator import Emulator
from tests.test_sync import LOCATION, public_addresses, remote_ranges, wait_for
from tests.tls_servers import free_port

TOKEN = "crash-test-token-0123456789abcdef"


def write_config(
    emu: Emulator,
    app: Any,
    tmp_path: Path,
    port: int,
    *,
    store: str | None = None,
    token: str = TOKEN,
    rate: float = 1,
) -> Path:
    """An agent configuration file pointing at the emulator, for ``entragate run``."""
    store = store or f"sqlite:///{tmp_path / 'grants.db'}"
    connect_to = ", ".join(f'"{e}"' for e in emu.connect_to())
    path = tmp_path / "entragate.toml"
    path.write_text(
        f"""
tenant_id = "{app.tenant_id}"
client_id = "{app.client_id}"
client_secret = "{app.secret}"
ca_bundle = "{emu.ca_bundle_path}"
connect_to = [{connect_to}]
timeout = 5

[acl.staff]
location = "{LOCATION}"

[agent]
listen = "127.0.0.1:{port}"
api_token = "{token}"
store = "{store}"
rate = {rate:g}
"""
    )
    return path


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "entragate", "--config", str(config), "run"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def test_kill_9_mid_burst_keeps_every_acknowledged_grant(emu: Emulator, app: Any, tmp_path: Path) -> None:
    emu.rate_limit = 1.0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(emu, app, tmp_path, port)
    log = tmp_path / "agent.log"
    agent = start(config, log)
    try:
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        addresses = public_addresses(400, second=5)
        acknowledged: set[str] = set()
        lock = threading.Lock()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def grant(i: int) -> None:
            try:
                response = requests.post(
                    f"{url}/v1/grants",
                    json={"acl": "staff", "ip": addresses[i], "user": f"user{i}", "ttl": 3600},
                    headers=headers,
                    timeout=10,
                )
            except requests.RequestException:
                return
            if response.status_code == 201:
                with lock:
                    acknowledged.add(response.json()["cidr"])

        def killer() -> None:
            wait_for(lambda: len(acknowledged) >= 120, 60)
            os.kill(agent.pid, signal.SIGKILL)

        assassin = threading.Thread(target=killer)
        assassin.start()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(grant, range(400)))
        assassin.join()
        agent.wait(10)
        assert agent.returncode == -signal.SIGKILL
        assert 120 <= len(acknowledged) < 400

        agent = start(config, log)
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        response = requests.get(f"{url}/v1/grants", params={"acl": "staff"}, headers=headers, timeout=10)
        stored = {g["cidr"] for g in response.json()["grants"]}
        assert acknowledged <= stored
        assert wait_for(lambda: acknowledged <= (remote_ranges(emu, app.tenant_id) or set()), 90)
        assert (remote_ranges(emu, app.tenant_id) or set()) <= stored
    finally:
        agent.kill()
        agent.wait(10)
