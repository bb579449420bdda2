"""The agent's HTTP API on a real socket, over a real SQLite store: routes, refusals,
the error shape, the OpenAPI document, logs."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from entragate.errors import Code
from entragate.grants import open_store, parse_rfc3339, utcnow
from entragate.grants.sqlite import SQLiteGrantStore
from entragate.metrics import Metrics
from tests.helpers.api import (
    GRANT,
    TOKEN,
    V4,
    V6,
    Harness,
    error_of,
    raw_exchange,
    raw_post,
)

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
    second = api.request("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 7200})
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
    assert api.request("GET", "/readyz", token=None)[:3:2] == (200, {"ready": True})  # a probe

    api.service.grant("staff", V4, "alice", ttl=60)
    status, headers, text = api.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b'entragate_grants_active{acl="staff",tenant="default"} 1.0' in text
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
        # not a positive JSON integer of seconds: the model refuses it (400)
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": -1}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 0}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 1.5}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 60.5}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 60.0}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": True}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": "60"}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": "2h"}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 86401}, 422, "ttl_too_long"),
        ({"acl": "staff", "ip": V4, "user": "a"}, 400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "ttl": 60, "expires_at": "2099-01-01T00:00:00Z"},
         400, "invalid_ttl"),
        ({"acl": "staff", "ip": V4, "user": "a", "expires_at": "tomorrow"}, 400, "invalid_ttl"),
        (
            {"acl": "staff", "ip": V4, "user": "a", "expires_at": "2099-01-01T00:00:00"},
            400,
            "invalid_ttl",
        ),
        ({"acl": "staff", "ip": V4, "user": "", "ttl": 60}, 400, "invalid_user"),
        ({"acl": "staff", "ip": V4, "user": "   ", "ttl": 60}, 400, "invalid_user"),
        ({"acl": "staff", "ip": "", "user": "a", "ttl": 60}, 400, "invalid_ip"),
        ({"acl": "", "ip": V4, "user": "a", "ttl": 60}, 400, "invalid_acl"),
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
        assert (status, body["error"]["code"]) == (409, Code.ENTRA007)
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



# --------------------------------------------------------------------------- metrics


def test_metrics_series() -> None:
    m = Metrics()
    m.graph_response("patch", 204)
    m.graph_response("PATCH", 429)
    m.throttled()
    m.set_grants("staff", 3)
    m.set_ranges("staff", "entragate staff", 4)
    m.set_error("staff", "entragate staff", Code.ENTRA005)
    m.set_error("staff", "entragate staff", Code.ENTRA002)
    m.observe_lag(1.5)
    text = m.render().decode()
    assert 'entragate_graph_requests_total{method="PATCH",status="204",tenant="default"} 1.0' in text
    assert 'entragate_throttled_total{tenant="default"} 1.0' in text
    assert 'entragate_location_ranges{acl="staff",location="entragate staff",tenant="default"} 4.0' in text
    assert f'code="{Code.ENTRA002}",location="entragate staff",tenant="default"}} 1.0' in text
    assert Code.ENTRA005 not in text
    assert 'entragate_grant_applied_lag_seconds_count{tenant="default"} 1.0' in text
    m.set_error("staff", "entragate staff", None)
    assert Code.ENTRA002 not in m.render().decode()
    assert Metrics().render() != text.encode()  # registries are independent



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
        # a field of the wrong JSON type or format: the model refuses it (400)
        (json.dumps({**GRANT, "ttl": "9" * 5000}).encode(), 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": "9" * 5000 + "h"}).encode(), 400, "invalid_ttl"),
        (b'{"acl":"staff","ip":"81.2.69.142","user":"a","ttl":1e400}', 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": 10**4000}).encode(), 422, "ttl_too_long"),
        (json.dumps({**GRANT, "ttl": -(10**4000)}).encode(), 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": 1e-9}).encode(), 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": False}).encode(), 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": [60]}).encode(), 400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "9999-12-31T23:59:59-23:59"}).encode(),
         422, "ttl_too_long"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "0001-01-01T00:00:00+23:59"}).encode(),
         422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "2001-01-01T00:00:00Z"}).encode(),
         422, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": "2099-01-01T00:00:00"}).encode(),
         400, "invalid_ttl"),
        (json.dumps({**GRANT, "ttl": None, "expires_at": 4102444800}).encode(), 400,
         "invalid_ttl"),
        (json.dumps({**GRANT, "user": "al\u202eice"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": "al\u200bice"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": "alice\nbob"}).encode(), 422, "invalid_user"),
        (json.dumps({**GRANT, "user": ["alice"]}).encode(), 400, "invalid_user"),
        (json.dumps({**GRANT, "ip": 1367492750}).encode(), 400, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142\u0000"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "\uff18\uff11.2.69.142"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142/\u00b2"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "ip": "81.2.69.142/\u0663\u0662"}).encode(), 422, "invalid_ip"),
        (json.dumps({**GRANT, "acl": ["staff"]}).encode(), 400, "invalid_acl"),
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
    assert labels <= {"tenant", "acl", "location", "method", "status", "code", "le"}


def test_access_log_escapes_control_characters(api: Harness, log_stream: io.StringIO) -> None:
    # control characters reach the path percent-encoded (raw ones are not HTTP: see below)
    raw_exchange(api.server.port, b"GET /%1b[2J%07 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    access = [json.loads(x) for x in log_stream.getvalue().splitlines() if '"api.request"' in x]
    assert access and "\x1b" not in access[-1]["path"] and "\\x1b" in access[-1]["path"]
    raw = raw_exchange(api.server.port, b"GET /\x1b[2J\x07 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ") and error_of(raw)[1]["error"]["code"] == "bad_request"
    events = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert not any("\x1b" in str(v) for e in events for v in e.values())




# --------------------------------------------------------------------------- the grant model


def test_revoke_with_an_empty_user_is_refused_and_ends_nothing(api: Harness) -> None:
    # no "user" means every holder; an empty one is a mistake, not a wildcard
    api.service.grant("staff", V4, "carol", ttl=60)
    before = api.snapshot()
    for user in ("", "  "):
        status, _, body = api.request("DELETE", "/v1/grants", {"acl": "staff", "ip": V4, "user": user})
        assert (status, body["error"]["code"]) == (400, "invalid_user")
    status, _, body = api.request("DELETE", "/v1/grants", {"acl": "staff", "ip": V4, "user": 5})
    assert (status, body["error"]["code"]) == (400, "invalid_user")
    assert api.snapshot() == before
    status, _, body = api.request("DELETE", "/v1/grants", {"acl": "staff", "ip": V4, "user": None})
    assert (status, body) == (200, {"ended": 1})


def test_openapi_document_is_valid_and_describes_the_model(api: Harness) -> None:
    from openapi_spec_validator import validate

    from entragate.grants.model import GRANT_FIELDS, REVOKE_FIELDS

    doc = api.request("GET", "/v1/openapi.json")[2]
    validate(doc)  # raises on any violation of OpenAPI 3.1
    assert doc["servers"] == [{"url": api.server.url}]
    schemas = doc["components"]["schemas"]
    assert set(schemas["GrantRequest"]["properties"]) == set(GRANT_FIELDS)
    assert set(schemas["RevokeRequest"]["properties"]) == set(REVOKE_FIELDS)
    assert schemas["GrantRequest"]["additionalProperties"] is False
    post = doc["paths"]["/v1/grants"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GrantRequest"
    }
    assert {"201", "400", "401", "409", "413", "415", "422", "503"} <= set(post["responses"])
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/readyz"]["get"]["security"] == []
    assert doc["security"] == [{"bearer": []}]
