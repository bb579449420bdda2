"""The grant store interface shared by the SQLite and PostgreSQL backends.

Over 400 lines on purpose: it holds every statement once (docs/design.md#store), and
the group commit that runs the adds lives beside them because it owns their
transaction, the capacity census and the change sequence they advance.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .batch import AddRequest, Census, GroupCommit, HeldCidrs, NothingStored, StoreChange
from .health import StoreHealth
from .model import Grant, ensure_utc, rfc3339, utcnow
from .validation import InvalidGrant, normalize_cidr, validate_acl, validate_user

if TYPE_CHECKING:  # lease.py imports this module
    from .lease import WriterLease

SCHEMA_VERSION = 1
COLUMNS = "acl, username, cidr, expires_at, created_at, source, note"

#: called inside the add's transaction with the ACL's would-be active cidrs (a lazy
#: :class:`HeldCidrs`, whose ``at_most`` is an O(1) bound); whatever it raises refuses the add
CapacityCheck = Callable[[Sequence[str]], None]


class StoreError(Exception):
    """The grant store failed in a way that is not the caller's input."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now (the API answers 503)."""


def store_kind(url: str) -> Literal["sqlite", "postgresql"]:
    """Which backend a grant store URL names: ``sqlite:…`` or ``postgresql://`` (``postgres://``)."""
    if url.startswith("sqlite:"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise ValueError(f"unsupported grant store URL {url!r}: use sqlite:///path or postgresql://…")


@functools.lru_cache(maxsize=65536)  # called for every stored cidr on every add
def cidr_sort_key(cidr: str) -> tuple[int, int, int]:
    """Address order: IPv4 before IPv6, then by network address, then by prefix length."""
    net = ipaddress.ip_network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


def sort_grants(grants: Iterable[Grant]) -> list[Grant]:
    return sorted(grants, key=lambda g: (g.acl, g.created_at, g.cidr, g.user))


class GrantStore(abc.ABC):
    """Durable set of grants, safe to share between threads of one process.

    Every mutation bumps :meth:`change_seq`; other processes sharing the same
    database notice writes by polling it (or through :meth:`wait_for_change`).
    Timestamps are timezone-aware UTC datetimes.
    """

    #: how often wait_for_change re-reads change_seq to see other processes' writes
    poll_interval: float = 0.5

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0  # bumped by every local wake-up, so none is lost
        self._closed = False
        self._lock = threading.RLock()  # backends replace it with the one guarding their connection
        self._listeners: list[Callable[[StoreChange], None]] = []
        self._census = Census()
        self.health = StoreHealth()  # up, or down since when (docs/design.md#outages)
        self._tx_seq = 0  # change_seq after the last bump of the current transaction
        self._group = GroupCommit(self._add_batch)

    # ------------------------------------------------------------------ API

    def add(
        self,
        acl: str,
        user: str,
        cidr: str,
        expires_at: datetime,
        *,
        source: str = "cli",
        note: str = "",
        now: datetime | None = None,
        capacity_check: CapacityCheck | None = None,
    ) -> tuple[Grant, bool]:
        """Store a grant durably; returns ``(grant, renewed)``.

        Granting the same (acl, user, cidr) again sets the new expiry, keeps
        ``created_at`` (renewed=True), updates ``source`` and replaces ``note``
        unless the new note is empty. A row that had already expired (but was not
        yet popped) is replaced as a new grant. ``capacity_check`` is called inside
        the transaction with the ACL's would-be active cidrs (sorted, distinct);
        whatever it raises aborts the add and propagates.
        """
        acl = validate_acl(acl)
        user = validate_user(user)
        cidr = normalize_cidr(cidr)
        now = ensure_utc(now or utcnow(), "now")
        expires_at = ensure_utc(expires_at, "expires_at")
        if expires_at <= now:
            raise InvalidGrant(
                "invalid_ttl",
                f"expiry {rfc3339(expires_at)} is not in the future",
                rfc3339(expires_at),
            )
        source = str(source)[:64]
        note = str(note)[:1024]
        self._check_open()
        request = AddRequest(acl, user, cidr, expires_at, source, note, now, capacity_check)
        with self.health.recording("store a grant", write=True):
            grant, renewed = self._group.submit(request)  # returns once its batch is durable
        self._notify()
        return grant, renewed

    def add_listener(self, listener: Callable[[StoreChange], None]) -> None:
        """Call ``listener`` after every commit of this store object, in commit order, under
        the store's lock: it must be quick and must not call the store."""
        self._listeners.append(listener)

    @property
    def batches(self) -> int:
        """Group commits so far (each one transaction and one fsync)."""
        return self._group.batches

    def revoke(self, acl: str, cidr: str, user: str | None = None) -> list[Grant]:
        """End the grants of ``cidr`` in ``acl`` (of ``user`` only, or of every holder)."""
        acl = validate_acl(acl)
        cidr = normalize_cidr(cidr)
        if user is not None:
            user = validate_user(user)
        self._check_open()
        with self.health.recording("revoke", write=True):
            removed = self._revoke(acl, cidr, user)
        if removed:
            self._notify()
        return sort_grants(removed)

    def flush(self, acl: str) -> list[Grant]:
        """End every grant of ``acl``."""
        acl = validate_acl(acl)
        self._check_open()
        with self.health.recording("flush", write=True):
            removed = self._flush(acl)
        if removed:
            self._notify()
        return sort_grants(removed)

    def active(self, acl: str | None = None, now: datetime | None = None) -> list[Grant]:
        """Grants with expiry after ``now``, ordered by (acl, created_at, cidr, user)."""
        now = ensure_utc(now or utcnow(), "now")
        self._check_open()
        with self.health.recording("list grants", write=False):
            return sort_grants(self._active(acl, now))

    def pop_expired(self, now: datetime | None = None) -> list[Grant]:
        """Delete and return the grants whose expiry is at or before ``now``."""
        now = ensure_utc(now or utcnow(), "now")
        self._check_open()
        with self.health.recording("record expiries", write=True):
            removed = self._pop_expired(now)
        if removed:
            self._notify()
        return sorted(removed, key=lambda g: (g.expires_at, g.acl, g.cidr, g.user))

    def acls(self) -> list[str]:
        """ACL names that have at least one stored grant (expired or not)."""
        self._check_open()
        return sorted(self._acls())

    @abc.abstractmethod
    def next_expiry(self) -> datetime | None:
        """The earliest expiry among stored grants (None when there are none)."""

    @abc.abstractmethod
    def change_seq(self) -> int:
        """Monotonically increasing counter bumped by every committed mutation."""

    @abc.abstractmethod
    def writer_lease(self, tenant_id: str) -> WriterLease:
        """The lease that admits one writer of ``tenant_id`` among the agents on this store."""

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until ``change_seq() > since`` or ``timeout`` seconds pass; return change_seq.

        Writes by this process wake waiters at once; writes by other processes
        are seen within ``poll_interval`` (PostgreSQL also wakes on NOTIFY).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        self._start_listener()
        while True:
            with self._cond:
                generation = self._generation
            seq = self.change_seq()
            remaining = deadline - time.monotonic()
            if seq > since or remaining <= 0 or self._closed:
                return seq
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(min(self.poll_interval, remaining))

    def close(self) -> None:
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        self._close()

    def __enter__(self) -> GrantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the statements
    # Both backends run the same statements; they differ in the parameter marker
    # (``_P``), how a time is stored (``_db_time``) and their transaction plumbing.

    _P: str = "?"

    def _add_batch(self, batch: list[AddRequest]) -> None:
        """Store a batch of adds in one transaction; a refused add leaves the others alone."""
        with self._lock:
            stored: list[Grant] = []
            try:
                with self._tx("add grant") as conn:
                    # First: on PostgreSQL this row lock serialises every writer of every agent,
                    # so the capacity checks below see all committed grants.
                    first = self._advance(conn)
                    if not self._census.valid_after(first):
                        self._census.load(self._census_rows(conn), first - 1)
                    for request in batch:
                        grant = self._add_one(conn, request)
                        if grant is not None:
                            stored.append(grant)
                    if not stored:
                        raise NothingStored()
                    if len(stored) > 1:
                        self._advance(conn, len(stored) - 1)  # change_seq counts mutations
            except NothingStored:
                return  # rolled back, bump included: the census is still exact
            except BaseException:
                self._census.invalidate()  # it counted adds that were rolled back
                raise
            self._census.seq = self._tx_seq
            self._publish(StoreChange(first, self._tx_seq, added=stored))

    def _add_one(self, conn: Any, request: AddRequest) -> Grant | None:
        p = self._P
        acl, cidr, now = request.acl, request.cidr, request.now
        rows = self._rows(
            conn,
            f"SELECT {COLUMNS} FROM entragate_grants "  # noqa: S608
            f"WHERE acl = {p} AND username = {p} AND cidr = {p}",
            (acl, request.user, cidr),
        )
        grant, renewed = self._merge(
            rows[0] if rows else None,
            acl,
            request.user,
            cidr,
            request.expires_at,
            request.source,
            request.note,
            now,
        )
        if request.capacity_check is not None:
            at_most = self._census.distinct(acl) + (0 if self._census.holds(acl, cidr) else 1)

            def load() -> list[str]:
                held = conn.execute(
                    f"SELECT DISTINCT cidr FROM entragate_grants WHERE acl = {p} AND expires_at > {p}",  # noqa: S608
                    (acl, self._db_time(now)),
                )
                return sorted({r[0] for r in held} | {cidr}, key=cidr_sort_key)

            held = HeldCidrs(at_most, load)
            try:
                request.capacity_check(held)
            except BaseException as exc:
                if held.failed is not None:
                    raise held.failed from None  # the database failed: the whole batch fails
                request.error = exc
                return None
        self._upsert(conn, grant)
        if not rows:
            self._census.added(acl, cidr)
        request.result = (grant, renewed)
        return grant

    def _census_rows(self, conn: Any) -> list[tuple[str, str, int]]:
        rows = conn.execute("SELECT acl, cidr, COUNT(*) FROM entragate_grants GROUP BY acl, cidr")
        return [(r[0], r[1], int(r[2])) for r in rows]

    def _removed(self, removed: list[Grant]) -> None:
        """After a delete committed (under ``_lock``): the census and the listeners."""
        self._census.after_delete([(g.acl, g.cidr) for g in removed], self._tx_seq)
        self._publish(StoreChange(self._tx_seq, self._tx_seq, removed=removed))

    def _publish(self, change: StoreChange) -> None:
        for listener in self._listeners:
            listener(change)

    def _advance(self, conn: Any, by: int = 1) -> int:
        """Bump change_seq by ``by`` inside the transaction; remembers and returns the new value."""
        self._tx_seq = self._bump(conn, by)
        return self._tx_seq - by + 1

    def _revoke(self, acl: str, cidr: str, user: str | None) -> list[Grant]:
        p = self._P
        if user is None:
            return self._remove("revoke grant", f"acl = {p} AND cidr = {p}", (acl, cidr))
        return self._remove(
            "revoke grant", f"acl = {p} AND cidr = {p} AND username = {p}", (acl, cidr, user)
        )

    def _flush(self, acl: str) -> list[Grant]:
        return self._remove("flush acl", f"acl = {self._P}", (acl,))

    def _pop_expired(self, now: datetime) -> list[Grant]:
        return self._remove("remove expired grants", f"expires_at <= {self._P}", (self._db_time(now),))

    def _remove(self, op: str, where: str, params: tuple[Any, ...]) -> list[Grant]:
        with self._lock:
            removed = self._delete(op, where, params)
            if removed:
                self._removed(removed)
        return removed

    def _active(self, acl: str | None, now: datetime) -> list[Grant]:
        p = self._P
        where = f"expires_at > {p}"
        params: tuple[Any, ...] = (self._db_time(now),)
        if acl is not None:
            where, params = f"acl = {p} AND {where}", (acl, *params)
        with self._tx("list grants", write=False) as conn:
            return self._rows(conn, f"SELECT {COLUMNS} FROM entragate_grants WHERE {where}", params)  # noqa: S608

    def _acls(self) -> list[str]:
        with self._tx("list acls", write=False) as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT acl FROM entragate_grants")]

    # ------------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    def _tx(self, op: str, *, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        """A transaction (serialising writers); database errors become StoreUnavailable."""

    @abc.abstractmethod
    def _bump(self, conn: Any, by: int = 1) -> int:
        """Advance change_seq by ``by`` inside the transaction; return the new value.
        Backends call it only through :meth:`_advance`."""

    @abc.abstractmethod
    def _db_time(self, value: datetime) -> Any:
        """A time as the backend stores it."""

    @abc.abstractmethod
    def _rows(self, conn: Any, sql: str, params: tuple[Any, ...]) -> list[Grant]:
        """Run a SELECT of COLUMNS; the rows as grants."""

    @abc.abstractmethod
    def _upsert(self, conn: Any, grant: Grant) -> None:
        """Insert the grant, or replace the one with its (acl, user, cidr)."""

    @abc.abstractmethod
    def _delete(self, op: str, where: str, params: tuple[Any, ...]) -> list[Grant]:
        """Delete the matching grants (``_advance`` when any); return them."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    def _start_listener(self) -> None:  # noqa: B027
        """Backends with push notification start it here (idempotent)."""

    # ------------------------------------------------------------------ helpers

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("grant store is closed")

    @staticmethod
    def _merge(
        existing: Grant | None,
        acl: str,
        user: str,
        cidr: str,
        expires_at: datetime,
        source: str,
        note: str,
        now: datetime,
    ) -> tuple[Grant, bool]:
        """The row to write for an add, given the row already stored (if any)."""
        if existing is not None and existing.expires_at > now:
            return (
                Grant(
                    acl, user, cidr, expires_at, existing.created_at, source, note or existing.note
                ),
                True,
            )
        return Grant(acl, user, cidr, expires_at, now, source, note), False
