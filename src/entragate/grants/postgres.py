"""PostgreSQL grant store (psycopg 3), for several agents sharing one set of grants,
and the writer lease that goes with it (docs/design.md#lease).

Same semantics as the SQLite store. Every mutating transaction first bumps the
single ``entragate_change`` row, which serialises writers across agents (so the
capacity check in ``add`` sees every committed grant) and gives a monotonic
``change_seq``. Commits also ``NOTIFY entragate_change``; a listener thread wakes
local ``wait_for_change`` callers at once, and polling covers a lost listener.

:class:`PostgresWriterLease` is a session-level advisory lock, held on a dedicated
autocommit connection of its own (never the store's). When the holder's process
dies its session ends and PostgreSQL releases the lock at once; when its host or
network dies, the TCP keepalive and user-timeout settings make both ends notice
within seconds rather than hours. Session advisory locks do not survive a
transaction-mode connection pooler (PgBouncer): point ``store`` at PostgreSQL
itself or at a session-mode pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg

from .lease import WriterLease
from .store import (
    COLUMNS,
    SCHEMA_VERSION,
    Grant,
    GrantStore,
    StoreError,
    StoreUnavailable,
)

CHANNEL = "entragate_change"
_MIGRATION_LOCK = 0x656E7472  # "entr": serialises schema creation between agents

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entragate_schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entragate_grants (
        acl        TEXT        NOT NULL,
        username   TEXT        NOT NULL,
        cidr       TEXT        NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        source     TEXT        NOT NULL DEFAULT '',
        note       TEXT        NOT NULL DEFAULT '',
        PRIMARY KEY (acl, username, cidr)
    )""",
    "CREATE INDEX IF NOT EXISTS entragate_grants_expiry ON entragate_grants (expires_at)",
    "CREATE INDEX IF NOT EXISTS entragate_grants_acl_cidr ON entragate_grants (acl, cidr)",
    """CREATE TABLE IF NOT EXISTS entragate_change (
        id  INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT  NOT NULL
    )""",
    "INSERT INTO entragate_change (id, seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
)


def redact(url: str) -> str:
    """The URL (or keyword DSN) without its password, for messages."""
    from entragate.logs import redact_text

    return redact_text(url)


def _open(url: str, connect_timeout: int, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new connection; ``connect_timeout`` unless the URL sets its own."""
    if "connect_timeout" not in url:
        kwargs["connect_timeout"] = connect_timeout
    return psycopg.connect(url, **kwargs)



def _describe(exc: psycopg.Error) -> str:
    """The error in words, with the next step when the schema itself has gone."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return (
            f"{text} (the store's tables are missing: was the database dropped or restored? "
            "restart the agent to create them again)"
        )
    return text


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _row(row: Any) -> Grant:
    acl, user, cidr, expires_at, created_at, source, note = row
    return Grant(acl, user, cidr, _utc(expires_at), _utc(created_at), source, note)


class PostgresGrantStore(GrantStore):
    connect_timeout = 5

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is active (tests, diagnostics)
        with self._tx("create schema") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
            rows = conn.execute("SELECT version FROM entragate_schema_version").fetchall()
            if not rows:
                conn.execute(
                    "INSERT INTO entragate_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
                )
            elif max(r[0] for r in rows) > SCHEMA_VERSION:
                raise StoreError(
                    f"grant store {redact(url)} has schema version {max(r[0] for r in rows)}; "
                    f"this entragate understands up to {SCHEMA_VERSION} (upgrade entragate)"
                )

    def __repr__(self) -> str:
        return f"PostgresGrantStore({redact(self.url)!r})"

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = _open(self.url, self.connect_timeout, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to grant store {redact(self.url)}: {exc}"
            ) from exc
        try:
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"grant store {redact(self.url)}: {exc}") from exc
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _tx(self, op: str, *, write: bool = True) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    yield conn
            except psycopg.Error as exc:
                # One translation point: every database error leaves as StoreUnavailable, so
                # the loop retries it and the API answers 503 (docs/design.md#outages).
                with contextlib.suppress(Exception):
                    conn.close()
                self._conn = None
                raise StoreUnavailable(
                    f"grant store {redact(self.url)}: {op} failed: {_describe(exc)}"
                ) from exc

    def _bump(self, conn: psycopg.Connection[Any], by: int = 1) -> int:
        row = conn.execute(
            "UPDATE entragate_change SET seq = seq + %s WHERE id = 1 RETURNING seq", (by,)
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row[0])))
        return int(row[0])

    # ------------------------------------------------------------------ backend hooks

    _P = "%s"

    def writer_lease(self, tenant_id: str) -> PostgresWriterLease:
        return PostgresWriterLease(self.url, tenant_id)

    def _db_time(self, value: datetime) -> datetime:
        return value

    def _rows(self, conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> list[Grant]:
        return [_row(r) for r in conn.execute(sql, params).fetchall()]

    def _upsert(self, conn: psycopg.Connection[Any], grant: Grant) -> None:
        conn.execute(
            f"""INSERT INTO entragate_grants ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (acl, username, cidr) DO UPDATE SET
                    expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at,
                    source = EXCLUDED.source, note = EXCLUDED.note""",  # noqa: S608
            (
                grant.acl,
                grant.user,
                grant.cidr,
                grant.expires_at,
                grant.created_at,
                grant.source,
                grant.note,
            ),
        )

    def _delete(self, op: str, where: str, params: tuple[Any, ...]) -> list[Grant]:
        with self._tx(op) as conn:
            removed = self._rows(
                conn, f"DELETE FROM entragate_grants WHERE {where} RETURNING {COLUMNS}", params  # noqa: S608
            )
            if removed:
                self._advance(conn)
        return removed

    def next_expiry(self) -> datetime | None:
        self._check_open()
        with self._tx("read next expiry") as conn:
            row = conn.execute("SELECT MIN(expires_at) FROM entragate_grants").fetchone()
        return None if row is None or row[0] is None else _utc(row[0])

    def change_seq(self) -> int:
        self._check_open()
        with self._tx("read change sequence") as conn:
            row = conn.execute("SELECT seq FROM entragate_change WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ LISTEN/NOTIFY

    def _start_listener(self) -> None:
        with self._lock:
            if self._listener is not None or self._closed:
                return
            self._listener = threading.Thread(
                target=self._listen, name="entragate-store-listen", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except StoreUnavailable:
                self._stop.wait(self.poll_interval * 4)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self.listening.set()
                self._notify()  # anything committed before LISTEN: waiters re-read
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=0.5):
                        self._notify()
            except psycopg.Error:
                self._stop.wait(self.poll_interval)  # waiters keep polling meanwhile
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    conn.close()

    def _close(self) -> None:
        self._stop.set()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=5)
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None


# ---------------------------------------------------------------------- the writer lease

KEY_PREFIX = "entragate-writer:"


def writer_lock_key(tenant_id: str) -> int:
    """The advisory-lock key for ``tenant_id``: the same in every agent and every release.

    The first 8 bytes of sha256("entragate-writer:" + tenant) as a signed bigint.
    Tenant ids are case-insensitive, so they are lowered first. Agents of one tenant
    must name it the same way (all by GUID, or all by the same domain).
    """
    digest = hashlib.sha256(f"{KEY_PREFIX}{tenant_id.strip().lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
        conn = _open(
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
                self.reachable = False
                self._why = f"cannot reach {redact(self.url)}: {str(exc).strip()}"
                return False
            self.reachable = True
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
