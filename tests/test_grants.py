"""Contract tests for the grant store, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from entragate.grants import (
    Grant,
    GrantStore,
    InvalidGrant,
    StoreError,
    StoreUnavailable,
    open_store,
)
from entragate.grants.batch import StoreChange
from tests.helpers.postgres import PgServer
from tests.helpers.sync import wait_for

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
IP1 = "81.2.69.142"
IP2 = "81.2.69.160"
NET = "81.2.69.0/28"
V6 = "2a00:1450:4001:80b::200e"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/grants.db"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture
def store(store_url: str) -> Iterator[GrantStore]:
    s = open_store(store_url)
    s.poll_interval = 0.05
    try:
        yield s
    finally:
        s.close()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# ---------------------------------------------------------------- add / renew


def test_add_stores_normalised_grant(store: GrantStore) -> None:
    seq0 = store.change_seq()
    grant, renewed = store.add("staff", "alice", IP1, at(60), source="api", note="vpn", now=T0)
    assert renewed is False
    assert grant == Grant("staff", "alice", f"{IP1}/32", at(60), T0, "api", "vpn")
    assert store.active(now=T0) == [grant]
    assert store.change_seq() > seq0
    g6, _ = store.add("staff", "alice", V6, at(60), now=T0)
    assert g6.cidr == f"{V6}/128"
    assert g6.source == "cli"


def test_to_json_has_rfc3339_timestamps(store: GrantStore) -> None:
    grant, _ = store.add("staff", "alice", IP1, at(60), now=T0)
    data = grant.to_json()
    assert data == {
        "acl": "staff",
        "user": "alice",
        "cidr": f"{IP1}/32",
        "created_at": "2030-01-01T12:00:00Z",
        "expires_at": "2030-01-01T13:00:00Z",
        "source": "cli",
        "note": "",
    }
    assert Grant.from_json(data) == grant


def test_renew_sets_new_expiry_and_keeps_created_at(store: GrantStore) -> None:
    first, _ = store.add("staff", "alice", IP1, at(60), note="laptop", now=T0)
    second, renewed = store.add("staff", "alice", f"{IP1}/32", at(600), source="api", now=at(30))
    assert renewed is True
    assert second.created_at == T0
    assert second.expires_at == at(600)
    assert second.note == "laptop"  # an empty note on renewal keeps the old one
    assert second.source == "api"
    assert store.active(now=at(30)) == [second]
    third, renewed = store.add("staff", "alice", IP1, at(120), note="phone", now=at(31))
    assert renewed and third.note == "phone"
    assert third.expires_at == at(120)  # renewal sets the new expiry, even if earlier
    assert len(store.active(now=at(31))) == 1


def test_adding_over_an_expired_row_is_a_new_grant(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(10), now=T0)
    grant, renewed = store.add("staff", "alice", IP1, at(100), now=at(20))
    assert renewed is False
    assert grant.created_at == at(20)


def test_timestamps_round_trip_exactly_in_utc(store: GrantStore) -> None:
    cet = timezone(timedelta(hours=1))
    now = datetime(2030, 1, 1, 13, 0, 0, 123456, tzinfo=cet)
    exp = datetime(2030, 1, 1, 15, 30, 0, 654321, tzinfo=cet)
    grant, _ = store.add("staff", "alice", IP1, exp, now=now)
    (stored,) = store.active(now=now)
    assert stored == grant
    assert stored.expires_at == exp and stored.expires_at.tzinfo == UTC
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.to_json()["expires_at"] == "2030-01-01T14:30:00.654321Z"


def test_several_users_hold_the_same_address(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(60), now=T0)
    store.add("staff", "bob", IP1, at(90), now=T0)
    store.add("staff", "carol", IP2, at(90), now=T0)
    assert {(g.user, g.cidr) for g in store.active("staff", now=T0)} == {
        ("alice", f"{IP1}/32"),
        ("bob", f"{IP1}/32"),
        ("carol", f"{IP2}/32"),
    }
    removed = store.revoke("staff", IP1, user="alice")
    assert [g.user for g in removed] == ["alice"]
    assert f"{IP1}/32" in {g.cidr for g in store.active("staff", now=T0)}
    removed = store.revoke("staff", f"{IP1}/32")
    assert [g.user for g in removed] == ["bob"]
    assert {g.cidr for g in store.active("staff", now=T0)} == {f"{IP2}/32"}


def test_revoke_without_user_ends_every_holder(store: GrantStore) -> None:
    for user in ("alice", "bob", "carol"):
        store.add("staff", user, NET, at(60), now=T0)
    store.add("other", "alice", NET, at(60), now=T0)
    removed = store.revoke("staff", NET)
    assert sorted(g.user for g in removed) == ["alice", "bob", "carol"]
    assert [g.acl for g in store.active(now=T0)] == ["other"]


def test_revoking_nothing_changes_nothing(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(60), now=T0)
    seq = store.change_seq()
    assert store.revoke("staff", IP2) == []
    assert store.revoke("staff", IP1, user="bob") == []
    assert store.flush("nobody") == []
    assert store.pop_expired(T0) == []
    assert store.change_seq() == seq


def test_flush_ends_one_acl_only(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(60), now=T0)
    store.add("staff", "bob", IP2, at(60), now=T0)
    store.add("vpn", "alice", IP1, at(60), now=T0)
    removed = store.flush("staff")
    assert sorted(g.user for g in removed) == ["alice", "bob"]
    assert [(g.acl, g.user) for g in store.active(now=T0)] == [("vpn", "alice")]
    assert store.acls() == ["vpn"]


def test_active_filters_by_acl_and_time(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(10), now=T0)
    store.add("staff", "bob", IP2, at(20), now=T0)
    store.add("vpn", "carol", V6, at(30), now=T0)
    assert [g.user for g in store.active("staff", now=T0)] == ["alice", "bob"]
    assert [g.user for g in store.active("vpn", now=T0)] == ["carol"]
    assert store.active("missing", now=T0) == []
    assert [g.user for g in store.active(now=at(10))] == ["bob", "carol"]  # expiry == now: gone
    assert store.active(now=at(30)) == []


def test_pop_expired_deletes_and_returns_due_grants(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(10), now=T0)
    store.add("staff", "bob", IP2, at(20), now=T0)
    store.add("vpn", "carol", V6, at(30), now=T0)
    assert store.next_expiry() == at(10)
    seq = store.change_seq()
    popped = store.pop_expired(at(20))
    assert [(g.user, g.expires_at) for g in popped] == [("alice", at(10)), ("bob", at(20))]
    assert store.change_seq() > seq
    assert store.pop_expired(at(20)) == []
    assert store.next_expiry() == at(30)
    assert [g.user for g in store.active(now=T0)] == ["carol"]
    store.pop_expired(at(31))
    assert store.next_expiry() is None


def test_change_seq_increases_with_every_mutation(store: GrantStore) -> None:
    seen = [store.change_seq()]
    store.add("staff", "alice", IP1, at(10), now=T0)
    seen.append(store.change_seq())
    store.add("staff", "alice", IP1, at(20), now=T0)  # renewal is a mutation too
    seen.append(store.change_seq())
    store.add("staff", "bob", IP2, at(20), now=T0)
    seen.append(store.change_seq())
    store.revoke("staff", IP2)
    seen.append(store.change_seq())
    store.pop_expired(at(25))
    seen.append(store.change_seq())
    assert seen == sorted(set(seen)), seen


# ---------------------------------------------------------------- capacity guard


def test_capacity_check_sees_would_be_cidrs(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(10), now=T0)
    store.add("staff", "bob", IP1, at(10), now=T0)
    store.add("staff", "old", "81.2.69.200", at(1), now=T0)
    store.add("vpn", "x", V6, at(10), now=T0)
    seen: list[list[str]] = []
    store.add("staff", "carol", NET, at(10), now=at(2), capacity_check=seen.append)
    assert seen == [
        [NET, f"{IP1}/32"]
    ]  # distinct, address order, expired excluded, other ACLs excluded


def test_capacity_check_refusal_stores_nothing(store: GrantStore) -> None:
    store.add("staff", "alice", IP1, at(10), now=T0)
    seq = store.change_seq()

    def full(cidrs: list[str]) -> None:
        if len(cidrs) > 1:
            raise InvalidGrant("capacity", f"{len(cidrs)} ranges exceed 1")

    with pytest.raises(InvalidGrant) as exc:
        store.add("staff", "bob", IP2, at(10), now=T0, capacity_check=full)
    assert exc.value.reason == "capacity"
    assert [g.user for g in store.active(now=T0)] == ["alice"]
    assert store.change_seq() == seq
    # renewing an address already present does not need room
    store.add("staff", "bob", IP1, at(10), now=T0, capacity_check=full)


def test_capacity_check_is_atomic_across_connections(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    limit = 5
    errors: list[BaseException] = []
    refused = []

    def guard(cidrs: list[str]) -> None:
        if len(cidrs) > limit:
            raise InvalidGrant("capacity", "full")

    def worker(k: int) -> None:
        s = stores[k % len(stores)]
        try:
            s.add("staff", f"u{k}", f"81.2.70.{k}", at(60), now=T0, capacity_check=guard)
        except InvalidGrant:
            refused.append(k)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(stores[0].active("staff", now=T0)) == limit
        assert len(refused) == 16 - limit
    finally:
        for s in stores:
            s.close()


# ---------------------------------------------------------------- input refused


@pytest.mark.parametrize(
    ("acl", "user", "cidr", "reason"),
    [
        ("staff", "alice", "not-an-ip", "invalid_ip"),
        ("staff", "alice", "81.2.69.142/24", "host_bits_set"),
        ("staff", "alice", "fe80::1%eth0", "zone_id"),
        ("staff", "", IP1, "invalid_user"),
        ("staff", "a\nb", IP1, "invalid_user"),
        ("", "alice", IP1, "invalid_acl"),
        ("a/b", "alice", IP1, "invalid_acl"),
    ],
)
def test_bad_input_is_refused_and_nothing_stored(
    store: GrantStore, acl: str, user: str, cidr: str, reason: str
) -> None:
    seq = store.change_seq()
    with pytest.raises(InvalidGrant) as exc:
        store.add(acl, user, cidr, at(10), now=T0)
    assert exc.value.reason == reason
    assert store.active(now=T0) == []
    assert store.change_seq() == seq


def test_expiry_must_be_future_and_aware(store: GrantStore) -> None:
    with pytest.raises(InvalidGrant) as exc:
        store.add("staff", "alice", IP1, T0, now=T0)
    assert exc.value.reason == "invalid_ttl"
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add("staff", "alice", IP1, datetime(2030, 1, 1), now=T0)
    assert store.active(now=T0) == []


# ---------------------------------------------------------------- durability, sharing


def test_grants_survive_reopen(store_url: str) -> None:
    s = open_store(store_url)
    grant, _ = s.add("staff", "alice", IP1, at(60), note="n", now=T0)
    seq = s.change_seq()
    s.close()
    s2 = open_store(store_url)
    try:
        assert s2.active(now=T0) == [grant]
        assert s2.change_seq() == seq
    finally:
        s2.close()


def test_other_connection_sees_writes_and_seq(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    try:
        seq = b.change_seq()
        a.add("staff", "alice", IP1, at(60), now=T0)
        assert b.change_seq() > seq
        assert [g.user for g in b.active(now=T0)] == ["alice"]
    finally:
        a.close()
        b.close()


def test_write_from_another_process_is_seen(store: GrantStore, store_url: str) -> None:
    seq = store.change_seq()
    code = textwrap.dedent(
        f"""
        from datetime import datetime, timezone
        from entragate.grants import open_store
        s = open_store({store_url!r})
        s.add("staff", "cli-user", "{IP2}", datetime(2030, 1, 1, 13, tzinfo=timezone.utc),
              now=datetime(2030, 1, 1, 12, tzinfo=timezone.utc), source="cli")
        s.close()
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    new_seq = store.wait_for_change(seq, timeout=30)
    assert new_seq > seq
    assert [g.user for g in store.active(now=T0)] == ["cli-user"]


def test_wait_for_change_returns_at_once_when_already_changed(store: GrantStore) -> None:
    seq = store.change_seq()
    store.add("staff", "alice", IP1, at(60), now=T0)
    assert store.wait_for_change(seq, timeout=30) > seq


def test_wait_for_change_times_out_with_current_seq(store: GrantStore) -> None:
    seq = store.change_seq()
    assert store.wait_for_change(seq, timeout=0.1) == seq


def assert_an_add_wakes(waiting: GrantStore, adding: GrantStore, *, join: float = 60) -> None:
    """An add through ``adding`` ends a ``wait_for_change`` on ``waiting`` with a newer seq."""
    seq = waiting.change_seq()
    result: list[int] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        result.append(waiting.wait_for_change(seq, timeout=60))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    adding.add("staff", "alice", IP1, at(60), now=T0)
    t.join(timeout=join)
    assert not t.is_alive()
    assert result and result[0] > seq


def test_wait_for_change_is_woken_by_another_thread(store: GrantStore) -> None:
    assert_an_add_wakes(store, store)


def test_wait_for_change_sees_another_connection(store_url: str) -> None:
    a, b = open_store(store_url), open_store(store_url)
    b.poll_interval = 0.05
    try:
        assert_an_add_wakes(b, a)
    finally:
        a.close()
        b.close()


def test_postgres_wakes_waiters_through_notify(pg_server: PgServer) -> None:
    from entragate.grants.postgres import PostgresGrantStore

    url = pg_server.create_database()
    a, b = open_store(url), open_store(url)
    assert isinstance(b, PostgresGrantStore)
    b.poll_interval = 3600  # polling alone would not return within the timeout below
    try:
        b.wait_for_change(b.change_seq(), timeout=0)  # starts the listener
        assert b.listening.wait(30)
        assert_an_add_wakes(b, a, join=90)
    finally:
        a.close()
        b.close()
        pg_server.drop_database(url)


def test_concurrent_adds_from_threads(store: GrantStore) -> None:
    seq = store.change_seq()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for j in range(5):
                store.add("staff", f"user{k}", f"81.2.{k}.{j}", at(60), now=T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.active(now=T0)) == 40
    assert store.change_seq() == seq + 40


def test_closed_store_refuses(store_url: str) -> None:
    s = open_store(store_url)
    s.close()
    with pytest.raises(StoreError):
        s.active()


# ---------------------------------------------------------------- backend specifics


def test_sqlite_is_wal_full_sync_with_schema_version(tmp_path: Path) -> None:
    from entragate.grants.sqlite import SQLiteGrantStore

    url = f"sqlite:///{tmp_path}/a/b/grants.db"
    s = open_store(url)
    try:
        assert isinstance(s, SQLiteGrantStore)
        assert (tmp_path / "a" / "b" / "grants.db").exists()
        conn = s._connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("SELECT version FROM entragate_schema_version").fetchall() == [(1,)]
    finally:
        s.close()


def test_sqlite_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:rel/grants.db")
    s.close()
    assert (tmp_path / "rel" / "grants.db").exists()


def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{blocker}/grants.db")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{corrupt}")


def test_newer_schema_is_refused(store_url: str) -> None:
    s = open_store(store_url)
    s.close()
    if store_url.startswith("sqlite"):
        import sqlite3

        from entragate.grants.sqlite import path_from_url

        with sqlite3.connect(path_from_url(store_url)) as conn:
            conn.execute("UPDATE entragate_schema_version SET version = 99")
    else:
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("UPDATE entragate_schema_version SET version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(store_url)


def test_unsupported_url() -> None:
    with pytest.raises(ValueError):
        open_store("mysql://x/y")
    with pytest.raises(ValueError):
        open_store("sqlite::memory:")


def test_postgres_unreachable_is_unavailable(pg_server: PgServer) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on that port now
    with pytest.raises(StoreUnavailable) as exc:
        open_store(f"postgresql://entragate:secret-pw@127.0.0.1:{port}/grants")
    assert "secret-pw" not in str(exc.value)


def test_postgres_recovers_after_losing_its_connection(pg_server: PgServer) -> None:
    url = pg_server.create_database()
    s = open_store(url)
    try:
        s.add("staff", "alice", IP1, at(60), now=T0)
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (url.rsplit("/", 1)[1],),
            )
        with pytest.raises(StoreUnavailable):
            s.active(now=T0)
        assert [g.user for g in s.active(now=T0)] == ["alice"]  # reconnected
    finally:
        s.close()
        pg_server.drop_database(url)


# ---------------------------------------------------------------- group commit


def hold_first_commit(store: GrantStore) -> tuple[threading.Event, threading.Event, list[StoreChange]]:
    """A listener that keeps the first batch's leader (and so the store) busy until released,
    so that grants sent meanwhile queue up for the next batch."""
    entered, release = threading.Event(), threading.Event()
    changes: list[StoreChange] = []

    def listener(change: StoreChange) -> None:
        changes.append(change)
        if not entered.is_set():
            entered.set()
            release.wait(30)

    store.add_listener(listener)
    return entered, release, changes


def test_concurrent_adds_share_one_transaction_each_acknowledged_once_durable(
    store: GrantStore, store_url: str
) -> None:
    entered, release, changes = hold_first_commit(store)
    seq = store.change_seq()
    first = threading.Thread(target=store.add, args=("staff", "lead", IP1, at(60)), kwargs={"now": T0})
    first.start()
    assert entered.wait(30)
    acked: list[str] = []

    def worker(k: int) -> None:
        store.add("staff", f"user{k}", f"81.2.71.{k}", at(60), now=T0)
        acked.append(f"81.2.71.{k}/32")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 13)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(store._group._queue) == 12)  # all queued behind the first batch
    assert acked == []  # nobody is acknowledged before their batch is durable
    release.set()
    for t in [first, *threads]:
        t.join()
    assert len(changes) == 2 and len(changes[1].added) == 12  # one transaction for the twelve
    assert store.change_seq() == seq + 13  # change_seq still counts every mutation
    assert [(c.first_seq, c.seq) for c in changes] == [(seq + 1, seq + 1), (seq + 2, seq + 13)]
    other = open_store(store_url)  # another connection: committed, not just cached
    try:
        assert {g.cidr for g in other.active(now=T0)} == {f"{IP1}/32", *acked}
    finally:
        other.close()


def test_a_refused_add_leaves_the_rest_of_its_batch_alone(store: GrantStore) -> None:
    entered, release, changes = hold_first_commit(store)
    first = threading.Thread(target=store.add, args=("staff", "lead", IP1, at(60)), kwargs={"now": T0})
    first.start()
    assert entered.wait(30)
    refused: list[str] = []

    def no_81_2_72_5(cidrs: Sequence[str]) -> None:
        if "81.2.72.5/32" in cidrs:
            raise InvalidGrant("capacity", "full")

    def worker(k: int) -> None:
        try:
            store.add("staff", f"user{k}", f"81.2.72.{k}", at(60), now=T0, capacity_check=no_81_2_72_5)
        except InvalidGrant:
            refused.append(f"81.2.72.{k}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 9)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(store._group._queue) == 8)
    release.set()
    for t in [first, *threads]:
        t.join()
    assert refused == ["81.2.72.5"]
    assert len(store.active(now=T0)) == 8
    assert len(changes[1].added) == 7


def test_capacity_check_bound_is_known_without_reading(store: GrantStore) -> None:
    for k in range(5):
        store.add("staff", f"user{k}", f"81.2.73.{k}", at(60), now=T0)
    store.add("staff", "again", "81.2.73.0", at(60), now=T0)  # a second holder: same range
    bounds: list[int] = []
    store.add("staff", "new", "81.2.73.9", at(60), now=T0, capacity_check=lambda held: bounds.append(held.at_most))  # type: ignore[attr-defined]
    store.revoke("staff", "81.2.73.1")
    store.add("staff", "newer", "81.2.73.0", at(60), now=T0, capacity_check=lambda held: bounds.append(held.at_most))  # type: ignore[attr-defined]
    assert bounds == [6, 5]

