"""systemd's notify protocol (``sd_notify``) with the standard library only (docs/design.md#shutdown).

When systemd starts the agent with ``Type=notify`` it sets ``NOTIFY_SOCKET``: an
AF_UNIX datagram socket, a path or (starting with ``@``) a name in the abstract
namespace. Each message is newline-separated ``KEY=value`` lines: ``READY=1`` once the
API listens and the sync loop runs, ``RELOADING=1`` … ``READY=1`` around a SIGHUP
reload, ``STOPPING=1`` when shutdown begins, and with ``WatchdogSec=`` (systemd sets
``WATCHDOG_USEC``) ``WATCHDOG=1`` every half of that interval for as long as the sync
loop is alive, so that a dead loop gets the agent restarted. Without ``NOTIFY_SOCKET``
every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from entragate.logs import get_logger


def socket_address(env: Mapping[str, str]) -> str | None:
    """``NOTIFY_SOCKET`` as an address for ``sendto``; None when unset or not AF_UNIX."""
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # unset, or a kind of socket (vsock) this module does not speak


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, when meant for us."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class Notifier:
    """Messages to systemd, and the watchdog's pings on a thread of their own."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env)
        self.interval = watchdog_interval(env) if self.address is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def send(self, *lines: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a missing socket stays missing
                self._failed = True
                get_logger(component="agent").warning("systemd.notify_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def ready(self) -> None:
        self.send("READY=1", "STATUS=serving")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=shutting down")

    def start_watchdog(self, alive: Callable[[], bool]) -> None:
        """Ping every :attr:`interval` while ``alive()``; silence once it is False."""
        interval = self.interval
        if interval is None or self._thread is not None:
            return

        def ping() -> None:
            while True:
                if alive():
                    self.send("WATCHDOG=1")
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=ping, name="entragate-watchdog", daemon=True)
        self._thread.start()

    def stop_watchdog(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
