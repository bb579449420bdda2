"""Several agents on one grant store: exactly one writer per tenant (docs/design.md#lease).

Agents run in-process (one also as a real process killed with SIGKILL) against the
emulated tenant and a real PostgreSQL server. Every Graph request an agent sends
carries a fresh ``client-request-id``; each agent's session records the ids it sent,
so every write in the emulator's log is attributed to exactly one agent. Waits are
generous safety timeouts; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from entragate.agent import Agent, sync_once
from entragate.agent_client import AgentError
from entragate.emulator import Emulator
from entragate.grants import open_store
from entragate.grants.lease import lease_for
from entragate.grants.postgres_lease import PostgresWriterLease, writer_lock_key
from entragate.grants.sqlite import LocalWriterLease, lock_file_for
from tests.helpers.agents import (
    TAKEOVER_TIMEOUT,
    Tagged,
    grant_through,
    measured,
    owners,
    pg_agent,
    process_status,
    ready,
    start_agent_process,
    start_writer_then_standby,
    terms,
)
from tests.helpers.config import make_config
from tests.helpers.postgres import PgServer
from tests.helpers.sync import PLACEHOLDER, expand, remote_ranges, wait_for


@pytest.fixture
def two_agents(emu: Emulator, app: Any, pg_url: str) -> Iterator[tuple[Tagged, Tagged]]:
    a, b = start_writer_then_standby(emu, app, pg_url)
    try:
        yield a, b
    finally:
        b.agent.stop()
        a.agent.stop()


# ---------------------------------------------------------------------- PostgreSQL


def test_exactly_one_writer_and_grants_through_either_agent_reach_entra(
    emu: Emulator, app: Any, pg_url: str
) -> None:
    # both start at once: whichever wins, exactly one writes
    a, b = pg_agent(emu, app, pg_url, "a"), pg_agent(emu, app, pg_url, "b")
    a.agent.start()
    b.agent.start()
    try:
        assert wait_for(lambda: a.writer or b.writer, TAKEOVER_TIMEOUT)
        writer, standby = (a, b) if a.writer else (b, a)
        assert wait_for(writer.agent.engine.ready, TAKEOVER_TIMEOUT)
        for _ in range(20):  # the standby keeps trying the lease, and keeps failing
            assert writer.writer and not standby.writer
            time.sleep(0.1)

        a.grant("81.2.69.142", "alice")
        b.grant("81.2.69.143", "bob")
        wanted = {"81.2.69.142/32", "81.2.69.143/32"}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted)

        status = standby.agent.engine.status()
        assert status["writer"] is False and status["role"] == "standby"
        assert status["lease"]["kind"] == "postgresql-advisory-lock"
        assert "advisory lock" in status["standby_reason"]
        staff = status["acls"]["staff"]
        assert staff["grants"] == 2
        assert expand(staff["locations"][0]["ranges_desired"]) == wanted
        assert staff["locations"][0]["ranges_applied"] is None  # only the writer knows
        assert staff["locations"][0]["in_sync"] is None

        assert wait_for(lambda: writer.agent.engine.status()["acls"]["staff"]["locations"][0]["in_sync"] is True)
        status = writer.agent.engine.status()
        assert status["writer"] is True and status["role"] == "writer"
        assert expand(status["acls"]["staff"]["locations"][0]["ranges_applied"]) == wanted

        assert ready(a.agent) == 200 and ready(b.agent) == 200
        assert b'entragate_writer{tenant="default"} 1.0' in writer.agent.metrics.render()
        assert b'entragate_writer{tenant="default"} 0.0' in standby.agent.metrics.render()
        # every write came from the writer; the standby never even read Entra
        assert owners(emu, app.tenant_id, [a, b]) and terms(owners(emu, app.tenant_id, [a, b])) == [writer.name]
        assert not standby.sent
    finally:
        b.agent.stop()
        a.agent.stop()


def test_stopping_the_writer_hands_over_to_the_standby(
    emu: Emulator, app: Any, two_agents: tuple[Tagged, Tagged]
) -> None:
    a, b = two_agents
    a.grant("81.2.69.142", "alice")
    b.grant("81.2.69.143", "bob")
    assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})
    assert not b.sent

    a.agent.stop()
    stopped = time.monotonic()
    b.grant("81.2.69.144", "carol")  # stored and acknowledged while nobody writes
    assert wait_for(lambda: b.writer, TAKEOVER_TIMEOUT)
    measured("stop", stopped)
    wanted = {"81.2.69.142/32", "81.2.69.143/32", "81.2.69.144/32"}
    assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted)
    assert b.agent.service.revoke("staff", "81.2.69.142", user="alice") == 1
    assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted - {"81.2.69.142/32"})

    assert terms(owners(emu, app.tenant_id, [a, b])) == ["a", "b"]
    # the new writer read Entra before its first write
    graph = [r for r in emu.requests if r.client_request_id in b.sent and r.host.startswith("graph.")]
    assert graph[0].method == "GET" and "namedLocations" in graph[0].path, graph[0]
    assert ready(b.agent) == 200


def test_a_writer_that_loses_its_lease_session_stops_and_the_standby_takes_over(
    emu: Emulator, app: Any, pg_server: PgServer, two_agents: tuple[Tagged, Tagged]
) -> None:
    a, b = two_agents
    a.grant("81.2.69.142", "alice")
    assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"})

    lease = a.agent.lease
    assert isinstance(lease, PostgresWriterLease) and lease.backend_pid is not None
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        # the session dies as if the agent's host had crashed or been cut off
        admin.execute("SELECT pg_terminate_backend(%s)", (lease.backend_pid,))
    killed = time.monotonic()
    assert wait_for(lambda: b.writer, TAKEOVER_TIMEOUT)
    measured("lease session killed", killed)
    assert wait_for(lambda: not a.writer, TAKEOVER_TIMEOUT)
    status = a.agent.engine.status()
    assert status["role"] == "standby"
    assert status["acls"]["staff"]["locations"][0]["ranges_applied"] is None  # forgotten

    a.grant("81.2.69.145", "dave")  # the old writer still serves the API
    wanted = {"81.2.69.142/32", "81.2.69.145/32"}
    assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted)
    time.sleep(2.5)  # a few of the old writer's lease retries: the new writer keeps the lease
    assert b.writer and not a.writer
    assert terms(owners(emu, app.tenant_id, [a, b])) == ["a", "b"]


def test_kill_9_of_the_writer_process_hands_over(
    emu: Emulator, app: Any, pg_url: str, tmp_path: Path
) -> None:
    token = "multi-agent-token-0123456789abcdef"
    log = tmp_path / "agent.log"
    process, url = start_agent_process(emu, app, pg_url, tmp_path, token, log)
    b: Tagged | None = None
    try:
        def process_is_writer() -> bool:
            body = process_status(url, token)
            return body.get("writer") is True and body.get("ready") is True

        assert wait_for(process_is_writer, TAKEOVER_TIMEOUT), log.read_text()[-3000:]
        b = pg_agent(emu, app, pg_url, "b")
        b.agent.start()
        assert wait_for(lambda: b is not None and b.agent.engine.status()["role"] == "standby")
        response = grant_through(url, token, "81.2.69.142", "alice")
        assert response.status_code == 201, response.text
        b.grant("81.2.69.143", "bob")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})

        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        killed = time.monotonic()
        assert wait_for(lambda: b is not None and b.writer, TAKEOVER_TIMEOUT)
        measured("kill -9", killed)
        b.grant("81.2.69.146", "erin")
        wanted = {"81.2.69.142/32", "81.2.69.143/32", "81.2.69.146/32"}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted)
        assert terms(owners(emu, app.tenant_id, [b], other="process")) == ["process", "b"]
        assert "writer.acquired" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        if b is not None:
            b.agent.stop()


def test_postgres_leases_exclude_each_other_per_tenant(pg_url: str, pg_server: PgServer) -> None:
    first = PostgresWriterLease(pg_url, "tenant-one")
    second = PostgresWriterLease(pg_url, "TENANT-ONE")  # tenant ids are case-insensitive
    other = PostgresWriterLease(pg_url, "tenant-two")
    try:
        assert first.try_acquire() and first.held()
        assert first.try_acquire()  # idempotent while held
        assert not second.try_acquire() and not second.held()
        assert "advisory lock" in second.why_not()
        assert other.try_acquire()  # another tenant has its own writer
        first.release()
        assert not first.held()
        assert second.try_acquire() and second.held()
        # the session dies: held() says so at once, and the lock is free again
        with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (second.backend_pid,))
        assert not second.held()
        assert first.try_acquire()
    finally:
        for lease in (first, second, other):
            lease.release()


def test_lock_key_is_stable() -> None:
    # sha256("entragate-writer:" + tenant)[:8] as a signed big-endian bigint: never change it,
    # or agents of two releases would both write during a rolling upgrade
    assert writer_lock_key("contoso.onmicrosoft.com") == writer_lock_key(" Contoso.onmicrosoft.com ")
    assert writer_lock_key("00000000-0000-0000-0000-000000000001") == -3857055515969391775
    assert isinstance(lease_for("postgresql://u@h/db", "t"), PostgresWriterLease)
    lease = lease_for("sqlite:///var/lib/entragate/grants.db", "t")
    assert isinstance(lease, LocalWriterLease)
    assert lease.path == Path("/var/lib/entragate/grants.db.writer.lock")


def test_each_store_hands_out_the_lease_of_its_backend(tmp_path: Path, pg_url: str) -> None:
    sqlite_url = f"sqlite:///{tmp_path}/grants.db"
    for url, kind in ((sqlite_url, LocalWriterLease), (pg_url, PostgresWriterLease)):
        store = open_store(url)
        try:
            lease = store.writer_lease("Tenant-One")
            assert isinstance(lease, kind)
            assert lease.describe() == lease_for(url, "Tenant-One").describe()
        finally:
            store.close()


# ---------------------------------------------------------------------- SQLite


def test_local_lease_on_one_file_admits_one_writer(tmp_path: Path) -> None:
    path = lock_file_for(tmp_path / "grants.db")
    first, second = LocalWriterLease(path), LocalWriterLease(path)
    try:
        assert first.try_acquire() and first.held()
        assert not second.try_acquire() and not second.held()
        assert f"pid {os.getpid()}" in second.why_not()
        first.release()
        assert not first.held()
        assert second.try_acquire() and second.held()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_two_agents_on_one_sqlite_file_one_stands_by(emu: Emulator, app: Any, tmp_path: Path) -> None:
    config = make_config(emu, app, tmp_path, agent={"rate": 10.0})
    a = Tagged("a", Agent(config, parked_retry=0.5))
    a.agent.start()
    b: Tagged | None = None
    try:
        assert wait_for(lambda: a.writer and a.agent.engine.ready())
        b = Tagged("b", Agent(config, parked_retry=0.5))
        b.agent.start()
        status = b.agent.engine.status()
        assert wait_for(lambda: b is not None and "standby_reason" in b.agent.engine.status())
        status = b.agent.engine.status()
        assert status["role"] == "standby" and "lock file" in status["standby_reason"]
        assert b.agent.engine.ready()  # the standby serves the API from the shared file
        b.grant("81.2.69.142", "alice")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32"})
        # `sync --once` does not write behind a running agent's back
        with pytest.raises(AgentError) as excinfo:
            sync_once(config)
        assert excinfo.value.code == "writer_busy"
        assert sync_once(config, dry_run=True)["dry_run"] is True
        a.agent.stop()
        assert wait_for(lambda: b is not None and b.writer, TAKEOVER_TIMEOUT)
        b.grant("81.2.69.143", "bob")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})
        assert terms(owners(emu, app.tenant_id, [a, b])) == ["a", "b"]
        assert PLACEHOLDER not in (remote_ranges(emu, app.tenant_id) or set())
    finally:
        if b is not None:
            b.agent.stop()
        a.agent.stop()

