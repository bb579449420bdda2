"""Agents on one PostgreSQL store, told apart by the Graph requests they sent
(tests/test_multi_agent.py, tests/test_fencing.py; docs/design.md#lease)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from entragate.agent import Agent
from entragate.emulator import Emulator
from tests.helpers.config import make_config
from tests.helpers.process import healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for

TAKEOVER_TIMEOUT = 30.0  # "within seconds": generous, for a loaded CI machine


def measured(kind: str, since: float) -> None:
    """Print how long a takeover took (``pytest -s`` shows it); never asserted on."""
    print(f"takeover after {kind}: {time.monotonic() - since:.2f}s")  # noqa: T201



class Tagged:
    """An agent whose Graph requests are recorded by ``client-request-id``."""

    def __init__(self, name: str, agent: Agent) -> None:
        self.name = name
        self.agent = agent
        self.sent: set[str] = set()
        inner = agent.graph.session.request

        def request(method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
            crid = (kwargs.get("headers") or {}).get("client-request-id")
            if crid:
                self.sent.add(crid)
            return inner(method, url, *args, **kwargs)

        agent.graph.session.request = request  # type: ignore[method-assign]

    @property
    def writer(self) -> bool:
        return self.agent.engine.is_writer

    def grant(self, ip: str, user: str) -> None:
        self.agent.service.grant("staff", ip, user, ttl=3600, source="test")


def pg_agent(
    emu: Emulator, app: Any, url: str, name: str, *, lease_timeout: float = 10.0, **kwargs: Any
) -> Tagged:
    config = make_config(emu, app, None, agent={"rate": 10.0})
    config = replace(config, agent=replace(config.agent, store=url, lease_timeout=lease_timeout))
    return Tagged(name, Agent(config, parked_retry=0.5, backoff_cap=2.0, **kwargs))


def owners(emu: Emulator, tenant: str, agents: list[Tagged], other: str = "?") -> list[str]:
    """Who sent each write in the emulator's log, in order."""
    result = []
    for write in emu.writes(tenant):
        names = [a.name for a in agents if write.client_request_id in a.sent]
        assert len(names) <= 1
        result.append(names[0] if names else other)
    return result


def terms(sequence: list[str]) -> list[str]:
    """``a a a b b`` → ``a b``: one entry per uninterrupted run of one agent's writes."""
    out: list[str] = []
    for name in sequence:
        if not out or out[-1] != name:
            out.append(name)
    return out


def start_writer_then_standby(emu: Emulator, app: Any, url: str) -> tuple[Tagged, Tagged]:
    a = pg_agent(emu, app, url, "a")
    a.agent.start()
    assert wait_for(lambda: a.writer and a.agent.engine.ready(), TAKEOVER_TIMEOUT)
    b = pg_agent(emu, app, url, "b")
    b.agent.start()
    assert wait_for(lambda: b.agent.engine.status()["role"] == "standby", TAKEOVER_TIMEOUT)
    return a, b


def ready(agent: Agent) -> int:
    response = requests.get(
        f"{agent.api_url}/readyz", headers={"Authorization": f"Bearer {agent.token}"}, timeout=10
    )
    return response.status_code


def start_agent_process(
    emu: Emulator, app: Any, store: str, tmp_path: Path, token: str, log: Path, agent_lines: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """``entragate run`` as a real process; a new port if another process took the first."""
    for _attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = write_config(
            emu, app, tmp_path, port, store=store, token=token, rate=10, agent_lines=agent_lines
        )
        process = start(config, log)
        def up_or_exited(p: subprocess.Popen[bytes] = process, u: str = url) -> bool:
            return healthy(u) or p.poll() is not None

        if wait_for(up_or_exited, TAKEOVER_TIMEOUT) and healthy(url):
            return process, url
        if process.poll() is None:
            process.kill()
        process.wait(30)
    pytest.fail(f"the agent process did not start:\n{log.read_text()[-3000:]}")




def process_status(url: str, token: str) -> dict[str, Any]:
    """``GET /v1/status`` of an agent process; empty while it does not answer."""
    try:
        body = requests.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=2).json()
    except (requests.RequestException, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def grant_through(url: str, token: str, ip: str, user: str) -> requests.Response:
    """``POST /v1/grants`` to an agent process: an hour for ``user`` at ``ip`` in ``staff``."""
    return requests.post(
        f"{url}/v1/grants", headers={"Authorization": f"Bearer {token}"}, timeout=10,
        json={"acl": "staff", "ip": ip, "user": user, "ttl": 3600},
    )
