"""systemd's notify protocol (docs/design.md#shutdown): a real AF_UNIX datagram socket as
``NOTIFY_SOCKET``, the agent as a real process: READY=1 once it answers, WATCHDOG=1
pings while the sync loop lives, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from entragate.emulator import Emulator
from entragate.systemd import Notifier
from tests.helpers.process import healthy, start, write_config
from tests.helpers.servers import free_port

WATCHDOG_USEC = 200_000  # a ping every 0.1 s


class Listener:
    """What systemd would read from its notify socket."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # the NOTIFY_SOCKET value
        self.messages: list[str] = []

    def next(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        self.messages.append(data.decode())
        return self.messages[-1]

    def until(self, line: str, timeout: float) -> list[str]:
        """Messages received until one holds ``line`` (that one included)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            message = self.next(max(deadline - time.monotonic(), 0.01))
            if message is None:
                break
            seen.append(message)
            if line in message.splitlines():
                return seen
        raise AssertionError(f"no {line!r} within {timeout} s; received {seen}")


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        name = str(path)
    else:
        abstract = f"entragate-test-{uuid.uuid4().hex}"
        sock.bind("\0" + abstract)
        name = "@" + abstract
    try:
        yield Listener(sock, name)
    finally:
        sock.close()


def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    emu: Emulator, app: Any, tmp_path: Path, listener: Listener
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(emu, app, tmp_path, port)
    log = tmp_path / "agent.log"
    agent = start(config, log, env={"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    try:
        before = listener.until("READY=1", 60)
        assert not [m for m in before if "WATCHDOG=1" in m], before  # pings follow readiness
        assert healthy(url), log.read_text()  # ready means the API listens
        pings = listener.until("WATCHDOG=1", 5)
        for _ in range(3):
            pings += listener.until("WATCHDOG=1", 5)
        assert len([m for m in pings if m == "WATCHDOG=1"]) >= 4, pings
        agent.send_signal(signal.SIGTERM)
        listener.until("STOPPING=1", 10)
        assert agent.wait(20) == 0, log.read_text()[-3000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)


def test_the_watchdog_falls_silent_when_the_loop_dies(listener: Listener) -> None:
    alive = [True]
    notifier = Notifier({"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    assert notifier.interval == pytest.approx(0.1)
    notifier.start_watchdog(lambda: alive[0])
    try:
        listener.until("WATCHDOG=1", 5)
        listener.until("WATCHDOG=1", 5)
        alive[0] = False
        listener.next(0.5)  # a ping perhaps already on its way
        assert listener.next(1.0) is None  # ten intervals without a ping
    finally:
        notifier.stop_watchdog()


def test_a_watchdog_meant_for_another_process_and_no_socket_send_nothing(listener: Listener) -> None:
    other = Notifier({"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.interval is None
    other.start_watchdog(lambda: True)
    assert listener.next(0.5) is None
    assert Notifier({}).send("READY=1") is False
    assert Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).send("READY=1") is False
