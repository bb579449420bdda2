"""Who writes to Entra: one agent per tenant holds the writer lease (SPEC 8).

Several agents may share one grant store; all of them serve the API, but only the
holder of the writer lease talks to Graph for the tenant. The others are standbys:
they retry :meth:`WriterLease.try_acquire` about once a second and take over when
the holder goes away.

- :class:`PostgresWriterLease`: a session-level PostgreSQL advisory lock, held on a
  dedicated autocommit connection of its own (never the store's). When the
  holder's process dies its session ends and PostgreSQL releases the lock at once;
  when its host or network dies, the TCP keepalive and user-timeout settings below
  make both ends notice within seconds rather than hours. Session advisory locks
  do not survive a transaction-mode connection pooler (PgBouncer): point
  ``store`` at PostgreSQL itself or at a session-mode pool.
- :class:`LocalWriterLease`: an ``flock`` on a lock file beside a SQLite database,
  so two agents started on one file cannot both write (the second one waits as a
  standby). The kernel drops the lock when the holder's process dies.

:meth:`WriterLease.held` verifies the lease against its source (a round trip to
PostgreSQL), so a writer calls it before each Graph write and stops writing as
soon as it fails. Graph has no ETag/If-Match, so this cannot fence a write that is
already in flight when the lease is lost; the window is one request.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import psycopg

from entragate.grants.postgres import redact

KEY_PREFIX = "entragate-writer:"


def writer_lock_key(tenant_id: str) -> int:
    """The advisory-lock key for ``tenant_id``: the same in every agent and every release.

    The first 8 bytes of sha256("entragate-writer:" + tenant) as a signed bigint.
    Tenant ids are case-insensitive, so they are lowered first. Agents of one tenant
    must name it the same way (all by GUID, or all by the same domain).
    """
    digest = hashlib.sha256(f"{KEY_PREFIX}{tenant_id.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class WriterLease(abc.ABC):
    """The right to write one tenant's named locations."""

    kind: str = "lease"

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; never blocks for long. True when held."""

    @abc.abstractmethod
    def held(self) -> bool:
        """Whether the lease is (still) ours, verified at its source. Never raises."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lease up (idempotent); a standby may take it at once."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the lease is, for ``status`` and logs (no secrets)."""

    def why_not(self) -> str:
        """Why the last :meth:`try_acquire` failed, for the standby's log line."""
        return "another agent holds the writer lease"


class PostgresWriterLease(WriterLease):
    """``pg_try_advisory_lock(key)`` on a dedicated session; the lock lives as long as it."""

    kind = "postgresql-advisory-lock"
    connect_timeout = 5
    # Client side: how long libpq waits for the server to acknowledge data (ms), and
    # keepalives while idle. Server side: the same, so a vanished host's session (and
    # its lock) is dropped within ~15 s instead of the OS default of two hours.
    tcp_user_timeout_ms = 10_000
    keepalives_idle = 5
    keepalives_interval = 2
    keepalives_count = 3

    def __init__(self, url: str, tenant_id: str) -> None:
        self.url = url
        self.tenant_id = tenant_id
        self.key = writer_lock_key(tenant_id)
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._lock = threading.Lock()
        self._why = "another agent holds the writer lease"

    def __repr__(self) -> str:
        return f"PostgresWriterLease({redact(self.url)!r}, key={self.key})"

    @property
    def backend_pid(self) -> int | None:
        """The lease session's server process id (tests, ``pg_stat_activity``)."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return int(conn.info.backend_pid)

    def _connect(self) -> psycopg.Connection[Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": "entragate-writer",
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout_ms,
        }
        if "connect_timeout" not in self.url:
            kwargs["connect_timeout"] = self.connect_timeout
        conn = psycopg.connect(self.url, **kwargs)
        for setting, value in (
            ("tcp_keepalives_idle", self.keepalives_idle),
            ("tcp_keepalives_interval", self.keepalives_interval),
            ("tcp_keepalives_count", self.keepalives_count),
            ("tcp_user_timeout", self.tcp_user_timeout_ms),  # PostgreSQL 12+
            ("idle_session_timeout", 0),  # PostgreSQL 14+: a quiet lease is not idle
            ("statement_timeout", 5000),
        ):
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"SET {setting} = {int(value)}")
        return conn

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._held:
                if self._verify():
                    return True
                self._drop()
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._drop()
                    self._conn = self._connect()
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as exc:
                self._drop()
                self._why = f"cannot reach {redact(self.url)}: {str(exc).strip()}"
                return False
            self._held = bool(row and row[0])
            if not self._held:
                self._why = f"another agent holds advisory lock {self.key} on {redact(self.url)}"
            return self._held

    def _verify(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return False
        try:
            row = conn.execute(
                """SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                     AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s""",
                ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF),
            ).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        with self._lock:
            if not self._held:
                return False
            if self._verify():
                return True
            self._drop()
            self._why = "the writer lease's database session ended"
            return False

    def release(self) -> None:
        with self._lock:
            if self._held and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()  # closing the session releases the lock in any case

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "store": redact(self.url)}

    def why_not(self) -> str:
        return self._why


class LocalWriterLease(WriterLease):
    """An exclusive ``flock`` on a lock file (beside the SQLite database)."""

    kind = "lock-file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._why = "another agent holds the writer lease"

    def __repr__(self) -> str:
        return f"LocalWriterLease({str(self.path)!r})"

    def try_acquire(self) -> bool:
        with self._lock:
            if self._fd is not None:
                return True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                self._why = f"cannot open lock file {self.path}: {exc.strerror or exc}"
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if isinstance(exc, BlockingIOError):
                    who = f" (pid {holder})" if holder else ""
                    self._why = f"another agent{who} holds lock file {self.path} on this store"
                else:
                    self._why = f"cannot lock {self.path}: {exc.strerror or exc}"
                return False
            with contextlib.suppress(OSError):  # for operators: who holds it
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._fd = fd
            return True

    def held(self) -> bool:
        # flock belongs to our open file description: it lasts exactly as long as the fd.
        return self._fd is not None

    def release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}

    def why_not(self) -> str:
        return self._why


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None


def lock_file_for(database: Path) -> Path:
    """``/var/lib/entragate/grants.db`` → ``/var/lib/entragate/grants.db.writer.lock``."""
    return database.with_name(database.name + ".writer.lock")


def lease_for_store(store: Any, store_url: str, tenant_id: str) -> WriterLease:
    """The lease for an open grant store (falls back to its URL for other stores)."""
    from entragate.grants.postgres import PostgresGrantStore
    from entragate.grants.sqlite import SQLiteGrantStore

    if isinstance(store, PostgresGrantStore):
        return PostgresWriterLease(store.url, tenant_id)
    if isinstance(store, SQLiteGrantStore):
        return LocalWriterLease(lock_file_for(store.path))
    return lease_for(store_url, tenant_id)


def lease_for(store_url: str, tenant_id: str) -> WriterLease:
    """The writer lease that fits the grant store named by ``store_url``."""
    url = store_url.strip()
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresWriterLease(url, tenant_id)
    if url.startswith("sqlite:"):
        from entragate.grants.sqlite import path_from_url

        return LocalWriterLease(lock_file_for(path_from_url(url)))
    raise ValueError(f"unsupported grant store URL {store_url!r}: use sqlite:///path or postgresql://…")
