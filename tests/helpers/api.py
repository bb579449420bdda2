"""The agent's HTTP API on a real socket over a real SQLite store, and raw HTTP clients.

Fixtures (registered by tests/conftest.py): ``api``, a running :class:`Harness`;
``log_stream``, the log events as JSON lines.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from entragate.api import ApiServer
from entragate.config import AclConfig, AgentConfig, Config
from entragate.grants import GrantStore, open_store
from entragate.logs import configure_logging
from entragate.metrics import Metrics
from entragate.service import GrantService

TOKEN = "t0ken-" + "x" * 40
V4 = "81.2.69.142"
V6 = "2a00:1450:4001:80b::200e"
GRANT = {"acl": "staff", "ip": V4, "user": "alice", "ttl": 60}


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.DEBUG, stream=stream)
    yield stream


def make_api_config(tmp_path: Path, **acl_kw: Any) -> Config:
    return Config(
        acls={"staff": AclConfig("staff", "entragate staff", **acl_kw)},
        agent=AgentConfig(
            listen="127.0.0.1:0", store=f"sqlite:///{tmp_path}/grants.db", max_ttl=86400
        ),
    )


class Harness:
    """An :class:`ApiServer` on a free loopback port; ``server_kw`` go to the server."""

    def __init__(
        self, tmp_path: Path, *, config: Config | None = None, token: str = TOKEN,
        server_kw: dict[str, Any] | None = None, **acl_kw: Any,
    ) -> None:
        self.config = config or make_api_config(tmp_path, **acl_kw)
        self.store: GrantStore = open_store(self.config.agent.store)
        self.service = GrantService(self.config, self.store)
        self.metrics = Metrics()
        self.is_ready = False
        self.status_calls = 0
        self.server = ApiServer(
            self.config,
            self.service,
            token=token,
            status=self.status,
            ready=lambda: self.is_ready,
            metrics=self.metrics,
            port=0,
            **(server_kw or {}),
        )

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return {"writer": True, "acls": {"staff": {"grants": len(self.store.active("staff"))}}}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            response = conn.getresponse()
            payload = response.read()
            headers_out = {k.lower(): v for k, v in response.getheaders()}
            ctype = headers_out.get("content-type", "")
            parsed = json.loads(payload) if ctype.startswith("application/json") else payload
            return response.status, headers_out, parsed
        finally:
            conn.close()

    def snapshot(self) -> tuple[list[Any], int]:
        return [g.to_json() for g in self.store.active()], self.store.change_seq()

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@contextmanager
def running(tmp_path: Path, **kw: Any) -> Iterator[Harness]:
    harness = Harness(tmp_path, **kw)
    harness.server.start()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    with captured_logs() as stream:
        yield stream


@pytest.fixture
def api(tmp_path: Path, log_stream: io.StringIO) -> Iterator[Harness]:
    with running(tmp_path) as harness:
        yield harness


def raw_exchange(port: int, request: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on one connection; read until the server closes it (or ``wait``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<still open>"
    return received


def raw_post(body: bytes, *, path: str = "/v1/grants", extra: bytes = b"") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nConnection: close\r\n"
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def error_of(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body.split(b"\r\n", 1)[0].strip() or b"null")


def tls_files(directory: Path, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate chain, private key 0600) for the API's TLS."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert(*names)
    paths = directory / "tls-ca.pem", directory / "tls-cert.pem", directory / "tls-key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    paths[2].touch(0o600)
    issued.private_key_pem.write_to_path(str(paths[2]))
    return paths
