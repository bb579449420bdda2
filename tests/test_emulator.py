"""The emulated tenant, exercised over real TLS on loopback (no mocks)."""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from entragate.emulator import (
    TLS_SCENARIOS,
    ConnectProxy,
    Emulator,
    EmulatorFault,
    serve_forever,
)
from tests.helpers.emulator import (
    TenantApp,
    client_assertion,
    client_context,
    emulator_session,
    make_app_certificate,
    tls_handshake,
    verify_code,
)

NL = "identity/conditionalAccess/namedLocations"
IP = "#microsoft.graph.ipNamedLocation"
V4 = "#microsoft.graph.iPv4CidrRange"
V6 = "#microsoft.graph.iPv6CidrRange"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def ip_body(name: str, *cidrs: str, trusted: bool = False) -> dict[str, object]:
    return {
        "@odata.type": IP,
        "displayName": name,
        "isTrusted": trusted,
        "ipRanges": [{"@odata.type": V6 if ":" in c else V4, "cidrAddress": c} for c in cidrs],
    }


def assert_graph_error(r: requests.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    err = body["error"]
    assert err["code"] == code
    assert err["message"]
    inner = err["innerError"]
    assert inner["request-id"] == r.headers["request-id"]
    assert inner["client-request-id"] == r.headers["client-request-id"]
    assert inner["date"]
    return body


# --------------------------------------------------------------------------- TLS and transport


def test_every_host_has_a_strictly_valid_sni_certificate(fresh_emulator: Emulator) -> None:
    assert set(fresh_emulator.hosts) == {
        "login.microsoftonline.com",
        "graph.microsoft.com",
        "login.microsoftonline.us",
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
        "microsoftgraph.chinacloudapi.cn",
    }
    ctx = client_context(fresh_emulator.ca_bundle_path, strict=True)
    for host in fresh_emulator.hosts:
        with tls_handshake(fresh_emulator.port, host, ctx) as s:
            cert = s.getpeercert()
            assert ("DNS", host) in cert["subjectAltName"]
            issuer = dict(x[0] for x in cert["issuer"])
            assert "Issuing CA" in issuer["commonName"]
    assert fresh_emulator.root_pem == fresh_emulator.ca_bundle_path.read_bytes()
    assert x509.load_pem_x509_certificate(fresh_emulator.root_pem).subject == x509.load_pem_x509_certificate(
        fresh_emulator.root_pem
    ).issuer
    assert fresh_emulator.connect_to() == [f"{h}:443:127.0.0.1:{fresh_emulator.port}" for h in fresh_emulator.hosts]


def test_keep_alive_date_header_and_request_ids(tenant: TenantApp) -> None:
    emu = tenant.emu
    for _ in range(4):
        r = tenant.graph("GET", NL, headers={"client-request-id": "abc-123"})
        assert r.status_code == 200
    assert r.headers["client-request-id"] == "abc-123"
    uuid.UUID(r.headers["request-id"])
    # one connection per host name (login, graph), reused for every request
    assert emu.counters["connections"] == 2
    assert emu.counters["requests"] == 8
    date = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp()
    assert abs(date - time.time()) < 120
    emu.date_offset_seconds = -7200
    r = tenant.session.get(
        f"https://login.microsoftonline.com/{tenant.tenant_id}/v2.0/.well-known/openid-configuration", timeout=10
    )
    skew = email.utils.parsedate_to_datetime(r.headers["Date"]).timestamp() - time.time()
    assert -7300 < skew < -7100
    recs = [x for x in emu.requests if x.client_request_id == "abc-123"]
    assert len(recs) == 4 and all(x.status == 200 and x.tenant == tenant.tenant_id for x in recs)


def test_stop_releases_the_port_and_restart_keeps_the_root(tmp_path: Path) -> None:
    emu = Emulator(state_dir=tmp_path).start()
    port = emu.port
    root = emu.root_pem
    emu.stop()
    with socket.create_server(("127.0.0.1", port)):
        pass
    again = Emulator(state_dir=tmp_path)
    assert again.root_pem == root  # clients that trust the bundle keep working


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("intercepted", 19),  # self-signed certificate in certificate chain
        ("expired", 10),
        ("not_yet_valid", 9),
        ("wrong_host", 62),
        ("self_signed", 18),
        ("missing_intermediate", 20),  # unable to get local issuer certificate
        ("noncompliant_ca", 19),
    ],
)
def test_tls_scenarios_give_openssl_verify_codes(fresh_emulator: Emulator, scenario: str, code: int) -> None:
    assert scenario in TLS_SCENARIOS
    fresh_emulator.set_tls_scenario(scenario)
    ctx = client_context(fresh_emulator.ca_bundle_path)
    for host in ("login.microsoftonline.com", "graph.microsoft.com"):
        assert verify_code(fresh_emulator.port, host, ctx) == code
    assert wait_for(lambda: fresh_emulator.counters["tls_failure"] == 2)  # counted by the server thread
    fresh_emulator.set_tls_scenario(None)
    assert verify_code(fresh_emulator.port, "graph.microsoft.com", ctx) == 0


def test_intercepted_chain_names_the_corporate_ca_and_verifies_when_trusted(fresh_emulator: Emulator) -> None:
    fresh_emulator.set_tls_scenario("intercepted", issuer_cn="Acme Inspection CA", issuer_o="Acme Corp")
    assert fresh_emulator.scenario_ca_path is not None
    ca = x509.load_pem_x509_certificate(fresh_emulator.scenario_ca_path.read_bytes())
    assert ca.subject.rfc4514_string() == "CN=Acme Inspection CA,O=Acme Corp"
    ctx = client_context(fresh_emulator.scenario_ca_path, strict=True)
    with tls_handshake(fresh_emulator.port, "graph.microsoft.com", ctx) as s:
        issuer = dict(x[0] for x in s.getpeercert()["issuer"])
    assert issuer == {"organizationName": "Acme Corp", "commonName": "Acme Inspection CA"}
    # trusting the corporate CA via ca_bundle makes real requests work again
    tid = fresh_emulator.add_tenant()
    app = fresh_emulator.add_app(tid)
    s2 = emulator_session(fresh_emulator, ca_file=fresh_emulator.scenario_ca_path)
    ta = TenantApp(fresh_emulator, tid, app, s2)
    assert ta.graph("GET", NL).status_code == 200


def test_noncompliant_ca_passes_only_without_strict(fresh_emulator: Emulator) -> None:
    fresh_emulator.set_tls_scenario("noncompliant_ca")
    assert fresh_emulator.scenario_ca_path is not None
    lax = client_context(fresh_emulator.scenario_ca_path)
    strict = client_context(fresh_emulator.scenario_ca_path, strict=True)
    assert verify_code(fresh_emulator.port, "graph.microsoft.com", lax) == 0
    assert verify_code(fresh_emulator.port, "graph.microsoft.com", strict) == 89  # CA basicConstraints not critical


@pytest.mark.parametrize(("scenario", "offset", "code"), [("expired", -3 * 86400, 10), ("not_yet_valid", 3 * 86400, 9)])
def test_clock_skew_leaf_is_valid_at_server_date_only(fresh_emulator: Emulator, scenario: str, offset: int, code: int) -> None:
    fresh_emulator.date_offset_seconds = offset
    fresh_emulator.set_tls_scenario(scenario)
    assert verify_code(fresh_emulator.port, "graph.microsoft.com", client_context(fresh_emulator.ca_bundle_path)) == code
    # the chain presented (captured without trusting it) is valid at the server's Date
    raw = socket.create_connection(("127.0.0.1", fresh_emulator.port), timeout=10)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    with probe.wrap_socket(raw, server_hostname="graph.microsoft.com") as s:
        leaf = x509.load_der_x509_certificate(s.getpeercert(binary_form=True) or b"")
    server_now = time.time() + offset
    assert leaf.not_valid_before_utc.timestamp() <= server_now <= leaf.not_valid_after_utc.timestamp()
    assert not leaf.not_valid_before_utc.timestamp() <= time.time() <= leaf.not_valid_after_utc.timestamp()


def test_scenario_switch_drops_pooled_connections(tenant: TenantApp) -> None:
    assert tenant.graph("GET", NL).status_code == 200
    tenant.emu.set_tls_scenario("intercepted")
    with pytest.raises(requests.exceptions.SSLError) as info:
        tenant.session.get("https://graph.microsoft.com/v1.0/" + NL, timeout=10)
    root = info.value
    while root.__cause__ or root.__context__:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
        if isinstance(root, ssl.SSLCertVerificationError):
            break
    assert isinstance(root, ssl.SSLCertVerificationError) and root.verify_code == 19


# --------------------------------------------------------------------------- token endpoint


def test_token_success_shape_and_claims(tenant: TenantApp) -> None:
    r = tenant.token()
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 3599
    import base64

    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == tenant.tenant_id
    assert claims["appid"] == tenant.app.client_id
    assert set(claims["roles"]) == {"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"}
    assert claims["exp"] > time.time()


def test_openid_configuration_and_msal_secret_flow(tenant: TenantApp) -> None:
    domain = tenant.emu.tenant_domain(tenant.tenant_id)
    cca = msal.ConfidentialClientApplication(
        tenant.app.client_id,
        client_credential=tenant.app.secret,
        authority=f"https://login.microsoftonline.com/{domain}",
        http_client=tenant.session,
    )
    result = cca.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    assert tenant.emu.counters["openid"] == 1
    r = tenant.session.get(
        "https://graph.microsoft.com/v1.0/" + NL,
        headers={"Authorization": "Bearer " + result["access_token"]},
        timeout=10,
    )
    assert r.status_code == 200
    bad = msal.ConfidentialClientApplication(
        tenant.app.client_id,
        client_credential=tenant.app.secret_id,
        authority=f"https://login.microsoftonline.com/{tenant.tenant_id}",
        http_client=tenant.session,
    )
    result = bad.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]


def test_msal_certificate_flows(fresh_emulator: Emulator) -> None:
    tid = fresh_emulator.add_tenant()
    key, cert, key_pem, cert_pem = make_app_certificate()
    app = fresh_emulator.add_app(tid, certificate_pem=cert_pem)
    s = emulator_session(fresh_emulator)
    sha1 = cert.fingerprint(hashes.SHA1()).hex()
    for credential in (
        {"private_key": key_pem.decode(), "public_certificate": cert_pem.decode()},  # PS256, x5t#S256
        {"private_key": key_pem.decode(), "thumbprint": sha1},  # RS256, x5t
    ):
        cca = msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=credential,
            authority=f"https://login.microsoftonline.com/{tid}",
            http_client=s,
        )
        result = cca.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        assert "access_token" in result, result


def _err(r: requests.Response, status: int, error: str, code: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    desc = body["error_description"]
    assert desc.startswith(f"AADSTS{code}: ")
    for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
        assert part in desc
    assert body["trace_id"] in desc and body["correlation_id"] in desc
    assert body["timestamp"].endswith("Z")
    return body


def test_token_error_codes(fresh_emulator: Emulator) -> None:
    s = emulator_session(fresh_emulator)
    tid = fresh_emulator.add_tenant()
    gov = fresh_emulator.add_tenant(cloud="usgov")
    good = fresh_emulator.add_app(tid)
    expired = fresh_emulator.add_app(tid, secret="old~secret-value", secret_expired=True)
    url = f"https://login.microsoftonline.com/{tid}/oauth2/v2.0/token"
    scope = "https://graph.microsoft.com/.default"

    def post(u: str = url, **form: str) -> requests.Response:
        data = {"grant_type": "client_credentials", "client_id": good.client_id, "scope": scope}
        data.update(form)
        return s.post(u, data={k: v for k, v in data.items() if v is not None}, timeout=10,
                      headers={"client-request-id": "corr-1"})

    body = _err(post(client_secret=good.secret_id or ""), 401, "invalid_client", 7000215)
    assert body["correlation_id"] == "corr-1"
    _err(post(client_id=expired.client_id, client_secret="old~secret-value"), 401, "invalid_client", 7000222)
    _err(post(client_id=str(uuid.uuid4()), client_secret="x"), 400, "unauthorized_client", 700016)
    _err(post(f"https://login.microsoftonline.com/{uuid.uuid4()}/oauth2/v2.0/token", client_secret="x"),
         400, "invalid_request", 90002)
    # a tenant of another cloud is "not found" on this cloud's login host
    _err(post(f"https://login.microsoftonline.com/{gov}/oauth2/v2.0/token", client_secret="x"),
         400, "invalid_request", 90002)
    _err(post("https://login.microsoftonline.com/not a tenant!/oauth2/v2.0/token", client_secret="x"),
         400, "invalid_request", 900023)
    _err(post(), 401, "invalid_client", 7000218)
    _err(post(client_secret=good.secret or "", scope="https://graph.microsoft.com/Policy.Read.All"),
         400, "invalid_scope", 1002012)
    _err(post(client_secret=good.secret or "", scope="https://graph.microsoft.us/.default"),
         400, "invalid_resource", 500011)
    assert post(client_secret=good.secret or "").status_code == 200
    # OIDC discovery of an unknown tenant fails like Entra's (msal raises from it)
    r = s.get(f"https://login.microsoftonline.com/{uuid.uuid4()}/v2.0/.well-known/openid-configuration", timeout=10)
    _err(r, 400, "invalid_tenant", 90002)
    assert fresh_emulator.counters["token_error"] == 9
    assert fresh_emulator.counters["token_ok"] == 1


def test_certificate_assertions(fresh_emulator: Emulator) -> None:
    s = emulator_session(fresh_emulator)
    tid = fresh_emulator.add_tenant()
    key, cert, _key_pem, cert_pem = make_app_certificate()
    app = fresh_emulator.add_app(tid, certificate_pem=cert_pem)
    other_key, other_cert, _, _ = make_app_certificate("someone-else")
    url = f"https://login.microsoftonline.com/{tid}/oauth2/v2.0/token"

    def post(assertion: str) -> requests.Response:
        return s.post(url, timeout=10, data={
            "grant_type": "client_credentials",
            "client_id": app.client_id,
            "scope": "https://graph.microsoft.com/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        })

    assert post(client_assertion(key, cert, app.client_id, url)).status_code == 200
    assert post(client_assertion(key, cert, app.client_id, url, header="x5t")).status_code == 200
    # signed by another key but naming the registered certificate: bad signature
    forged = client_assertion(other_key, cert, app.client_id, url)
    _err(post(forged), 401, "invalid_client", 700027)
    # a certificate that is not registered
    _err(post(client_assertion(other_key, other_cert, app.client_id, url)), 401, "invalid_client", 700027)
    # outside its validity (client clock an hour behind)
    _err(post(client_assertion(key, cert, app.client_id, url, now=time.time() - 3600)), 401, "invalid_client", 700024)
    # the server's clock decides: an emulated skew makes a fresh assertion "not yet valid"
    fresh_emulator.date_offset_seconds = -3600
    _err(post(client_assertion(key, cert, app.client_id, url)), 401, "invalid_client", 700024)
    fresh_emulator.date_offset_seconds = 0
    wrong_aud = client_assertion(key, cert, app.client_id, "https://login.microsoftonline.com/other/oauth2/v2.0/token")
    assert post(wrong_aud).status_code == 401


def test_national_clouds(fresh_emulator: Emulator) -> None:
    s = emulator_session(fresh_emulator)
    dod = fresh_emulator.add_tenant(cloud="usgov-dod")
    app = fresh_emulator.add_app(dod)
    url = f"https://login.microsoftonline.us/{dod}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.secret or ""}
    r = s.post(url, data={**form, "scope": "https://dod-graph.microsoft.us/.default"}, timeout=10)
    token = r.json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    assert s.get("https://dod-graph.microsoft.us/v1.0/" + NL, headers=h, timeout=10).status_code == 200
    assert_graph_error(s.get("https://graph.microsoft.us/v1.0/" + NL, headers=h, timeout=10), 401,
                       "InvalidAuthenticationToken")
    cn = fresh_emulator.add_tenant(cloud="china")
    capp = fresh_emulator.add_app(cn)
    for login in ("login.partner.microsoftonline.cn", "login.chinacloudapi.cn"):  # current, older
        r = s.post(f"https://{login}/{cn}/oauth2/v2.0/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": capp.client_id, "client_secret": capp.secret or "",
            "scope": "https://microsoftgraph.chinacloudapi.cn/.default"})
        assert r.status_code == 200


# --------------------------------------------------------------------------- Graph


def test_graph_authentication_and_permissions(tenant: TenantApp) -> None:
    s, emu = tenant.session, tenant.emu
    url = "https://graph.microsoft.com/v1.0/" + NL
    r = s.get(url, timeout=10)
    assert_graph_error(r, 401, "InvalidAuthenticationToken")
    assert "WWW-Authenticate" in r.headers
    assert_graph_error(s.get(url, headers={"Authorization": "Bearer abc.def.ghi"}, timeout=10), 401,
                       "InvalidAuthenticationToken")
    token = tenant.access_token()
    emu.date_offset_seconds = 4000  # the token has expired by the server's clock
    assert_graph_error(s.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10), 401,
                       "InvalidAuthenticationToken")
    emu.date_offset_seconds = 0
    emu.set_roles(tenant.tenant_id, tenant.app.client_id, ["Policy.Read.All"])
    assert tenant.graph("GET", NL).status_code == 200
    assert_graph_error(tenant.graph("POST", NL, json=ip_body("a", "81.2.69.142/32")), 403, "AccessDenied")
    emu.set_roles(tenant.tenant_id, tenant.app.client_id, [])
    assert_graph_error(tenant.graph("GET", NL), 403, "AccessDenied")
    emu.set_roles(tenant.tenant_id, tenant.app.client_id, ["Policy.ReadWrite.ConditionalAccess"])
    assert tenant.graph("POST", NL, json=ip_body("a", "81.2.69.142/32")).status_code == 201


def test_paging_filter_top_select(tenant: TenantApp) -> None:
    emu, tid = tenant.emu, tenant.tenant_id
    for i in range(250):
        emu.create_location(tid, f"loc {i:03d}", [f"81.2.{i % 250}.0/24"])
    emu.create_country_location(tid, "countries", ["FR", "DE"])
    emu.create_location(tid, "O'Brien's", ["2001:db8::/48"])
    seen: list[dict[str, object]] = []
    url = NL
    pages = 0
    while url:
        body = tenant.graph("GET", url).json()
        assert body["@odata.context"].endswith("#identity/conditionalAccess/namedLocations")
        seen += body["value"]
        pages += 1
        url = body.get("@odata.nextLink")
    assert pages == 3 and len(seen) == 252
    assert len({x["id"] for x in seen}) == 252
    assert emu.counters["GET namedLocations"] == 3
    body = tenant.graph("GET", NL, params={"$filter": "isof('microsoft.graph.ipNamedLocation')", "$top": "200"}).json()
    assert len(body["value"]) == 200 and all(x["@odata.type"] == IP for x in body["value"])
    rest = tenant.graph("GET", body["@odata.nextLink"]).json()
    assert len(rest["value"]) == 51 and "@odata.nextLink" not in rest
    body = tenant.graph("GET", NL, params={"$filter": "displayName eq 'O''Brien''s'"}).json()
    assert [x["displayName"] for x in body["value"]] == ["O'Brien's"]
    assert body["value"][0]["ipRanges"] == [{"@odata.type": V6, "cidrAddress": "2001:db8::/48"}]
    body = tenant.graph("GET", NL, params={"$filter": "isof('microsoft.graph.countryNamedLocation')"}).json()
    assert body["value"][0]["countriesAndRegions"] == ["FR", "DE"]
    body = tenant.graph("GET", NL, params={"$select": "displayName", "$top": "1"}).json()
    assert set(body["value"][0]) == {"@odata.type", "id", "displayName"}
    assert_graph_error(tenant.graph("GET", NL, params={"$filter": "nonsense("}), 400, "BadRequest")


def test_create_get_patch_replace_delete(tenant: TenantApp) -> None:
    emu, tid = tenant.emu, tenant.tenant_id
    r = tenant.graph("POST", NL, json=ip_body("staff", "81.2.69.142/32", "2a00:1450::/32"),
                     headers={"client-request-id": "w-1"})
    assert r.status_code == 201
    created = r.json()
    loc = created["id"]
    assert created["createdDateTime"] and created["modifiedDateTime"] and created["isTrusted"] is False
    assert r.headers["Location"].endswith(loc)
    got = tenant.graph("GET", f"{NL}/{loc}").json()
    assert got["ipRanges"] == created["ipRanges"]
    r = tenant.graph("PATCH", f"{NL}/{loc}", json={"@odata.type": IP, "ipRanges": [{"@odata.type": V4, "cidrAddress": "8.8.8.0/24"}]})
    assert r.status_code == 204 and r.content == b""
    assert [x["cidrAddress"] for x in emu.locations(tid)[0]["ipRanges"]] == ["8.8.8.0/24"]  # replaced, not appended
    assert emu.locations(tid)[0]["displayName"] == "staff"
    assert_graph_error(tenant.graph("PATCH", f"{NL}/{loc}", json={"ipRanges": []}), 400, "BadRequest")
    assert_graph_error(tenant.graph("PATCH", f"{NL}/{loc}", json={"@odata.type": IP, "ipRanges": [
        {"@odata.type": V6, "cidrAddress": "8.8.8.0/24"}]}), 400, "BadRequest")
    assert_graph_error(tenant.graph("PATCH", f"{NL}/{uuid.uuid4()}", json={"@odata.type": IP}), 404, "ResourceNotFound")
    assert_graph_error(tenant.graph("GET", f"{NL}/{uuid.uuid4()}"), 404, "ResourceNotFound")
    writes = emu.writes(tid)
    assert [(w.method, w.ranges) for w in writes] == [
        ("POST", ["81.2.69.142/32", "2a00:1450::/32"]),
        ("PATCH", ["8.8.8.0/24"]),
    ]
    assert writes[0].client_request_id == "w-1" and writes[0].location_id == loc
    # a hand edit in the portal is not an API write
    emu.edit_location(tid, loc, ["1.1.1.1/32"])
    assert len(emu.writes(tid)) == 2
    assert tenant.graph("DELETE", f"{NL}/{loc}").status_code == 204
    assert emu.locations(tid) == []


def test_trusted_location_cannot_be_deleted_until_untrusted(tenant: TenantApp) -> None:
    loc = tenant.emu.create_location(tenant.tenant_id, "hq", ["81.2.69.0/24"], trusted=True)
    assert_graph_error(tenant.graph("DELETE", f"{NL}/{loc}"), 400, "BadRequest")
    assert tenant.graph("PATCH", f"{NL}/{loc}", json={"@odata.type": IP, "isTrusted": False}).status_code == 204
    assert tenant.graph("DELETE", f"{NL}/{loc}").status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"displayName": "x", "ipRanges": [{"@odata.type": V4, "cidrAddress": "81.2.69.142/32"}]},  # no @odata.type
        ip_body("x"),  # empty ipRanges
        {"@odata.type": IP, "displayName": "x"},  # ipRanges missing
        {**ip_body("x"), "ipRanges": [{"cidrAddress": "81.2.69.142/32"}]},  # range without type
        {**ip_body("x"), "ipRanges": [{"@odata.type": V4, "cidrAddress": "81.2.69.142"}]},  # bare address
        {**ip_body("x"), "ipRanges": [{"@odata.type": V4, "cidrAddress": "81.0.0.0/7"}]},  # prefix < /8
        {**ip_body("x"), "ipRanges": [{"@odata.type": V4, "cidrAddress": "2001:db8::/48"}]},  # family mismatch
        {**ip_body("x"), "ipRanges": [{"@odata.type": V4, "cidrAddress": "300.1.1.1/32"}]},
        ip_body("x", *[f"81.{i // 256}.{i % 256}.0/24" for i in range(2001)]),  # > 2000 ranges
        {**ip_body("", "81.2.69.142/32")},  # empty name
        {**ip_body("x", "81.2.69.142/32"), "color": "red"},  # unknown property
    ],
)
def test_post_validation(tenant: TenantApp, body: dict[str, object]) -> None:
    assert_graph_error(tenant.graph("POST", NL, json=body), 400, "BadRequest")
    assert tenant.emu.locations(tenant.tenant_id) == []


def test_limits_accept_2000_ranges_and_195_locations(tenant: TenantApp) -> None:
    big = ip_body("big", *[f"81.{i // 256}.{i % 256}.0/24" for i in range(2000)])
    assert tenant.graph("POST", NL, json=big).status_code == 201
    for i in range(194):
        tenant.emu.create_location(tenant.tenant_id, f"l{i}", ["81.2.69.0/24"])
    assert_graph_error(tenant.graph("POST", NL, json=ip_body("one too many", "81.2.69.1/32")), 400, "BadRequest")


# --------------------------------------------------------------------------- throttling


def test_throttle_shared_by_reads_and_writes_without_retry_after(fresh_emulator: Emulator) -> None:
    fresh_emulator.rate_limit = 1.0
    tid = fresh_emulator.add_tenant()
    a = TenantApp(fresh_emulator, tid, fresh_emulator.add_app(tid), emulator_session(fresh_emulator))
    b = TenantApp(fresh_emulator, tid, fresh_emulator.add_app(tid), emulator_session(fresh_emulator))
    ta, tb = a.access_token(), b.access_token()
    tokens_before = fresh_emulator.counters["token"]
    first = a.graph("GET", NL, headers={"Authorization": f"Bearer {ta}"})
    second = b.graph("POST", NL, json=ip_body("x", "81.2.69.1/32"), headers={"Authorization": f"Bearer {tb}"})
    assert first.status_code == 200
    body = assert_graph_error(second, 429, "TooManyRequests")
    assert "Retry-After" not in second.headers and body
    assert b.access_token()  # the token endpoint is not throttled by it
    assert fresh_emulator.counters["token"] == tokens_before + 1
    deadline = time.time() + 10
    while time.time() < deadline:
        time.sleep(0.3)
        r = b.graph("GET", NL, headers={"Authorization": f"Bearer {tb}"})
        if r.status_code == 200:
            break
    assert r.status_code == 200
    assert fresh_emulator.counters["429"] >= 1 and fresh_emulator.counters["throttled"] >= 1
    other = fresh_emulator.add_tenant()  # another tenant has its own budget
    c = TenantApp(fresh_emulator, other, fresh_emulator.add_app(other), emulator_session(fresh_emulator))
    assert c.graph("GET", NL).status_code == 200


# --------------------------------------------------------------------------- faults


def test_fault_status_and_throttle_bodies(tenant: TenantApp) -> None:
    emu = tenant.emu
    token = tenant.access_token()
    h = {"Authorization": f"Bearer {token}"}
    emu.set_fault(EmulatorFault("status", host="graph", status=503, count=1))
    assert_graph_error(tenant.graph("GET", NL, headers=h), 503, "serviceNotAvailable")
    assert tenant.graph("GET", NL, headers=h).status_code == 200  # count=1 used up
    emu.set_fault(EmulatorFault("status", host="graph", method="PATCH", status=403))
    loc = emu.create_location(tenant.tenant_id, "x", ["81.2.69.0/24"])
    assert tenant.graph("GET", NL, headers=h).status_code == 200  # method filter
    assert_graph_error(tenant.graph("PATCH", f"{NL}/{loc}", headers=h, json={"@odata.type": IP}), 403,
                       "Authorization_RequestDenied")
    emu.clear_faults()
    emu.set_fault(EmulatorFault("throttle", host="graph.microsoft.com", count=2))
    for _ in range(2):
        r = tenant.graph("GET", NL, headers=h)
        assert_graph_error(r, 429, "TooManyRequests")
        assert "Retry-After" not in r.headers
    emu.set_fault(EmulatorFault("status", host="login", status=503, count=1))
    r = tenant.token()
    _err(r, 503, "temporarily_unavailable", 90033)
    assert emu.counters["fault status"] == 3 and emu.counters["fault throttle"] == 2


def test_fault_latency_reset_and_hang(tenant: TenantApp) -> None:
    emu = tenant.emu
    token = tenant.access_token()
    h = {"Authorization": f"Bearer {token}"}
    emu.set_fault(EmulatorFault("latency", host="graph", seconds=2.0, count=1))
    with pytest.raises(requests.exceptions.ReadTimeout):
        tenant.session.get("https://graph.microsoft.com/v1.0/" + NL, headers=h, timeout=0.3)
    emu.set_fault(EmulatorFault("latency", host="graph", seconds=0.2, count=1))
    assert tenant.graph("GET", NL, headers=h).status_code == 200  # slow, but answered
    emu.set_fault(EmulatorFault("reset", host="graph", count=1))
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        tenant.session.get("https://graph.microsoft.com/v1.0/" + NL, headers=h, timeout=5)
    assert "reset" in repr(info.value).lower() or "aborted" in repr(info.value).lower()
    assert tenant.graph("GET", NL, headers=h).status_code == 200
    emu.set_fault(EmulatorFault("hang", host="graph"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        tenant.session.get("https://graph.microsoft.com/v1.0/" + NL, headers=h, timeout=0.5)
    statuses = [r.status for r in emu.requests if r.host == "graph.microsoft.com"]
    assert statuses.count(0) == 2  # reset and hang (the 2 s latency request is still sleeping)
    done = threading.Event()
    threading.Thread(target=lambda: (emu.stop(), done.set()), daemon=True).start()
    assert done.wait(15), "stop() must unblock hung handlers"


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        EmulatorFault("explode")
    with pytest.raises(ValueError):
        Emulator().set_tls_scenario("nope")


# --------------------------------------------------------------------------- proxy


def _connect(proxy: ConnectProxy, target: str) -> tuple[bytes, socket.socket]:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return head, s


def _mapping(emu: Emulator) -> dict[tuple[str, int], tuple[str, int]]:
    return {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}


@pytest.mark.parametrize(("mode", "status"), [("refuse407", 407), ("refuse403", 403)])
def test_proxy_refusals(fresh_emulator: Emulator, mode: str, status: int) -> None:
    with ConnectProxy(mode, _mapping(fresh_emulator)) as proxy:
        head, s = _connect(proxy, "graph.microsoft.com:443")
        s.close()
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        if status == 407:
            assert b"Proxy-Authenticate: Basic" in head
        assert proxy.connects == ["graph.microsoft.com:443"]
        sess = requests.Session()
        sess.trust_env = False
        with pytest.raises(requests.exceptions.ProxyError) as info:
            sess.get("https://graph.microsoft.com/v1.0/" + NL, proxies={"https": proxy.url},
                     verify=str(fresh_emulator.ca_bundle_path), timeout=10)
        assert str(status) in str(info.value)


def test_proxy_tunnel_and_intercept(tenant: TenantApp) -> None:
    emu = tenant.emu
    token = tenant.access_token()
    url = "https://graph.microsoft.com/v1.0/" + NL
    sess = requests.Session()
    sess.trust_env = False
    h = {"Authorization": f"Bearer {token}"}
    with ConnectProxy("tunnel", _mapping(emu)) as proxy:
        r = sess.get(url, headers=h, proxies={"https": proxy.url}, verify=str(emu.ca_bundle_path), timeout=10)
        assert r.status_code == 200
        assert proxy.connects == ["graph.microsoft.com:443"]
        head, s = _connect(proxy, "example.com:443")  # never leaves loopback
        s.close()
        assert head.startswith(b"HTTP/1.1 502 ")
    with ConnectProxy("intercept", _mapping(emu), upstream_ca=emu.ca_bundle_path) as proxy:
        with pytest.raises(requests.exceptions.SSLError):
            sess.get(url, headers=h, proxies={"https": proxy.url}, verify=str(emu.ca_bundle_path), timeout=10)
        # the proxy presents its own chain: verify code 19 at the TLS layer
        head, s = _connect(proxy, "graph.microsoft.com:443")
        assert head.startswith(b"HTTP/1.1 200 ")
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            client_context(emu.ca_bundle_path).wrap_socket(s, server_hostname="graph.microsoft.com")
        assert info.value.verify_code == 19
        s.close()
        # trusting the inspection CA (the supported fix) works end to end, strict rules included
        head, s = _connect(proxy, "graph.microsoft.com:443")
        with client_context(proxy.ca_path, strict=True).wrap_socket(s, server_hostname="graph.microsoft.com") as t:
            issuer = dict(x[0] for x in t.getpeercert()["issuer"])
            assert issuer == {"organizationName": "Netskope Inc", "commonName": "Netskope Inc Root CA"}
        for _ in range(3):  # keep-alive through the relay
            r = sess.get(url, headers=h, proxies={"https": proxy.url}, verify=str(proxy.ca_path), timeout=10)
            assert r.status_code == 200
        assert proxy.connects.count("graph.microsoft.com:443") >= 3


# --------------------------------------------------------------------------- concurrency and CLI helper


def test_concurrent_clients(tenant: TenantApp) -> None:
    emu = tenant.emu
    token = tenant.access_token()
    loc = emu.create_location(tenant.tenant_id, "x", ["81.2.69.0/24"])
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        s = emulator_session(emu)
        h = {"Authorization": f"Bearer {token}"}
        try:
            for i in range(20):
                body = {"@odata.type": IP, "ipRanges": [{"@odata.type": V4, "cidrAddress": f"81.2.{n}.{i}/32"}]}
                r = s.patch(f"https://graph.microsoft.com/v1.0/{NL}/{loc}", json=body, headers=h, timeout=10)
                assert r.status_code == 204
                assert s.get(f"https://graph.microsoft.com/v1.0/{NL}/{loc}", headers=h, timeout=10).status_code == 200
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    c = emu.counters
    assert c["PATCH namedLocation"] == 160 and c["GET namedLocation"] == 160 and c["writes"] == 160
    assert len(emu.locations(tenant.tenant_id)[0]["ipRanges"]) == 1
    emu.reset_counters()
    assert emu.counters["requests"] == 0 and emu.requests == [] and emu.writes() == []


def test_serve_forever_prints_what_a_client_needs(tmp_path: Path) -> None:
    lines: list[str] = []
    stop = threading.Event()
    t = threading.Thread(
        target=serve_forever, args=("127.0.0.1", 0, tmp_path, 1.0, lines.append), kwargs={"stop_event": stop}
    )
    t.start()
    deadline = time.time() + 15
    while not any("Press Ctrl-C" in x for x in lines) and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(15)
    text = "\n".join(lines)
    assert "tenant_id" in text and "client_secret" in text and str(tmp_path / "ca-bundle.pem") in text
    assert "login.microsoftonline.com:443:127.0.0.1:" in text
    assert 'connect_to = [' in text and "[acl.staff]" in text
