"""The soak's moving parts: the agent as a process it can ``kill -9``, and the faults.

Each fault is switched on, held for a while, and switched off; the schedule records
when (a :class:`Phase`), so the checks can say which fault an error or a write fell in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from common import LOCATION, TOKEN, free_port
from entragate.emulator import Emulator, EmulatorFault


class AgentRunner:
    """``entragate run`` on a PostgreSQL store against the emulator, restartable."""

    def __init__(self, emu: Emulator, app: Any, workdir: Path, store: str, *, timeout: float = 3.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "agent.log"
        self.config = workdir / "entragate.toml"
        connect_to = ", ".join(f'"{e}"' for e in emu.connect_to())
        self.config.write_text(f"""
tenant_id = "{app.tenant_id}"
client_id = "{app.client_id}"
client_secret = "{app.secret}"
ca_bundle = "{emu.ca_bundle_path}"
connect_to = [{connect_to}]
timeout = {timeout:g}

[acl.staff]
location = "{LOCATION}"
create = true
max_ranges = 100
max_locations = 4

[agent]
listen = "127.0.0.1:{self.port}"
api_token = "{TOKEN}"
store = "{store}"
rate = 1
verify_interval = 15
""")
        self.config.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "entragate", "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            if self.ready():
                return True
            time.sleep(0.1)
        return False

    def kill9(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 15 s); the exit status."""
        if self.process is None:
            return None
        self.process.terminate()
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass
class Fault:
    name: str
    on: Callable[[], None]
    off: Callable[[], None]
    hold: float = 6.0  # seconds between on and off


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    notes: list[str] = field(default_factory=list)


def graph_fault(emu: Emulator, name: str, fault: EmulatorFault, hold: float = 6.0) -> Fault:
    return Fault(name, lambda: emu.set_fault(fault), emu.clear_faults, hold)


def make_faults(emu: Emulator, agent: AgentRunner,
                postgres: tuple[Callable[[], None], Callable[[], None]] | None,
                base: Callable[[], None]) -> dict[str, Fault]:
    """Every fault by name; ``base`` puts back what is always in force (Graph's latency)."""

    def cleared() -> None:
        emu.clear_faults()
        base()

    def lag(seconds: float) -> Callable[[], None]:
        def switch() -> None:
            emu.read_lag_seconds = seconds
        return switch

    def tls(scenario: str | None) -> Callable[[], None]:
        return lambda: emu.set_tls_scenario(scenario)

    faults = [
        Fault("graph_5xx", lambda: emu.set_fault(EmulatorFault("status", host="graph", status=503)), cleared),
        Fault("graph_500_writes", lambda: emu.set_fault(EmulatorFault("status", host="graph", method="PATCH", status=500)), cleared),
        Fault("reset", lambda: emu.set_fault(EmulatorFault("reset", host="graph")), cleared),
        Fault("hang", lambda: emu.set_fault(EmulatorFault("hang", host="graph")), cleared, 8.0),
        Fault("throttle_storm", lambda: emu.set_fault(EmulatorFault("throttle", host="graph")), cleared, 8.0),
        Fault("token_503", lambda: emu.set_fault(EmulatorFault("status", host="login", status=503)), cleared, 8.0),
        Fault("read_lag", lag(4.0), lag(0.0), 10.0),
        Fault("tls_intercepted", tls("intercepted"), tls(None)),
        Fault("kill9", agent.kill9, agent.start, 2.0),
    ]
    if postgres is not None:  # stopped (immediate: sessions cut), then started again
        faults.append(Fault("pg_restart", *postgres, 6.0))
    return {f.name: f for f in faults}


#: The order of one cycle (each fault, then a calm as long as it, then the next).
CYCLE = ("graph_5xx", "reset", "hang", "kill9", "throttle_storm", "token_503", "read_lag",
         "tls_intercepted", "pg_restart", "graph_500_writes")
