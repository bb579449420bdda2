"""SIGHUP (``systemctl reload``) reloads the configuration of a running agent process:
an invalid file is logged and the old configuration kept; a valid one takes over."""

from __future__ import annotations

import signal
from pathlib import Path

import requests

from entragate.emulator import AppRegistration, Emulator
from tests.helpers.process import TOKEN, healthy, start, stop, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for


def acls(url: str) -> list[str]:
    try:
        answer = requests.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)
    except requests.RequestException:
        return []
    return sorted(answer.json().get("acls", {})) if answer.status_code == 200 else []


def test_sighup_keeps_the_old_configuration_when_the_new_is_invalid_and_takes_a_valid_one(
    emu: Emulator, app: AppRegistration, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(emu, app, tmp_path, port, rate=20)
    good = config.read_text()
    log = tmp_path / "agent.log"
    agent = start(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        assert acls(url) == ["staff"]

        config.write_text(good + '\nbogus_key = 1\n[acl.vpn]\nlocaton = "VPN users"\n')
        agent.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "config.reload_failed" in log.read_text(), 30), log.read_text()
        assert agent.poll() is None, "SIGHUP must not stop the agent"
        assert healthy(url) and acls(url) == ["staff"]
        assert "did you mean 'location'" in log.read_text()

        config.write_text(good + '\n[acl.vpn]\nlocation = "VPN users"\n')
        agent.send_signal(signal.SIGHUP)
        assert wait_for(lambda: acls(url) == ["staff", "vpn"], 30), log.read_text()
        assert "config.reloaded" in log.read_text()
    finally:
        stop(agent)
