"""Private by default: the SQLite store, its WAL, SHM and lock file are the owner's alone.

Real files, real modes (``os.stat``). The store is created in a child process whose
umask is 0, so a mode that merely relied on the usual umask (022) would show up here
as 0644 or 0666.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from entragate.emulator import AppRegistration, Emulator
from entragate.grants.sqlite import SQLiteGrantStore, store_paths
from entragate.logs import configure_logging
from entragate.private_files import config_file_exposure, create_private_file, loose_modes
from tests.helpers.process import healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.DEBUG, stream=stream)
    yield stream


def events(stream: io.StringIO, name: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in lines if e.get("event") == name]


def test_a_new_store_is_private_from_creation_even_with_umask_0(tmp_path: Path) -> None:
    database = tmp_path / "state" / "grants.db"
    script = textwrap.dedent(
        f"""
        import os, sys
        from datetime import UTC, datetime, timedelta
        os.umask(0)
        from entragate.grants.sqlite import SQLiteGrantStore
        store = SQLiteGrantStore({str(database)!r})
        store.add("staff", "alice", "81.2.69.142", datetime.now(UTC) + timedelta(hours=1))
        lease = store.writer_lease("tenant")
        assert lease.try_acquire()
        # the WAL and SHM exist while the connection is open: report their modes now
        for path in sorted(os.listdir({str(database.parent)!r})):
            full = os.path.join({str(database.parent)!r}, path)
            print(path, oct(os.stat(full).st_mode & 0o777))
        print("dir", oct(os.stat({str(database.parent)!r}).st_mode & 0o777))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    modes = dict(line.split() for line in out.stdout.splitlines())
    assert modes == {
        "grants.db": "0o600",
        "grants.db-wal": "0o600",
        "grants.db-shm": "0o600",
        "grants.db.writer.lock": "0o600",
        "dir": "0o700",
    }
    assert "store_not_private" not in out.stderr


def test_a_private_store_reopens_without_a_warning(tmp_path: Path, log_stream: io.StringIO) -> None:
    database = tmp_path / "grants.db"
    SQLiteGrantStore(database).close()
    store = SQLiteGrantStore(database)
    try:
        assert {mode(p) for p in store_paths(database)[1:] if p.exists()} == {0o600}
        assert loose_modes(store_paths(database)) == []
    finally:
        store.close()
    assert events(log_stream, "store_not_private") == []


def test_an_existing_store_with_looser_modes_is_warned_about(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    state = tmp_path / "state"
    database = state / "grants.db"
    SQLiteGrantStore(database).close()
    os.chmod(database, 0o644)
    os.chmod(state, 0o755)
    SQLiteGrantStore(database).close()
    warned = {e["path"]: e for e in events(log_stream, "store_not_private")}
    # SQLite gives the WAL and SHM the database's (loose) mode: they are named too
    wal, shm = (str(database) + "-wal", str(database) + "-shm")
    assert set(warned) == {str(state), str(database), wal, shm}
    assert warned[str(database)]["mode"] == "0644"
    assert f"chmod 600 {database}" in warned[str(database)]["message"]
    assert f"chmod 700 {state}" in warned[str(state)]["message"]
    assert mode(database) == 0o644  # reported, never changed behind the operator's back


def test_create_private_file_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert create_private_file(tmp_path / "a")
        assert not create_private_file(tmp_path / "a")  # exists: left as it is
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == 0o600


def test_a_config_file_holding_a_secret_must_not_be_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "entragate.toml"
    path.write_text('tenant_id = "t"\nclient_secret = "s3cret-value"\n[agent]\napi_token = "tok"\n')
    path.chmod(0o600)
    assert config_file_exposure(path) is None
    path.chmod(0o640)  # the group may read it: the operator's choice
    assert config_file_exposure(path) is None
    path.chmod(0o644)
    line = config_file_exposure(path)
    assert line is not None
    assert "client_secret, agent.api_token" in line and "0644" in line
    assert f"chmod 600 {path}" in line and "s3cret-value" not in line
    path.write_text('tenant_id = "t"\nclient_secret_file = "/etc/entragate/secret"\n')
    assert config_file_exposure(path) is None  # nothing secret in the file itself


def test_the_agent_warns_about_a_config_file_others_can_read(
    emu: Emulator, app: AppRegistration, tmp_path: Path
) -> None:
    port = free_port()
    config = write_config(emu, app, tmp_path, port)
    config.chmod(0o644)
    log = tmp_path / "agent.log"
    agent = start(config, log)
    try:
        assert wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), timeout=30), log.read_text()
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
    warned = [json.loads(line) for line in log.read_text().splitlines() if "config_not_private" in line]
    assert len(warned) == 1 and warned[0]["path"] == str(config)
    assert f"chmod 600 {config}" in warned[0]["message"]
