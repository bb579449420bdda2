"""SQLite grant store: one file, WAL, ``synchronous=FULL``, one transaction per call.

One connection per store object, serialised by a lock (the store is shared by
HTTP handler threads and the writer thread). Other processes (the CLI while an
agent runs) use their own connection; ``BEGIN IMMEDIATE`` plus a busy timeout
serialise writers across processes, so the capacity check inside ``add`` is atomic.

Its writer lease (docs/design.md#lease), :class:`LocalWriterLease`, is an ``flock``
on a lock file beside the database, so two agents started on one file cannot both
write (the second one waits as a standby). The kernel drops the lock when the
holder's process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from entragate.logs import get_logger
from entragate.private_files import (
    PRIVATE_FILE_MODE,
    create_private_file,
    describe_loose,
    loose_modes,
    make_private_dir,
)

from .lease import WriterLease
from .store import (
    COLUMNS,
    SCHEMA_VERSION,
    Grant,
    GrantStore,
    StoreError,
    StoreUnavailable,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entragate_schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entragate_grants (
    acl        TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    cidr       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,   -- microseconds since the Unix epoch, UTC
    created_at INTEGER NOT NULL,
    source     TEXT    NOT NULL DEFAULT '',
    note       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (acl, username, cidr)
);
CREATE INDEX IF NOT EXISTS entragate_grants_expiry ON entragate_grants (expires_at);
CREATE INDEX IF NOT EXISTS entragate_grants_acl_cidr ON entragate_grants (acl, cidr);
CREATE TABLE IF NOT EXISTS entragate_change (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO entragate_change (id, seq) VALUES (1, 0);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _row(row: Any) -> Grant:
    acl, user, cidr, expires_at, created_at, source, note = row
    return Grant(acl, user, cidr, _from_us(expires_at), _from_us(created_at), source, note)


def path_from_url(url: str) -> Path:
    """``sqlite:///abs/path.db`` → /abs/path.db; ``sqlite:rel.db`` / ``sqlite://rel.db`` → rel.db."""
    if not url.startswith("sqlite:"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url[len("sqlite:") :]
    if rest.startswith("///"):
        rest = "/" + rest[3:].lstrip("/")
    elif rest.startswith("//"):
        rest = rest[2:]
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ValueError(f"sqlite URL {url!r} must name a file (the store must be durable)")
    return Path(rest).expanduser()


#: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL: reopening the file would not help
_NOT_THE_CONNECTION = frozenset({5, 6, 13})

class SQLiteGrantStore(GrantStore):
    busy_timeout_ms = 10_000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            # Private from the first byte; SQLite gives -wal and -shm the database's mode.
            make_private_dir(self.path.parent)
            create_private_file(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create grant store {self.path}: {exc}") from exc
        with self._lock:
            conn = self._connection()
            with self._guard("create schema"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    rows = conn.execute("SELECT version FROM entragate_schema_version").fetchall()
                    if not rows:
                        conn.execute(
                            "INSERT INTO entragate_schema_version (version) VALUES (?)",
                            (SCHEMA_VERSION,),
                        )
                    elif max(r[0] for r in rows) > SCHEMA_VERSION:
                        raise StoreError(
                            f"grant store {self.path} has schema version {max(r[0] for r in rows)}; "
                            f"this entragate understands up to {SCHEMA_VERSION} (upgrade entragate)"
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        for path, mode in loose_modes(store_paths(self.path)):
            get_logger(component="store").warning(
                "store_not_private", path=str(path), mode=f"{mode:04o}",
                message=describe_loose(path, mode),
            )

    def __repr__(self) -> str:
        return f"SQLiteGrantStore({str(self.path)!r})"

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            with self._guard("open"):
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_ms / 1000,
                    isolation_level=None,  # explicit BEGIN/COMMIT
                    check_same_thread=False,  # guarded by self._lock
                )
                try:
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise StoreUnavailable(
                            f"grant store {self.path}: cannot enable WAL (got {mode})"
                        )
                    conn.execute("PRAGMA synchronous = FULL")
                    conn.execute("PRAGMA foreign_keys = ON")
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _guard(self, op: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            # locked past the busy timeout, disk full, I/O error, unreadable/corrupt file …
            # A full disk or a lock is not the connection's fault: keep it (and its settings).
            keep = getattr(exc, "sqlite_errorcode", None) in _NOT_THE_CONNECTION
            if self._conn is not None and not self._conn.in_transaction and not keep:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            raise StoreUnavailable(f"grant store {self.path}: {op} failed: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self, op: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard(op):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def _bump(self, conn: sqlite3.Connection, by: int = 1) -> int:
        conn.execute("UPDATE entragate_change SET seq = seq + ? WHERE id = 1", (by,))
        return int(conn.execute("SELECT seq FROM entragate_change WHERE id = 1").fetchone()[0])

    # ------------------------------------------------------------------ backend hooks

    def writer_lease(self, tenant_id: str) -> LocalWriterLease:
        # One lock per database file, not per tenant: a SQLite store serves one tenant today.
        return LocalWriterLease(lock_file_for(self.path))

    def _db_time(self, value: datetime) -> int:
        return _to_us(value)

    def _rows(self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Grant]:
        return [_row(r) for r in conn.execute(sql, params).fetchall()]

    def _upsert(self, conn: sqlite3.Connection, grant: Grant) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO entragate_grants ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                grant.acl,
                grant.user,
                grant.cidr,
                _to_us(grant.expires_at),
                _to_us(grant.created_at),
                grant.source,
                grant.note,
            ),
        )

    def _delete(self, op: str, where: str, params: tuple[Any, ...]) -> list[Grant]:
        with self._tx(op) as conn:
            removed = self._rows(conn, f"SELECT {COLUMNS} FROM entragate_grants WHERE {where}", params)  # noqa: S608
            if removed:
                conn.execute(f"DELETE FROM entragate_grants WHERE {where}", params)  # noqa: S608
                self._advance(conn)
        return removed

    def next_expiry(self) -> datetime | None:
        self._check_open()
        with self._tx("read next expiry", write=False) as conn:
            value = conn.execute("SELECT MIN(expires_at) FROM entragate_grants").fetchone()[0]
        return None if value is None else _from_us(value)

    def change_seq(self) -> int:
        self._check_open()
        with self._tx("read change sequence", write=False) as conn:
            return int(conn.execute("SELECT seq FROM entragate_change WHERE id = 1").fetchone()[0])

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


# ---------------------------------------------------------------------- the writer lease


def store_paths(database: Path) -> tuple[Path, ...]:
    """The directory and every file of a SQLite store: database, -wal, -shm, writer lock."""
    files = (database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))
    return (database.parent, database, *files, lock_file_for(database))


def lock_file_for(database: Path) -> Path:
    """``/var/lib/entragate/grants.db`` → ``/var/lib/entragate/grants.db.writer.lock``."""
    return database.with_name(database.name + ".writer.lock")


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
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
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
