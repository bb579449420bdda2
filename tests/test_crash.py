"""kill -9 of the agent in the middle of a burst loses no acknowledged grant."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from entragate.emulator import Emulator
from tests.helpers.process import TOKEN, healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import public_addresses, remote_ranges, wait_for


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
