"""The API's HTTP layer on a real socket: the token before any route, framing, limits,
timeouts, TLS and stopping."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from entragate.api import MAX_BODY, ApiServer
from entragate.grants import open_store
from entragate.metrics import Metrics
from entragate.service import GrantService
from tests.helpers.api import (
    TOKEN,
    V4,
    Harness,
    error_of,
    make_api_config,
    raw_exchange,
    running,
    tls_files,
)
from tests.helpers.sync import wait_for


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



def test_refuses_non_loopback_unless_configured_with_tls(tmp_path: Path) -> None:
    config = make_api_config(tmp_path)
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
        with pytest.raises(ValueError, match="without TLS"):
            ApiServer(exposed, service, **kw)  # configured, but the token would travel in clear
        _ca, cert, key = tls_files(tmp_path)
        exposed = replace(exposed, agent=replace(exposed.agent, tls_cert=cert, tls_key=key))
        server = ApiServer(exposed, service, **kw)  # explicitly configured, with TLS: allowed
        assert server.host == "0.0.0.0" and server.url.startswith("https://127.0.0.1:")
        with pytest.raises(ValueError):
            ApiServer(config, service, **{**kw, "token": ""})
    finally:
        store.close()


def test_ipv6_loopback(tmp_path: Path) -> None:
    config = make_api_config(tmp_path)
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
    "/v1/openapi.json",
    "/HEALTHZ",
    "/healthz/",
    "/healthz%00",
    "/READYZ",
    "/readyz/",
    "/readyz/../v1/grants",
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


def test_the_probes_alone_are_open_including_head_and_query(api: Harness) -> None:
    assert api.request("GET", "/healthz?probe=1", token=None)[0] == 200
    response = raw_exchange(
        api.server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\n")
    status, headers, body = api.request("GET", "/readyz?probe=1", token=None)
    assert (status, body["error"]["code"], headers["retry-after"]) == (503, "not_ready", "5")
    api.is_ready = True
    assert api.request("GET", "/readyz", token=None)[:3:2] == (200, {"ready": True})
    response = raw_exchange(
        api.server.port, b"HEAD /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\n")


def test_token_compare_uses_the_raw_header_bytes(tmp_path: Path, log_stream: io.StringIO) -> None:
    token = "jeton-été-" + "z" * 20
    harness = Harness(tmp_path, token=token)
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
    assert b"\r\nconnection: close\r\n" in response.lower()  # names are case-insensitive


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
    assert b"\r\nconnection: close\r\n" in response.lower()  # names are case-insensitive
    assert api.snapshot() == before


def test_a_short_body_is_refused(api: Harness) -> None:
    before = api.snapshot()
    request = (
        f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        + b'{"acl": "staff"}'
    )

    with socket.create_connection(("127.0.0.1", api.server.port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # the client gives up sending
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status, body = error_of(response)
    assert (status, body["error"]["code"]) == (400, "incomplete_body")
    assert api.snapshot() == before




# --------------------------------------------------------------------------- methods and limits

ROUTES = {
    "/v1/grants": {"GET", "POST", "DELETE"},
    "/v1/acls/staff/flush": {"POST"},
    "/v1/status": {"GET"},
    "/healthz": {"GET"},
    "/readyz": {"GET"},
    "/metrics": {"GET"},
    "/v1/openapi.json": {"GET"},
}


@pytest.mark.parametrize("method", ["FOO", "PUT", "PATCH", "TRACE", "CONNECT", "PROPFIND"])
def test_an_unknown_method_answers_405_with_allow_on_every_route(api: Harness, method: str) -> None:
    for path, allowed in ROUTES.items():
        request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        response = raw_exchange(api.server.port, (request + "Connection: close\r\n\r\n").encode())
        status, body = error_of(response)
        assert (status, body["error"]["code"]) == (405, "method_not_allowed"), (method, path)
        head = response.partition(b"\r\n\r\n")[0].decode().lower()
        allow = next(line for line in head.splitlines() if line.startswith("allow:"))
        assert set(allow.partition(":")[2].strip().upper().split(", ")) == allowed, (path, allow)
    response = raw_exchange(
        api.server.port,
        f"{method} /v2/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert error_of(response) [1]["error"]["code"] == "not_found"


def test_pipelined_requests_are_answered_in_order(api: Harness) -> None:
    one = f"GET /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    last = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = raw_exchange(api.server.port, (one + one + last).encode())
    assert response.count(b"HTTP/1.1 200 ") == 3, response
    assert response.count(b'"grants":[]') == 2 and response.endswith(b'{"ok":true}\n')


def _send_then_read(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send ``head`` then the body from a thread (the server may stop reading it), and
    read the answer meanwhile, as a client uploading a large body does."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        def upload() -> None:
            try:
                sock.sendall(head)
                for chunk in body_chunks:
                    sock.sendall(chunk)
            except OSError:
                pass  # the server answered and closed: the rest is not wanted

        sender = threading.Thread(target=upload)
        sender.start()
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        sender.join(10)
    return received


MEBIBYTE_JSON = json.dumps({"acl": "staff", "ip": V4, "user": "a", "ttl": 60, "note": "x" * 2**20})


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_one_mebibyte_body_answers_413_and_stores_nothing(api: Harness, framing: str) -> None:
    before = api.snapshot()
    body = MEBIBYTE_JSON.encode()
    head = (
        f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    if framing == "content-length":
        head += f"Content-Length: {len(body)}\r\n\r\n".encode()
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    else:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
        chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    response = _send_then_read(api.server.port, head, chunks)
    status, error = error_of(response)
    assert (status, error["error"]["code"]) == (413, "body_too_large"), response[:300]
    assert b"\r\nconnection: close\r\n" in response.lower()  # names are case-insensitive
    assert api.snapshot() == before


def test_a_small_chunked_grant_is_accepted(api: Harness) -> None:
    body = json.dumps({"acl": "staff", "ip": V4, "user": "a", "ttl": 60}).encode()
    request = (
        f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert raw_exchange(api.server.port, request).startswith(b"HTTP/1.1 201 ")
    assert [g.cidr for g in api.store.active()] == ["81.2.69.142/32"]


def test_two_hundred_fresh_connections_at_once_are_all_answered(api: Harness) -> None:
    count = 200
    barrier = threading.Barrier(count)
    statuses: list[int | str] = []
    lock = threading.Lock()

    def probe() -> None:
        barrier.wait(30)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=60)
            conn.request("GET", "/healthz")
            result: int | str = conn.getresponse().status
            conn.close()
        except OSError as exc:
            result = type(exc).__name__
        with lock:
            statuses.append(result)

    threads = [threading.Thread(target=probe) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses == [200] * count


def test_beyond_the_concurrency_limit_the_answer_is_503_in_the_error_shape(tmp_path: Path) -> None:
    with running(tmp_path, server_kw={"max_concurrency": 2}) as api:
        held = [http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=10) for _ in range(2)]
        try:
            for conn in held:  # two kept-alive connections use up the limit
                conn.request("GET", "/healthz")
                assert conn.getresponse().read() == b'{"ok":true}\n'
            status, headers, body = api.request("GET", "/healthz", token=None)
            assert (status, body["error"]["code"]) == (503, "overloaded")
            assert headers["retry-after"] and headers["cache-control"] == "no-store"
        finally:
            for conn in held:
                conn.close()
        assert wait_for(lambda: api.request("GET", "/healthz", token=None)[0] == 200, 10)


# --------------------------------------------------------------------------- slow clients


def test_headers_that_do_not_arrive_in_time_end_the_connection(tmp_path: Path) -> None:
    with running(tmp_path, server_kw={"header_timeout": 0.5}) as api:
        with socket.create_connection(("127.0.0.1", api.server.port), timeout=30) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            received = b""
            try:
                for _ in range(60):  # a byte now and then never restarts the deadline
                    sock.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except (TimeoutError, ConnectionResetError):
                pass
        assert time.monotonic() - started < 20
        assert error_of(received)[0] == 408 and error_of(received)[1]["error"]["code"] == "request_timeout"

        # an idle kept-alive connection is closed too
        with socket.create_connection(("127.0.0.1", api.server.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b'{"ok":true}\n'):
                first += sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            assert sock.recv(65536) == b""  # closed by the server after the deadline


def test_a_body_that_does_not_arrive_in_time_is_refused(tmp_path: Path) -> None:
    with running(tmp_path, server_kw={"body_timeout": 0.5}) as api:
        request = (
            f"POST /v1/grants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            + b'{"acl": "staff"'
        )
        started = time.monotonic()
        response = raw_exchange(api.server.port, request, wait=30)
        assert time.monotonic() - started < 20
        status, body = error_of(response)
        assert (status, body["error"]["code"]) == (400, "incomplete_body")
        assert api.store.active() == []


# --------------------------------------------------------------------------- TLS


def test_tls_serves_the_api_and_refuses_plain_http(tmp_path: Path, log_stream: io.StringIO) -> None:
    import requests

    ca, cert, key = tls_files(tmp_path)
    base = make_api_config(tmp_path)
    config = replace(base, agent=replace(base.agent, tls_cert=cert, tls_key=key))
    with running(tmp_path, config=config) as api:
        assert api.server.url.startswith("https://127.0.0.1:")
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(
                f"{api.server.url}/v1/grants",
                json={"acl": "staff", "ip": V4, "user": "a", "ttl": 60},
                headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
                verify=str(ca),
                timeout=10,
            )
            assert response.status_code == 201, response.text
            doc = session.get(
                f"{api.server.url}/v1/openapi.json",
                headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
                verify=str(ca),
                timeout=10,
            ).json()
            assert doc["servers"] == [{"url": api.server.url}]
        plain = raw_exchange(api.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait=1)
        assert not plain.startswith(b"HTTP/1.1 200")


def test_the_cli_client_talks_tls_to_the_agent(tmp_path: Path, log_stream: io.StringIO) -> None:
    from entragate.agent_client import AgentClient, agent_url, agent_verify
    from entragate.grants import GrantRequest

    ca, cert, key = tls_files(tmp_path)
    cert.write_bytes(cert.read_bytes() + ca.read_bytes())  # the chain file ends with its CA
    base = make_api_config(tmp_path)
    config = replace(base, agent=replace(base.agent, tls_cert=cert, tls_key=key))
    with running(tmp_path, config=config) as api:
        port = api.server.port
        config = replace(config, agent=replace(config.agent, listen=f"127.0.0.1:{port}"))
        assert agent_url(config) == f"https://127.0.0.1:{port}"
        client = AgentClient(agent_url(config), TOKEN, verify=agent_verify(config))
        try:
            assert client.reachable()
            request = GrantRequest.parse({"acl": "staff", "ip": V4, "user": "a", "ttl": 60})
            assert client.grant(request)["cidr"] == "81.2.69.142/32"
        finally:
            client.close()


def _config_file(tmp_path: Path, agent_lines: str) -> Path:
    path = tmp_path / "entragate.toml"
    path.write_text(f"[agent]\n{agent_lines}\n[acl.staff]\nlocation = \"entragate staff\"\n")
    return path


def test_configuration_of_tls(tmp_path: Path) -> None:
    from entragate.config import ConfigError, load_config

    def problems(agent_lines: str) -> list[str]:
        try:
            load_config(_config_file(tmp_path, agent_lines), env={}, require_credentials=False)
        except ConfigError as exc:
            return exc.problems
        return []

    _ca, cert, key = tls_files(tmp_path)
    assert problems('listen = "127.0.0.1:8787"') == []
    for exposed in ("0.0.0.0:8787", "[::]:8787", "81.2.69.142:8787", "agent.example:8787"):
        (line,) = problems(f'listen = "{exposed}"')
        assert "not a loopback address" in line and "tls_cert" in line
    assert problems(f'listen = "0.0.0.0:8787"\ntls_cert = "{cert}"\ntls_key = "{key}"') == []
    (line,) = problems(f'tls_cert = "{cert}"')
    assert "go together" in line
    (line,) = problems(f'tls_cert = "{cert}"\ntls_key = "{tmp_path / "absent.pem"}"')
    assert "absent.pem" in line
    key.chmod(0o644)
    (line,) = problems(f'tls_cert = "{cert}"\ntls_key = "{key}"')
    assert f"chmod 600 {key}" in line
    key.chmod(0o600)
    (tmp_path / "other").mkdir()
    _ca, _cert, other_key = tls_files(tmp_path / "other")
    (line,) = problems(f'tls_cert = "{cert}"\ntls_key = "{other_key}"')  # not this cert's key
    assert "cannot be used" in line


# --------------------------------------------------------------------------- stopping


def test_no_grant_is_acknowledged_once_the_store_is_closed(api: Harness) -> None:
    api.store.close()  # as when the agent stops: the store closes after the API
    status, headers, body = api.request("POST", "/v1/grants", {"acl": "staff", "ip": V4, "user": "a", "ttl": 60})
    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    assert headers["retry-after"]
    store = open_store(api.config.agent.store)
    try:
        assert store.active() == []
    finally:
        store.close()


def test_stopping_mid_burst_acknowledges_only_stored_grants(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.server.start()
    acknowledged: list[str] = []
    lock = threading.Lock()

    def grant(i: int) -> None:
        address = f"81.2.{70 + i // 200}.{1 + i % 200}"
        try:
            status, _, body = harness.request(
                "POST", "/v1/grants", {"acl": "staff", "ip": address, "user": f"u{i}", "ttl": 600}
            )
        except OSError:
            return
        if status == 201:
            with lock:
                acknowledged.append(body["cidr"])

    threads = [threading.Thread(target=grant, args=(i,)) for i in range(300)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acknowledged) >= 20, 30)
    harness.server.stop()
    harness.store.close()
    for t in threads:
        t.join(60)
    store = open_store(harness.config.agent.store)
    try:
        stored = {g.cidr for g in store.active()}
    finally:
        store.close()
    assert len(acknowledged) >= 20 and set(acknowledged) <= stored
