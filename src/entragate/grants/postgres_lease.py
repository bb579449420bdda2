"""The PostgreSQL writer lease: an advisory lock, a heartbeat and a term (docs/design.md#lease).

The lock alone ends with the holder's session, which covers a writer that dies. A
writer that *hangs* (SIGSTOP, a paused VM, a stuck process) keeps its session and
with it the lock, so the lease also carries a heartbeat in ``entragate_writer``:

- the holder claims a new ``term`` when it takes the lock and renews ``heartbeat``
  (the database's own ``now()``, so agents' clocks do not matter) about once a
  second from a thread of its own, and once more before every Graph write;
- a standby that finds the lock taken and the heartbeat older than ``timeout`` ends
  the holder's session (``pg_terminate_backend``) and takes the lock;
- a renewal only succeeds for the current term, on the session that holds the lock,
  so a writer that resumes after the takeover fails its next check and steps down
  before it writes (Patroni's rule: a leader that cannot renew demotes itself).

Ending another agent's session needs the same database role or ``pg_signal_backend``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from typing import Any

import psycopg

from .lease import WriterLease
from .postgres import MIGRATION_LOCK, open_connection, redact

KEY_PREFIX = "entragate-writer:"

LEASE_TABLE = """CREATE TABLE IF NOT EXISTS entragate_writer (
    lock_key    BIGINT      PRIMARY KEY,
    term        BIGINT      NOT NULL,
    holder      TEXT        NOT NULL,
    backend_pid INTEGER     NOT NULL,
    heartbeat   TIMESTAMPTZ NOT NULL
)"""

# The advisory lock ``key`` as pg_locks shows it: high word in classid, low in objid.
_LOCK_ROW = """l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::bigint = %(hi)s AND l.objid::bigint = %(lo)s"""


def writer_lock_key(tenant_id: str) -> int:
    """The advisory-lock key for ``tenant_id``: the same in every agent and every release.

    The first 8 bytes of sha256("entragate-writer:" + tenant) as a signed bigint.
    Tenant ids are case-insensitive, so they are lowered first. Agents of one tenant
    must name it the same way (all by GUID, or all by the same domain).
    """
    digest = hashlib.sha256(f"{KEY_PREFIX}{tenant_id.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresWriterLease(WriterLease):
    """``pg_try_advisory_lock(key)`` on a dedicated session, with a heartbeat and a term."""

    kind = "postgresql-advisory-lock"
    connect_timeout = 5
    # Client side: how long libpq waits for the server to acknowledge data (ms), and
    # keepalives while idle. Server side: the same, so a vanished host's session (and
    # its lock) is dropped within ~15 s instead of the OS default of two hours.
    tcp_user_timeout_ms = 10_000
    keepalives_idle = 5
    keepalives_interval = 2
    keepalives_count = 3

    def __init__(self, url: str, tenant_id: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.tenant_id = tenant_id
        self.key = writer_lock_key(tenant_id)
        self.timeout = float(timeout)
        self.heartbeat_interval = min(1.0, self.timeout / 5)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.term: int | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._lock = threading.Lock()
        self._beating: threading.Thread | None = None
        self._probe_due = False
        self._renewed_at = 0.0  # monotonic time of the last successful renewal
        self._why = "another agent holds the writer lease"
        self._lock_params = {"hi": (self.key >> 32) & 0xFFFFFFFF, "lo": self.key & 0xFFFFFFFF}

    def __repr__(self) -> str:
        return f"PostgresWriterLease({redact(self.url)!r}, key={self.key})"

    @property
    def backend_pid(self) -> int | None:
        """The lease session's server process id (tests, ``pg_stat_activity``)."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return int(conn.info.backend_pid)

    # ------------------------------------------------------------------ the session

    def _connect(self) -> psycopg.Connection[Any]:
        conn = open_connection(
            self.url,
            self.connect_timeout,
            autocommit=True,
            application_name="entragate-writer",
            keepalives=1,
            keepalives_idle=self.keepalives_idle,
            keepalives_interval=self.keepalives_interval,
            keepalives_count=self.keepalives_count,
            tcp_user_timeout=self.tcp_user_timeout_ms,
        )
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
        with conn.transaction():  # the lease may come before the store created its tables
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(LEASE_TABLE)
        return conn

    def _drop(self) -> None:
        conn, self._conn, self._held, self.term = self._conn, None, False, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _reachable(self) -> bool:
        """Whether the database answers at all (a lost lease then means another holder)."""
        try:
            with open_connection(self.url, self.connect_timeout) as probe:
                probe.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    # ------------------------------------------------------------------ taking it

    def try_acquire(self) -> bool:
        with self._lock:
            self.fenced, self._why = None, ""  # why_not() says "another agent holds it" unless set
            if self._held:
                if self._renew():
                    return True
                self._drop()
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._drop()
                    self._conn = self._connect()
                got = self._lock_once(self._conn)
                if not got and self._fence_stale(self._conn):
                    got = self._lock_once(self._conn)
                if got:
                    self.term = self._claim(self._conn)
            except psycopg.Error as exc:
                self._drop()
                self.reachable, self._probe_due = False, False
                self._why = f"cannot reach {redact(self.url)}: {str(exc).strip()}"
                return False
            self.reachable, self._probe_due = True, False
            self._held = got
            if got:
                self._start_heartbeat()
            return got

    def _lock_once(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def _claim(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            """INSERT INTO entragate_writer (lock_key, term, holder, backend_pid, heartbeat)
               VALUES (%s, 1, %s, pg_backend_pid(), now())
               ON CONFLICT (lock_key) DO UPDATE SET term = entragate_writer.term + 1,
                   holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid,
                   heartbeat = EXCLUDED.heartbeat
               RETURNING term""",
            (self.key, self.holder),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _fence_stale(self, conn: psycopg.Connection[Any]) -> bool:
        """End the session of a holder whose heartbeat is older than ``timeout``."""
        row = conn.execute(
            f"""SELECT w.backend_pid, w.holder, w.term,
                       extract(epoch FROM now() - w.heartbeat)::float8,
                       EXISTS (SELECT 1 FROM pg_locks l WHERE {_LOCK_ROW} AND l.pid = w.backend_pid)
                FROM entragate_writer w WHERE w.lock_key = %(key)s""",  # noqa: S608
            {**self._lock_params, "key": self.key},
        ).fetchone()
        if row is None:
            return False  # a holder without a heartbeat row (an older release): no evidence
        pid, holder, term, age, holds_lock = row
        if not holds_lock or age <= self.timeout:
            return False
        try:
            ended = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
        except psycopg.Error as exc:
            self._why = (
                f"the writer {holder} (term {term}) has not renewed its heartbeat for over "
                f"{self.timeout:g} s, but its session cannot be ended: {str(exc).strip()} (let this database role "
                "signal it: GRANT pg_signal_backend)"
            )
            return False
        self._why = self.fenced = (
            f"the writer {holder} (term {term}) had not renewed its heartbeat for {age:.1f} s; "
            f"its session (pid {pid}) was ended"
        )
        return bool(ended and ended[0])

    # ------------------------------------------------------------------ keeping it

    def _renew(self) -> bool:
        """Heartbeat, for this term, on the session that holds the lock; False when lost."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken or self.term is None:
            return False
        try:
            row = conn.execute(
                f"""UPDATE entragate_writer w SET heartbeat = now()
                    WHERE w.lock_key = %(key)s AND w.term = %(term)s
                      AND w.backend_pid = pg_backend_pid()
                      AND EXISTS (SELECT 1 FROM pg_locks l
                                  WHERE {_LOCK_ROW} AND l.pid = pg_backend_pid())
                    RETURNING w.term""",  # noqa: S608
                {**self._lock_params, "key": self.key, "term": self.term},
            ).fetchone()
        except psycopg.Error:
            return False
        if row is None:
            return False
        self._renewed_at = time.monotonic()
        return True

    def _start_heartbeat(self) -> None:
        if self._beating is None or not self._beating.is_alive():
            self._beating = threading.Thread(
                target=self._heartbeat, name="entragate-lease-heartbeat", daemon=True
            )
            self._beating.start()

    def _heartbeat(self) -> None:
        """Renew about once a second while held; the thread ends with the term."""
        while True:
            time.sleep(self.heartbeat_interval)
            with self._lock:
                # The writer's own checks renew too (before each write, each second while
                # idle): beat only when none did within the interval.
                fresh = time.monotonic() - self._renewed_at < self.heartbeat_interval
                if self._held and not fresh and not self._renew():
                    self._lost()
                if not self._held:
                    self._beating = None
                    return

    def _lost(self) -> None:
        self._drop()
        self._why = "the writer lease could not be renewed (its session or term ended)"
        self._probe_due = True  # the next held() finds out whether the database answers

    def held(self) -> bool:
        with self._lock:
            if self._held and self._renew():
                return True
            if self._held:
                self._lost()
            probe, self._probe_due = self._probe_due, False
        if probe:  # outside the lock: lost while the database answers means another holder
            self.reachable = self._reachable()
        return False

    def release(self) -> None:
        with self._lock:
            if self._held and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()  # closing the session releases the lock in any case

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "store": redact(self.url),
                "timeout": self.timeout, "term": self.term}

    def why_not(self) -> str:
        return self._why or f"another agent holds advisory lock {self.key} on {redact(self.url)}"
