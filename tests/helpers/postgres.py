"""A real, throwaway PostgreSQL 15 server for tests (session scoped).

The fixtures are registered for every test by ``tests/conftest.py``.

``pg_server`` starts one server per test session (as the ``postgres`` user,
because initdb refuses root), listening on 127.0.0.1 at a free port with its
unix socket inside its own temporary directory, and stops it at the end.
``pg_url`` gives each test a fresh, empty database. When the server cannot be
started the tests FAIL (never skip): PostgreSQL support is part of the product.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.helpers.servers import free_port

PG_BIN = Path(os.environ.get("ENTRAGATE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def _as_postgres(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = list(argv)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class PgServer:
    host: str
    port: int
    socket_dir: Path
    data_dir: Path
    log_file: Path
    _counter: itertools.count[int]
    #: commits survive a crash (an outage test stops it with ``-m immediate``)
    durable: bool = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def start_pg_server(*, durable: bool = False) -> tuple[PgServer, tempfile.TemporaryDirectory[str]]:
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            pytest.fail(
                f"PostgreSQL binaries not found: {PG_BIN / tool} (set ENTRAGATE_TEST_PG_BIN)"
            )
    tmp = tempfile.TemporaryDirectory(prefix="entragate-pg-")
    base = Path(tmp.name)
    base.chmod(0o700)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    sock = base / "sock"
    log = base / "server.log"
    res = _as_postgres("mkdir", "-p", str(sock))
    if res.returncode != 0:
        pytest.fail(f"cannot create socket dir for PostgreSQL: {res.stderr}")
    res = _as_postgres(
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        PG_USER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    )
    if res.returncode != 0:
        pytest.fail(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port = free_port()
        res = _pg_ctl_start(data, log, port, sock, durable=durable)
        if res.returncode == 0:
            server = PgServer("127.0.0.1", port, sock, data, log, itertools.count(1), durable)
            try:
                with psycopg.connect(server.admin_url, connect_timeout=10) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                last_error = f"server started but refused a connection: {exc}\n{server.log()}"
                stop_pg_server(server)
                continue
            return server, tmp
        last_error = f"pg_ctl start failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n"
        with contextlib.suppress(OSError):
            last_error += log.read_text(errors="replace")[-4000:]
    tmp.cleanup()
    pytest.fail(f"PostgreSQL did not start: {last_error}")


def _pg_ctl_start(
    data: Path, log: Path, port: int, sock: Path, *, durable: bool
) -> subprocess.CompletedProcess[str]:
    # The shared server trades durability for speed; a server a test crashes on purpose
    # keeps PostgreSQL's defaults, or the crash would take recent commits with it.
    fast = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} {fast}-c max_connections=200"
    return _as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"
    )


def start_again(server: PgServer) -> None:
    """Start a server stopped with :func:`stop_pg_server` on its old port and data."""
    res = _pg_ctl_start(
        server.data_dir, server.log_file, server.port, server.socket_dir, durable=server.durable
    )
    if res.returncode != 0:
        pytest.fail(f"PostgreSQL did not start again ({res.returncode}):\n{res.stderr}\n{server.log()}")


def stop_pg_server(server: PgServer) -> None:
    _as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"
    )


@contextlib.contextmanager
def running_pg_server(*, durable: bool = False) -> Iterator[PgServer]:
    """A server started for the block and removed after it."""
    server, tmp = start_pg_server(durable=durable)
    try:
        yield server
    finally:
        stop_pg_server(server)
        shutil.rmtree(tmp.name, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp.cleanup()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with running_pg_server() as server:
        yield server


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A durable server of the test's own (one it may crash and start again)."""
    with running_pg_server(durable=True) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    try:
        yield url
    finally:
        with contextlib.suppress(psycopg.Error):
            pg_server.drop_database(url)
