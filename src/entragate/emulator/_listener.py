"""A listening socket whose accepted connections are each served on a thread of their own.

The emulator's TLS server and the CONNECT proxy both are one. :meth:`close` closes the
listener and shuts down every tracked socket, so blocked handlers return at once and the
port is released.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ThreadedListener:
    def __init__(self, label: str, backlog: int) -> None:
        self._label = label
        self._backlog = backlog
        self._listener_lock = threading.Lock()
        self._tracked: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.host = "127.0.0.1"
        self.port = 0

    def serve_connection(self, sock: socket.socket) -> None:
        """Serve one accepted connection (on its own thread); the subclass's work."""
        raise NotImplementedError

    def listen(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=self._backlog)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self.stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self._label}-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()

    def close(self) -> None:
        self.stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        with self._listener_lock:
            tracked = list(self._tracked)
            threads = list(self._threads)
        for sock in tracked:
            shutdown(sock)
        for t in threads:
            t.join(timeout=5)

    def track(self, sock: socket.socket) -> socket.socket:
        """Have :meth:`close` shut ``sock`` down; returns it."""
        with self._listener_lock:
            self._tracked.add(sock)
        return sock

    def untrack(self, *socks: socket.socket) -> None:
        with self._listener_lock:
            self._tracked.difference_update(socks)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self.stopping.is_set():
            try:
                sock, _addr = listener.accept()
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            t = threading.Thread(target=self._run, args=(sock,), name=f"{self._label}-conn", daemon=True)
            with self._listener_lock:
                self._threads.add(t)
            t.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            self.serve_connection(sock)
        finally:
            with self._listener_lock:
                self._threads.discard(threading.current_thread())


def shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: wake a blocked reader at the OS
    # level without touching the SSL object another thread is using.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
