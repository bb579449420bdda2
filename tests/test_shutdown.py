"""SIGTERM in the middle of a grant burst (docs/design.md#shutdown): no answer is a 5xx
other than 503 ``shutting_down``, the agent exits 0, and every grant answered 201 is
still there after a restart on the same store."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from entragate.emulator import Emulator
from tests.helpers.postgres import PgServer
from tests.helpers.process import TOKEN, healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import public_addresses, wait_for

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
BURST = 400
CLIENTS = 8
EXIT_LIMIT = 10.0  # the agent's own promise; the test's safety limit is wider


class Burst:
    """Grants from several threads, each over one keep-alive connection; outcomes counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.addresses = public_addresses(BURST, second=7)
        self.lock = threading.Lock()
        self.acknowledged: set[str] = set()
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()  # error codes of the non-2xx answers
        self.resets = 0  # an open connection dropped without an answer
        self.refused = 0  # a new connection refused: the listener is closed
        self.local = threading.local()

    def grant(self, i: int) -> None:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        try:
            response = session.post(
                f"{self.url}/v1/grants",
                json={"acl": "staff", "ip": self.addresses[i], "user": f"user{i}", "ttl": 3600},
                headers=HEADERS,
                timeout=20,
            )
        except requests.ConnectionError as exc:
            refused = "NewConnectionError" in repr(exc) or "Connection refused" in str(exc)
            with self.lock:
                self.refused += refused
                self.resets += not refused
            return
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 201:
                self.acknowledged.add(response.json()["cidr"])
            elif response.headers.get("content-type", "").startswith("application/json"):
                self.codes[response.json()["error"]["code"]] += 1


def sigterm_mid_burst(emu: Emulator, app: Any, tmp_path: Path, store: str | None) -> None:
    emu.rate_limit = 1.0  # the writer is busy with Graph while the burst goes on
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(emu, app, tmp_path, port, store=store)
    log = tmp_path / "agent.log"
    agent = start(config, log)
    try:
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        burst = Burst(url)
        signalled: list[float] = []

        def terminate() -> None:
            # a quarter into the burst: surely before its end, however fast this machine is
            wait_for(lambda: len(burst.acknowledged) >= BURST // 4, 60)
            signalled.append(time.monotonic())
            agent.send_signal(signal.SIGTERM)

        terminator = threading.Thread(target=terminate)
        terminator.start()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(burst.grant, range(BURST)))
        terminator.join()
        code = agent.wait(30)
        exited_after = time.monotonic() - signalled[0]
        text = log.read_text()
        print(f"sigterm mid-burst: statuses={dict(burst.statuses)} codes={dict(burst.codes)} "
              f"refused={burst.refused} resets={burst.resets} exit={code} after {exited_after:.2f} s")
        assert code == 0, text[-3000:]
        assert exited_after < EXIT_LIMIT, text[-3000:]
        assert not [s for s in burst.statuses if s >= 500 and s != 503], burst.statuses
        assert set(burst.codes) <= {"shutting_down"}, burst.codes
        assert burst.resets == 0, "a request on an open connection was dropped unanswered"
        assert BURST // 4 <= len(burst.acknowledged) < BURST
        assert "api.internal_error" not in text
        assert "agent.stopped" in text

        agent = start(config, log)
        assert wait_for(lambda: healthy(url), 30), log.read_text()
        response = requests.get(f"{url}/v1/grants", params={"acl": "staff"}, headers=HEADERS, timeout=10)
        stored = {g["cidr"] for g in response.json()["grants"]}
        assert burst.acknowledged <= stored, sorted(burst.acknowledged - stored)[:10]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)


def test_sigterm_mid_burst_on_sqlite(emu: Emulator, app: Any, tmp_path: Path) -> None:
    sigterm_mid_burst(emu, app, tmp_path, None)


def test_sigterm_mid_burst_on_postgresql(emu: Emulator, app: Any, tmp_path: Path, pg_url: str) -> None:
    sigterm_mid_burst(emu, app, tmp_path, pg_url)


def _server_processes(server: PgServer) -> list[int]:
    """The postmaster and its children (the backends of the agent's sessions among them)."""
    main = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [main]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == main:
                    pids.append(int(entry.name))
    return pids


def test_sigterm_with_postgresql_frozen_answers_503_and_exits(
    emu: Emulator, app: Any, tmp_path: Path, own_pg_server: PgServer
) -> None:
    """A store that hangs (PostgreSQL stopped with SIGSTOP, its sessions open): the grants
    waiting on it are answered 503 ``shutting_down``, and the agent still exits 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(emu, app, tmp_path, port, store=own_pg_server.create_database())
    log = tmp_path / "agent.log"
    agent = start(config, log)
    frozen: list[int] = []
    try:
        # started, not only listening: the lease and the writer have their sessions
        assert wait_for(lambda: healthy(url) and "agent.started" in log.read_text(), 30), log.read_text()
        burst = Burst(url)
        burst.grant(0)
        assert burst.statuses == {201: 1}, burst.statuses
        frozen += _server_processes(own_pg_server)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        waiting = [threading.Thread(target=burst.grant, args=(i,)) for i in range(1, 4)]
        for thread in waiting:
            thread.start()
        time.sleep(1)  # the three are waiting on the store
        assert burst.statuses == {201: 1}, burst.statuses
        signalled = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(30)
        exited_after = time.monotonic() - signalled
        for thread in waiting:
            thread.join(30)
        text = log.read_text()
        print(f"sigterm with the store frozen: statuses={dict(burst.statuses)} codes={dict(burst.codes)} "
              f"resets={burst.resets} exit={code} after {exited_after:.2f} s")
        assert code == 0, text[-3000:]
        assert exited_after < 15, text[-3000:]
        assert burst.statuses == {201: 1, 503: 3}, burst.statuses
        assert burst.codes == {"shutting_down": 3}, burst.codes
        assert burst.resets == 0
        assert "api.internal_error" not in text
    finally:
        for pid in frozen:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
