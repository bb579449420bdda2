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
        pytest.skip("no IPv6 loopback here")
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
