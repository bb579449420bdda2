"""A hung writer is fenced (docs/design.md#lease): the PostgreSQL lease's heartbeat.

A paused process (SIGSTOP: a frozen VM, a stuck agent) keeps its PostgreSQL session
and its advisory lock. The standby sees the lease's heartbeat go stale, ends that
session and takes over; the paused writer, resumed, finds its term gone and steps
down before it writes. Real processes, a real PostgreSQL, the emulated tenant;
waits are generous safety limits and the measured takeovers are printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from entragate.emulator import Emulator
from entragate.grants.postgres_lease import PostgresWriterLease
from tests.helpers.agents import (
    TAKEOVER_TIMEOUT,
    grant_through,
    measured,
    owners,
    pg_agent,
    process_status,
    start_agent_process,
    terms,
)
from tests.helpers.sync import remote_ranges, wait_for

#: the lease timeout of these tests (the acceptance run uses the default, 10)
LEASE_TIMEOUT = float(os.environ.get("ENTRAGATE_TEST_LEASE_TIMEOUT", "4"))

HOLDER = """
import sys
from entragate.grants.postgres_lease import PostgresWriterLease
lease = PostgresWriterLease(sys.argv[1], "tenant-fence", timeout=float(sys.argv[2]))
assert lease.try_acquire()
print("held", lease.term, lease.backend_pid, flush=True)
for _line in sys.stdin:
    print("held" if lease.held() else "lost", flush=True)
"""


def sessions(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'entragate-writer'")
        return {int(r[0]) for r in rows.fetchall()}


def test_a_paused_holder_is_fenced_and_steps_down_when_it_resumes(pg_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, str(LEASE_TIMEOUT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": "src"},
    )
    standby = PostgresWriterLease(pg_url, "tenant-fence", timeout=LEASE_TIMEOUT)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        word, term, pid = holder.stdout.readline().split()
        assert (word, term) == ("held", "1")

        # A live holder renews its heartbeat: longer than the timeout, nobody fences it.
        watched_until = time.monotonic() + LEASE_TIMEOUT + 1.5
        while time.monotonic() < watched_until:
            assert not standby.try_acquire(), "a standby fenced a holder that was renewing"
            time.sleep(0.5)
        assert int(pid) in sessions(pg_url)

        os.kill(holder.pid, signal.SIGSTOP)
        paused = time.monotonic()
        assert wait_for(standby.try_acquire, TAKEOVER_TIMEOUT + LEASE_TIMEOUT)
        measured(f"SIGSTOP of a lease holder (lease_timeout {LEASE_TIMEOUT:g})", paused)
        assert standby.term == 2
        assert standby.fenced is not None and f"(pid {pid}) was ended" in standby.fenced
        assert int(pid) not in sessions(pg_url), "the paused holder's session still lives"

        os.kill(holder.pid, signal.SIGCONT)
        holder.stdin.write("check\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "lost"
        assert standby.held()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait(30)
        standby.release()


def test_sigstop_of_the_writer_process_hands_over_and_it_writes_nothing_after(
    emu: Emulator, app: Any, pg_url: str, tmp_path: Path
) -> None:
    token = "fencing-agent-token-0123456789abcdef"
    log = tmp_path / "agent.log"
    process, url = start_agent_process(
        emu, app, pg_url, tmp_path, token, log, agent_lines=f"lease_timeout = {LEASE_TIMEOUT:g}"
    )
    b = pg_agent(emu, app, pg_url, "b", lease_timeout=LEASE_TIMEOUT)
    try:
        assert wait_for(lambda: process_status(url, token).get("ready") is True, TAKEOVER_TIMEOUT)
        b.agent.start()
        assert wait_for(lambda: b.agent.engine.status()["role"] == "standby")
        answer = grant_through(url, token, "81.2.69.142", "alice")
        assert answer.status_code == 201, answer.text
        b.grant("81.2.69.143", "bob")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {"81.2.69.142/32", "81.2.69.143/32"})

        os.kill(process.pid, signal.SIGSTOP)
        paused = time.monotonic()
        b.grant("81.2.69.146", "erin")  # stored now, written by whoever writes next
        wanted = {"81.2.69.142/32", "81.2.69.143/32", "81.2.69.146/32"}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted, TAKEOVER_TIMEOUT + LEASE_TIMEOUT)
        measured(f"SIGSTOP of the writer, to its first write (lease_timeout {LEASE_TIMEOUT:g})", paused)
        assert b.writer

        os.kill(process.pid, signal.SIGCONT)
        assert wait_for(lambda: process_status(url, token).get("writer") is False, TAKEOVER_TIMEOUT)
        answer = grant_through(url, token, "81.2.69.150", "frank")  # the resumed one: a standby
        assert answer.status_code == 201, answer.text
        wanted |= {"81.2.69.150/32"}
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == wanted)
        time.sleep(2.0)  # the resumed agent's loop has run: it must still not have written
        assert terms(owners(emu, app.tenant_id, [b], other="process")) == ["process", "b"]
        assert remote_ranges(emu, app.tenant_id) == wanted
        assert "writer.lost" in log.read_text()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait(30)
        b.agent.stop()
