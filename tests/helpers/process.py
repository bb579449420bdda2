"""``entragate run`` as a real process, configured by a file pointing at the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from entragate.emulator import Emulator
from tests.helpers.servers import free_port
from tests.helpers.sync import LOCATION, remote_ranges, wait_for

TOKEN = "crash-test-token-Fh6Tn1Qy8Ub3Re5Wm0Zk"


def write_config(
    emu: Emulator,
    app: Any,
    tmp_path: Path,
    port: int,
    *,
    store: str | None = None,
    token: str = TOKEN,
    rate: float = 1,
    credential: str | None = None,
    agent_lines: str = "",
) -> Path:
    """An agent configuration file pointing at the emulator, for ``entragate run``.

    ``credential``: TOML lines in place of ``client_secret = app.secret``;
    ``agent_lines``: more keys of ``[agent]``. The file is
    the owner's alone (0600), as a file holding secrets must be.
    """
    credential = credential or f'client_secret = "{app.secret}"'
    store = store or f"sqlite:///{tmp_path / 'grants.db'}"
    connect_to = ", ".join(f'"{e}"' for e in emu.connect_to())
    path = tmp_path / "entragate.toml"
    path.write_text(
        f"""
tenant_id = "{app.tenant_id}"
client_id = "{app.client_id}"
{credential}
ca_bundle = "{emu.ca_bundle_path}"
connect_to = [{connect_to}]
timeout = 5

[acl.staff]
location = "{LOCATION}"
create = true

[agent]
listen = "127.0.0.1:{port}"
api_token = "{token}"
store = "{store}"
rate = {rate:g}
{agent_lines}
"""
    )
    path.chmod(0o600)
    return path


def start(config: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``entragate run``; ``env``: variables added to this process's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "entragate", "--config", str(config), "run"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env} if env is not None else None,
    )


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, and SIGKILL when the agent has not exited within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_agent(emu: Emulator, app: Any, tmp_path: Path, *, rate: float = 20) -> Iterator[tuple[str, Path]]:
    """A real ``entragate run`` that answers and has created its location: (url, config)."""
    port = free_port()
    config = write_config(emu, app, tmp_path, port, rate=rate)
    log = tmp_path / "agent.log"
    process = start(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) is not None, 30)
        yield url, config
    finally:
        stop(process)
