"""The agent's HTTP API on a real socket, over a real SQLite store."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from entragate.api import (
    MAX_BODY,
    ApiServer,
    default_token_path,
    find_api_token,
    load_or_create_api_token,
)
from entragate.config import AclConfig, AgentConfig, Config, Secret
from entragate.grants import GrantStore, open_store, parse_rfc3339, utcnow
from entragate.grants.sqlite import SQLiteGrantStore
from entragate.logs import configure_logging
from entragate.metrics import Metrics
from entragate.service import GrantService

TOKEN = "t0ken-" + "x" * 40
V4 = "81.2.69.142"
V6 = "2a00:1450:4001:80b::200e"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.DEBUG, stream=stream)
    yield stream


def make_config(tmp_path: Path, **acl_kw: Any) -> Config:
    return Config(
        acls={"staff": AclConfig("staff", "entragate staff", **acl_kw)},
        agent=AgentConfig(
            listen="127.0.0.1:0", store=f"sqlite:///{tmp_path}/grants.db", max_ttl=86400
        ),
    )


class Harness:
    def __init__(self, tmp_path: Path, **acl_kw: Any) -> None:
        self.config = make_config(tmp_path, **acl_kw)
        self.store: GrantStore = open_store(self.config.agent.store)
        self.service = GrantService(self.config, self.store)
        self.metrics = Metrics()
        self.is_ready = False
        self.status_calls = 0
        self.server = ApiServer(
            self.config,
            self.service,
            token=TOKEN,
            status=self.status,
            ready=lambda: self.is_ready,
            metrics=self.metrics,
            port=0,
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


@pytest.fixture
def api(tmp_path: Path, log_stream: io.StringIO) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.server.start()
    yield harness
    harness.server.stop()
    harness.store.close()


# --------------------------------------------------------------------------- happy paths


def test_grant_list_revoke_flush(api: Harness) -> None:
    status, _, body = api.request(
        "POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "alice", "ttl": 28800, "note": "n"}
    )
    assert status == 201
    assert set(body) == {"acl", "user", "cidr", "created_at", "expires_at", "source", "note"}
    assert body["cidr"] == "81.2.69.142/32" and body["source"] == "api" and body["note"] == "n"
    expires = parse_rfc3339(body["expires_at"]) - parse_rfc3339(body["created_at"])
    assert expires == timedelta(hours=8)
    # durable: the store (a separate connection) already holds it when 201 arrives
    other = open_store(api.config.agent.store)
    try:
        assert [g.cidr for g in other.active()] == ["81.2.69.142/32"]
    finally:
        other.close()

    when = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    status, _, body = api.request(
        "POST",
        "/v1/grants",
        {
            "acl": "staff",
            "ip": V6,
            "user": "bob",
            "expires_at": when.isoformat().replace("+00:00", "Z"),
        },
    )
    assert status == 201 and body["cidr"] == "2a00:1450:4001:80b::200e/128"
    assert parse_rfc3339(body["expires_at"]) == when

    status, _, body = api.request("GET", "/v1/grants?acl=staff")
    assert status == 200 and len(body["grants"]) == 2
    status, _, body = api.request("GET", "/v1/grants")
    assert status == 200 and len(body["grants"]) == 2

    status, _, body = api.request(
        "DELETE", "/v1/grants", {"acl": "staff", "ip": V4, "user": "alice"}
    )
    assert (status, body) == (200, {"ended": 1})
    status, _, body = api.request("DELETE", "/v1/grants", {"acl": "staff", "ip": V4})
    assert (status, body) == (200, {"ended": 0})

    status, _, body = api.request("POST", "/v1/acls/staff/flush")
    assert (status, body) == (200, {"ended": 1})
    assert api.store.active() == []


def test_grant_again_renews_through_the_api(api: Harness) -> None:
    first = api.request("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60})[2]
    second = api.request("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": "2h"})
    assert second[0] == 201
    assert second[2]["created_at"] == first["created_at"]
    assert len(api.store.active()) == 1


def test_status_health_ready_metrics_openapi(api: Harness) -> None:
    status, _, body = api.request("GET", "/v1/status")
    assert status == 200 and body["writer"] is True and api.status_calls == 1

    assert api.request("GET", "/healthz", token=None)[:3:2] == (200, {"ok": True})

    assert api.request("GET", "/readyz")[0] == 503
    api.is_ready = True
    assert api.request("GET", "/readyz")[:3:2] == (200, {"ready": True})
    assert api.request("GET", "/readyz", token=None)[0] == 401

    api.service.grant("staff", V4, "alice", ttl=60)
    status, headers, text = api.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b'entragate_grants_active{acl="staff"} 1.0' in text
    assert api.request("GET", "/metrics", token=None)[0] == 401

    status, _, doc = api.request("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/grants",
        "/v1/acls/{acl}/flush",
        "/v1/status",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
    }
    assert set(doc["paths"]["/v1/grants"]) == {"get", "post", "delete"}
    assert "Error" in doc["components"]["schemas"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"acl": "staff", "ip": "not-an-ip", "user": "a", "ttl": 60}, 422, "invalid_ip"),
        ({"acl": "staff", "ip": "0.0.0.0/0", "user": "a", "ttl": 60}, 422, "prefix_too_short"),
        ({"acl": "staff", "ip": "81.2.69.142/0", "user": "a", "ttl": 60}, 422, "host_bits_set"),
        ({"acl": "staff", "ip": "10.0.0.5", "user": "a", "ttl": 60}, 422, "forbidden_range"),
        ({"acl": "staff", "ip": "fe80::1%eth0", "user": "a", "ttl": 60}, 422, "zone_id"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": -1}, 422, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 0}, 422, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 1.5}, 422, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": True}, 422, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 86401}, 422, "ttl_too_long"),
        ({"acl": "staff", "ip": V4, "user": "a"}, 422, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "expires_at": "tomorrow"}, 422, "invalid_ttl"),
        (
            {"acl": "staff", "ip": V4, "user": "a", "expires_at": "2099-01-01T00:00:00"},
            422,
            "invalid_ttl",
        ),
        ({"acl": "nope", "ip": V4, "user": "a", "ttl": 60}, 422, "unknown_acl"),
        ({"acl": "staff", "user": "a", "ttl": 60}, 400, "invalid_request"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 60, "tll": 5}, 400, "invalid_request"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 60, "note": 5}, 400, "invalid_request"),
        (["staff", V4], 400, "invalid_request"),
    ],
)
def test_bad_grant_is_refused_and_stores_nothing(
    api: Harness, body: Any, status: int, code: str
) -> None:
    api.service.grant("staff", "81.2.69.160", "carol", ttl=60)
    before = api.snapshot()
    got_status, _, got = api.request("POST", "/v1/grants", body)
    assert (got_status, got["error"]["code"]) == (status, code)
    assert got["error"]["message"]
    assert api.snapshot() == before


def test_protocol_refusals_change_nothing(api: Harness) -> None:
    api.service.grant("staff", "81.2.69.160", "carol", ttl=60)
    before = api.snapshot()
    good = {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}

    status, _, body = api.request(
        "POST",
        "/v1/grants",
        raw=b'{"acl": "staff", "ip": ',
        headers={"Content-Type": "application/json"},
    )
    assert (status, body["error"]["code"]) == (400, "malformed_json")

    status, headers, body = api.request("POST", "/v1/grants", good, token=None)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert headers["www-authenticate"].startswith("Bearer")

    status, _, body = api.request("POST", "/v1/grants", good, token="wrong")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, _, body = api.request(
        "POST", "/v1/grants", good, token=None, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert status == 401

    status, _, body = api.request(
        "POST", "/v1/grants", raw=json.dumps(good).encode(), headers={"Content-Type": "text/plain"}
    )
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")

    status, _, body = api.request("GET", "/v1/grants?acl=nope")
    assert (status, body["error"]["code"]) == (422, "unknown_acl")
    status, _, body = api.request("POST", "/v1/acls/nope/flush")
    assert (status, body["error"]["code"]) == (404, "unknown_acl")
    status, _, body = api.request("GET", "/v2/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, headers, body = api.request("PUT", "/v1/grants", good)
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert "POST" in headers["allow"]
    status, _, body = api.request("DELETE", "/v1/grants", {"acl": "staff", "ip": "garbage"})
    assert (status, body["error"]["code"]) == (422, "invalid_ip")

    assert api.snapshot() == before


def test_oversized_body_is_refused_without_reading_it(api: Harness) -> None:
    before = api.snapshot()
    huge = json.dumps({"acl": "staff", "ip": V4, "user": "a", "ttl": 60, "note": "x" * MAX_BODY})
    status, headers, body = api.request(
        "POST", "/v1/grants", raw=huge.encode(), headers={"Content-Type": "application/json"}
    )
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert headers.get("connection") == "close"

    # a declared length far beyond the cap is answered at once, before any body is sent
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10)
    try:
        conn.putrequest("POST", "/v1/grants")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 * 1024 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        response.read()
    finally:
        conn.close()
    assert api.snapshot() == before


def test_full_acl_answers_entra007(tmp_path: Path, log_stream: io.StringIO) -> None:
    harness = Harness(tmp_path, max_ranges=1)
    with harness.server:
        assert (
            harness.request(
                "POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}
            )[0]
            == 201
        )
        before = harness.snapshot()
        status, _, body = harness.request(
            "POST", "/v1/grants", {"acl": "staff", "ip": V6, "user": "a", "ttl": 60}
        )
        assert (status, body["error"]["code"]) == (409, "ENTRA007")
        assert harness.snapshot() == before
    harness.store.close()


def test_store_unavailable_answers_503(
    tmp_path: Path, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setattr(SQLiteGrantStore, "busy_timeout_ms", 200)
    harness = Harness(tmp_path)
    blocker = sqlite3.connect(tmp_path / "grants.db", isolation_level=None)
    try:
        with harness.server:
            blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
            status, headers, body = harness.request(
                "POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}
            )
            assert (status, body["error"]["code"]) == (503, "store_unavailable")
            assert headers["retry-after"]
            blocker.execute("ROLLBACK")
            status, _, _ = harness.request(
                "POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}
            )
            assert status == 201
    finally:
        blocker.close()
        harness.store.close()


# --------------------------------------------------------------------------- secrets and logs


def test_token_never_in_responses_or_logs(api: Harness, log_stream: io.StringIO) -> None:
    bodies: list[str] = []
    for method, path, body, token in [
        ("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}, TOKEN),
        ("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60}, TOKEN + "x"),
        ("GET", "/v1/status", None, TOKEN),
        ("GET", "/v1/openapi.json", None, TOKEN),
        ("GET", "/metrics", None, TOKEN),
        ("GET", f"/v1/grants?token={TOKEN}", None, None),
    ]:
        status, headers, payload = api.request(method, path, body, token=token)
        bodies.append(payload.decode() if isinstance(payload, bytes) else json.dumps(payload))
        bodies.append(json.dumps(headers))
    assert not any(TOKEN in b for b in bodies)
    log_text = log_stream.getvalue()
    assert "api.request" in log_text
    assert TOKEN not in log_text
    assert "Bearer" not in log_text and "uthorization" not in log_text
    access = [json.loads(line) for line in log_text.splitlines() if '"api.request"' in line]
    assert {"method", "path", "status", "duration_ms"} <= set(access[0])
    assert all("?" not in e["path"] for e in access)


def test_refuses_non_loopback_unless_configured(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = open_store(config.agent.store)
    try:
        service = GrantService(config, store)
        kw: dict[str, Any] = {
            "token": TOKEN,
            "status": dict,
            "ready": lambda: True,
            "metrics": Metrics(),
            "port": 0,
        }
        with pytest.raises(ValueError, match="non-loopback"):
            ApiServer(config, service, host="0.0.0.0", **kw)
        exposed = replace(config, agent=replace(config.agent, listen="0.0.0.0:0"))
        server = ApiServer(exposed, service, **kw)  # explicitly configured: allowed
        assert server.host == "0.0.0.0"
        with pytest.raises(ValueError):
            ApiServer(config, service, **{**kw, "token": ""})
    finally:
        store.close()


def test_ipv6_loopback(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = open_store(config.agent.store)
    server = ApiServer(
        config,
        GrantService(config, store),
        token=TOKEN,
        status=dict,
        ready=lambda: True,
        metrics=Metrics(),
        host="::1",
        port=0,
    )
    try:
        server.start()
    except OSError:
        store.close()
        # platform: a kernel or container without IPv6 has no ::1 to bind
        pytest.skip("no IPv6 loopback (::1) on this host")
    try:
        assert server.url.startswith("http://[::1]:")
        conn = http.client.HTTPConnection("::1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()
        store.close()


# --------------------------------------------------------------------------- token file


def test_token_sources(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert default_token_path(config) == tmp_path / "api-token"
    assert find_api_token(config) is None
    token = load_or_create_api_token(config)
    path = tmp_path / "api-token"
    assert len(token) >= 40 and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_api_token(config) == token  # stable across restarts
    assert find_api_token(config) == token

    explicit = replace(config, agent=replace(config.agent, api_token=Secret(" given ")))
    assert load_or_create_api_token(explicit) == "given"

    other = tmp_path / "etc" / "token"
    other.parent.mkdir()
    other.write_text("from-file\n")
    other.chmod(0o600)
    from_file = replace(config, agent=replace(config.agent, api_token_file=other))
    assert load_or_create_api_token(from_file) == "from-file"

    pg = replace(config, agent=replace(config.agent, store="postgresql://u:p@db/entragate"))
    assert default_token_path(pg) == Path("/var/lib/entragate/api-token")


# --------------------------------------------------------------------------- metrics


def test_metrics_series() -> None:
    m = Metrics()
    m.graph_response("patch", 204)
    m.graph_response("PATCH", 429)
    m.throttled()
    m.set_grants("staff", 3)
    m.set_ranges("staff", "entragate staff", 4)
    m.set_error("staff", "entragate staff", "ENTRA005")
    m.set_error("staff", "entragate staff", "ENTRA002")
    m.observe_lag(1.5)
    text = m.render().decode()
    assert 'entragate_graph_requests_total{method="PATCH",status="204"} 1.0' in text
    assert "entragate_throttled_total 1.0" in text
    assert 'entragate_location_ranges{acl="staff",location="entragate staff"} 4.0' in text
    assert 'code="ENTRA002",location="entragate staff"} 1.0' in text and "ENTRA005" not in text
    assert "entragate_grant_applied_lag_seconds_count 1.0" in text
    m.set_error("staff", "entragate staff", None)
    assert "ENTRA002" not in m.render().decode()
    assert Metrics().render() != text.encode()  # registries are independent


# --------------------------------------------------------------------------- hardening


def raw_exchange(port: int, request: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes on one connection; read until the server closes it (or ``wait``)."""
    import socket

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


TRICK_TARGETS = (
    "//v1/grants",
    "/v1/grants/",
    "/v1/grants?acl=staff",
    "/v1/grants?/healthz",
    "/healthz/../v1/grants",
    "/v1/grants#/healthz",
    "/%2Fv1/grants",
    "/v1/status;/healthz",
    "/v1/acls/staff/flush",
    "/metrics",
    "/readyz",
    "/v1/openapi.json",
    "/HEALTHZ",
    "/healthz/",
    "/healthz%00",
    "//healthz/../v1/grants",
    "http://x/v1/grants",
    "*",
)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT"])
def test_no_path_or_method_trick_skips_the_token(api: Harness, method: str) -> None:
    for target in TRICK_TARGETS:
        request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        response = raw_exchange(api.server.port, request.encode())
        assert response.startswith(b"HTTP/1.1 401 "), (method, target, response[:200])
        if method != "HEAD":
            assert error_of(response)[1]["error"]["code"] == "unauthorized"


def test_healthz_alone_is_open_including_head_and_query(api: Harness) -> None:
    assert api.request("GET", "/healthz?probe=1", token=None)[0] == 200
    response = raw_exchange(
        api.server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\n")


def test_token_compare_uses_the_raw_header_bytes(tmp_path: Path, log_stream: io.StringIO) -> None:
    harness = Harness(tmp_path)
    token = "jeton-été-" + "z" * 20
    harness.server = ApiServer(
        harness.config,
        harness.service,
        token=token,
        status=harness.status,
        ready=lambda: True,
        metrics=harness.metrics,
        port=0,
    )
    with harness.server:
        request = (
            b"GET /v1/grants HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + b"Authorization: Bearer "
            + token.encode("utf-8")
            + b"\r\n\r\n"
        )
        assert raw_exchange(harness.server.port, request).startswith(b"HTTP/1.1 200 ")
        wrong = request.replace("été".encode(), b"ete")
        assert raw_exchange(harness.server.port, wrong).startswith(b"HTTP/1.1 401 ")
    harness.store.close()


@pytest.mark.parametrize(
    ("path", "framing"),
    [
        ("/healthz", b"Content-Length: 34\r\n"),
        ("/v1/status", b"Content-Length: 34\r\n"),
        ("/v1/status", b"Transfer-Encoding: chunked\r\n"),
        ("/v1/grants", b"Transfer-Encoding: chunked\r\n"),
        ("/v2/nothing", b"Content-Length: 34\r\n"),
    ],
)
def test_an_unread_body_is_never_parsed_as_the_next_request(
    api: Harness, path: str, framing: bytes
) -> None:
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert len(smuggled) == 34
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + framing
        + b"\r\n"
        + smuggled
    )
    response = raw_exchange(api.server.port, request)
    assert response.count(b"HTTP/1.1 ") == 1, response
    assert b"\r\nConnection: close\r\n" in response


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"Content-Length: \xb2\r\n", 400),  # a latin-1 superscript two: isdigit() but not ASCII
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: +60\r\n", 400),
        (b"Content-Length: 0x40\r\n", 400),
        (b"Content-Length: 99999999999999999999999999\r\n", 413),
        (b"Content-Length: 2\r\nContent-Length: 60\r\n", 400),
        (b"Content-Length: 60\r\nContent-Length: 60\r\n", 400),
        (b"Content-Length: 60\r\nTransfer-Encoding: chunked\r\n", 411),
    ],
)
def test_bad_content_length_is_refused_cleanly(api: Harness, header: bytes, status: int) -> None:
    before = api.snapshot()
    good = json.dumps({"acl": "staff", "ip": V4, "user": "a", "ttl": 60}).encode()
    request = (
        f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + header
        + b"\r\n"
        + good
    )
    response = raw_exchange(api.server.port, request)
    got_status, body = error_of(response)
    assert got_status == status, response
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert b"\r\nConnection: close\r\n" in response
    assert api.snapshot() == before


def test_a_short_body_is_refused(api: Harness) -> None:
    before = api.snapshot()
    request = (
        f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        + b'{"acl": "staff"}'
    )
    import socket

    with socket.create_connection(("127.0.0.1", api.server.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the client gives up sending
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status, body = error_of(response)
    assert (status, body["error"]["code"]) == (400, "incomplete_body")
    assert api.snapshot() == before


GRANT = {"acl": "staff", "ip": V4, "user": "alice", "ttl": 60}


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        # two values for one field: which one a parser keeps differs; refuse both
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":60,"ip":"81.2.69.143"}', 400,
         "invalid_request"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":NaN}', 400, "malformed_json"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":Infinity}', 400, "malformed_json"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":-Infinity}', 400, "malformed_json"),
        (b"[" * 50000, 400, "malformed_json"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"\\ud800","ttl":60}', 400, "malformed_json"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":60,"note":"\\udc00"}', 400,
         "malformed_json"),
        (b'\xef\xbb\xbf{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":60}', 400,
         "malformed_json"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"\xff","ttl":60}', 400, "malformed_json"),
        (b'"just a string"', 400, "invalid_request"),
        (b"null", 400, "invalid_request"),
        (b"", 400, "malformed_json"),
        (json.dumps({**GRANT, "ttl": "9" * 5000}).encode(), 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": "9" * 5000 + "h"}).encode(), 422, "invalid_ttl"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":1e400}', 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": 10**4000}).encode(), 422, "ttl_too_long"),
        (json.dumps({**GRANT, "ttl": -(10**4000)}).encode(), 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": 1e-9}).encode(), 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": False}).encode(), 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": [60]}).encode(), 422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "9999-12-31T23:59:59-23:59"}).encode(),
         422, "ttl_too_long"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "0001-01-01T00:00:00+23:59"}).encode(),
         422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "2001-01-01T00:00:00Z"}).encode(),
         422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "2099-01-01T00:00:00"}).encode(),
         422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": 4102444800}).encode(), 422,
         "invalid_ttl"),
        (json.dumps({**GRANT, "user": "al\u202eice"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": "al\u200bice"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": "alice\nbob"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": ["alice"]}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "ip": 1367492750}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142\u0000"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "\uff18\uff11.2.69.142"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142/\u00b2"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142/\u0663\u0662"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "acl": ["staff"]}).encode(), 422, "invalid_acl"),
        (json.dumps({**GRANT, "note": "\x1b[2J\x1b[31mhi"}).encode(), 400, "invalid_request"),
        (json.dumps({**GRANT, "note": "x" * 1025}).encode(), 400, "invalid_request"),
        (json.dumps({**GRANT, "source": "sso\x1b[31m"}).encode(), 400, "invalid_request"),
        (json.dumps({**GRANT, "source": ""}).encode(), 201, None),
    ],
)
def test_hostile_bodies_get_4xx_and_store_nothing(
    api: Harness, raw: bytes, status: int, code: str | None
) -> None:
    api.service.grant("staff", "81.2.69.160", "carol", ttl=60)
    before = api.snapshot()
    got_status, body = error_of(raw_exchange(api.server.port, raw_post(raw)))
    assert got_status == status, body
    if code is None:
        return
    assert body == {"error": {"code": code, "message": body["error"]["message"]}}
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    assert api.snapshot() == before


def test_ipv4_mapped_addresses_are_granted_as_the_ipv4_address(api: Harness) -> None:
    # Entra sees an IPv4 client's IPv4 source address; ::ffff:a.b.c.d is how a dual-stack
    # socket reports that same client. Grant the IPv4 form, exactly that address, no wider.
    status, _, body = api.request(
        "POST", "/v1/grants", {"acl": "staff", "ip": "::ffff:81.2.69.142", "user": "a", "ttl": 60}
    )
    assert (status, body["cidr"]) == (201, "81.2.69.142/32")
    status, _, body = api.request(
        "POST",
        "/v1/grants",
        {"acl": "staff", "ip": "::FFFF:5102:4500/120", "user": "a", "ttl": 60},
    )
    assert (status, body["cidr"]) == (201, "81.2.69.0/24")
    # the IPv4 policy applies to the embedded address
    status, _, body = api.request(
        "POST", "/v1/grants", {"acl": "staff", "ip": "::ffff:10.0.0.1", "user": "a", "ttl": 60}
    )
    assert (status, body["error"]["code"]) == (422, "forbidden_range")
    status, _, body = api.request(
        "POST", "/v1/grants", {"acl": "staff", "ip": "::ffff:0:0/95", "user": "a", "ttl": 60}
    )
    assert status == 422
    # revoking the mapped form ends the IPv4 grant
    status, _, body = api.request(
        "DELETE", "/v1/grants", {"acl": "staff", "ip": "::ffff:81.2.69.142", "user": "a"}
    )
    assert (status, body) == (200, {"ended": 1})
    assert [g.cidr for g in api.store.active()] == ["81.2.69.0/24"]


def test_every_response_is_json_uncached_and_errors_have_one_shape(api: Harness) -> None:
    cases: list[tuple[str, str, Any, str | None]] = [
        ("GET", "/v1/grants", None, TOKEN),
        ("GET", "/v1/status", None, TOKEN),
        ("GET", "/readyz", None, TOKEN),
        ("GET", "/healthz", None, None),
        ("GET", "/v1/openapi.json", None, TOKEN),
        ("GET", "/v1/grants", None, None),
        ("GET", "/nope", None, TOKEN),
        ("PATCH", "/v1/grants", {"a": 1}, TOKEN),
        ("POST", "/v1/grants", {"acl": "staff"}, TOKEN),
        ("POST", "/v1/grants", {**GRANT, "ip": "10.0.0.1"}, TOKEN),
        ("POST", "/v1/acls/nope/flush", None, TOKEN),
        ("POST", "/v1/acls/%20/flush", None, TOKEN),
    ]
    for method, path, body, token in cases:
        status, headers, payload = api.request(method, path, body, token=token)
        assert headers["content-type"] == "application/json", path
        assert headers["cache-control"] == "no-store", path
        assert headers["x-content-type-options"] == "nosniff"
        if status >= 400:
            assert set(payload) == {"error"}, (path, payload)
            assert set(payload["error"]) == {"code", "message"}
            assert all(isinstance(v, str) and v for v in payload["error"].values())
    status, headers, _ = api.request("GET", "/metrics")
    assert status == 200 and headers["cache-control"] == "no-store"


def test_openapi_document_matches_the_routes(api: Harness) -> None:
    doc = api.request("GET", "/v1/openapi.json")[2]
    all_methods = {"get", "post", "delete", "put", "patch"}
    for template, operations in doc["paths"].items():
        path = template.replace("{acl}", "staff")
        token = None if operations.get("get", {}).get("security") == [] else TOKEN
        for method in all_methods:
            body = GRANT if method == "post" and path == "/v1/grants" else None
            if method == "delete" and path == "/v1/grants":
                body = {"acl": "staff", "ip": V4}
            status, headers, payload = api.request(method.upper(), path, body, token=token)
            if method in operations:
                assert status not in (404, 405), (method, template, payload)
                assert str(status) in operations[method]["responses"], (method, template, status)
            else:
                assert status == 405, (method, template)
                documented = {m.upper() for m in operations}
                assert set(headers["allow"].split(", ")) == documented, template
        # every error a route can give for its path parameter is documented
    flush = doc["paths"]["/v1/acls/{acl}/flush"]["post"]["responses"]
    assert api.request("POST", "/v1/acls/%20/flush")[0] == 422 and "422" in flush


def test_metrics_carry_no_secret_user_or_address(api: Harness) -> None:
    for i in range(20):
        api.service.grant("staff", f"81.2.69.{100 + i}", f"user-{i}@example.com", ttl=60)
    api.metrics.graph_response("patch", 204)
    api.metrics.set_ranges("staff", "entragate staff", 20)
    text = api.request("GET", "/metrics")[2].decode()
    assert "81.2.69." not in text and "user-" not in text and "example.com" not in text
    assert TOKEN not in text and "Bearer" not in text
    labels = {
        part.split("=", 1)[0]
        for line in text.splitlines()
        if "{" in line and not line.startswith("#")
        for part in line[line.index("{") + 1 : line.index("}")].split(",")
    }
    assert labels <= {"acl", "location", "method", "status", "code", "le"}


def test_access_log_escapes_control_characters(api: Harness, log_stream: io.StringIO) -> None:
    raw_exchange(api.server.port, b"GET /\x1b[2J\x07 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    access = [json.loads(x) for x in log_stream.getvalue().splitlines() if '"api.request"' in x]
    assert access and "\x1b" not in access[-1]["path"] and "\\x1b" in access[-1]["path"]


# --------------------------------------------------------------------------- token file hardening


def test_new_token_file_is_private_even_under_a_zero_umask(tmp_path: Path) -> None:
    config = make_config(tmp_path / "state")
    old = os.umask(0)
    try:
        token = load_or_create_api_token(config)
    finally:
        os.umask(old)
    path = tmp_path / "state" / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert path.read_text() == token + "\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["api-token"]  # no temp file left


def test_concurrent_starts_agree_on_one_token(tmp_path: Path) -> None:
    import threading

    for round_ in range(10):
        config = make_config(tmp_path / str(round_))
        barrier = threading.Barrier(8)
        results: list[str] = []

        def start(
            cfg: Config = config, b: threading.Barrier = barrier, out: list[str] = results
        ) -> None:
            b.wait()
            out.append(load_or_create_api_token(cfg))

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        on_disk = (tmp_path / str(round_) / "api-token").read_text().strip()
        assert set(results) == {on_disk}


def test_empty_token_file_is_replaced(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("\n")
    path.chmod(0o600)
    token = load_or_create_api_token(config)
    assert token and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o622, 0o606])
def test_world_readable_or_writable_token_file_is_refused(tmp_path: Path, mode: int) -> None:
    from entragate.config import ConfigError

    config = make_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("sekret-token-value\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_or_create_api_token(config)
    text = str(info.value)
    assert f"chmod 600 {path}" in text and "sekret-token-value" not in text


def test_group_readable_token_file_is_used_with_a_warning(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    config = make_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("shared-with-group\n")
    path.chmod(0o640)
    assert load_or_create_api_token(config) == "shared-with-group"
    assert "api.token_file_permissive" in log_stream.getvalue()
    assert "shared-with-group" not in log_stream.getvalue()


def test_unreadable_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    from entragate.config import ConfigError

    config = make_config(tmp_path)
    (tmp_path / "api-token").mkdir()  # unreadable as a file, whoever runs the test
    with pytest.raises(ConfigError) as info:
        load_or_create_api_token(config)
    assert str(tmp_path / "api-token") in str(info.value)
