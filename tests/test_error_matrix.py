"""Each of the ten codes, produced by a real failure and asserted end to end.

Every case checks the code, that the host is named, the request-id or
correlation_id where Microsoft sends one, and that no secret leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from entragate.config import ConnectTo
from entragate.emulator import ConnectProxy, Emulator, EmulatorFault
from entragate.errors import EntraError, explain_text
from entragate.graph import GraphClient
from entragate.graph.client import LOCATIONS_PATH
from tests.helpers.config import SECRET, make_config
from tests.helpers.servers import SilentServer, closed_port

GRAPH = "graph.microsoft.com"
LOGIN = "login.microsoftonline.com"


def assert_clean(error: EntraError, *, code: str, host: str, secret: str = SECRET) -> None:
    assert error.code == code, error
    assert host in str(error)
    assert secret not in str(error)
    assert secret not in repr(error)
    assert f"entragate explain {code}" in str(error)
    assert error.__cause__ is not None or error.status is not None or error.code in ("ENTRA006",)


def failure(action: Callable[[], object]) -> EntraError:
    with pytest.raises(EntraError) as caught:
        action()
    return caught.value


def test_entra000_closed_port(emu: Emulator, app: object) -> None:
    port = closed_port()
    graph = GraphClient(
        make_config(emu, app, connect_to=(ConnectTo(LOGIN, 443, "127.0.0.1", port),))  # type: ignore[arg-type]
    )
    error = failure(graph.list_locations)
    assert_clean(error, code="ENTRA000", host=LOGIN)


def test_entra000_connection_reset(emu: Emulator, app: object) -> None:
    emu.set_fault(EmulatorFault(kind="reset", host=GRAPH))
    error = failure(GraphClient(make_config(emu, app)).list_locations)  # type: ignore[arg-type]
    assert_clean(error, code="ENTRA000", host=GRAPH)


def test_entra001_secret_id_pasted_instead_of_value(emu: Emulator, app: object) -> None:
    from entragate.config import Secret

    config = make_config(emu, app, client_secret=Secret(app.secret_id))  # type: ignore[arg-type, attr-defined]
    error = failure(GraphClient(config).list_locations)
    assert_clean(error, code="ENTRA001", host=LOGIN, secret=app.secret_id)  # type: ignore[attr-defined]
    assert error.aadsts == 7000215  # type: ignore[attr-defined]
    assert error.correlation_id
    assert "Secret ID" in error.hint


def test_entra001_expired_secret(emu: Emulator) -> None:
    tenant = emu.add_tenant()
    registration = emu.add_app(tenant, secret=SECRET, secret_expired=True)
    error = failure(GraphClient(make_config(emu, registration)).list_locations)
    assert_clean(error, code="ENTRA001", host=LOGIN)
    assert error.aadsts == 7000222  # type: ignore[attr-defined]
    assert error.correlation_id


def test_entra001_unknown_application(emu: Emulator, app: object) -> None:
    config = make_config(emu, app, client_id="11111111-2222-3333-4444-555555555555")  # type: ignore[arg-type]
    error = failure(GraphClient(config).list_locations)
    assert_clean(error, code="ENTRA001", host=LOGIN)
    assert error.aadsts == 700016  # type: ignore[attr-defined]


def test_entra002_read_only_permission(emu: Emulator, app: object) -> None:
    emu.set_roles(app.tenant_id, app.client_id, ["Policy.Read.All"])  # type: ignore[attr-defined]
    graph = GraphClient(make_config(emu, app))  # type: ignore[arg-type]
    error = failure(lambda: graph.create_location("Entragate staff", ["81.2.69.142/32"]))
    assert_clean(error, code="ENTRA002", host=GRAPH)
    assert error.request_id
    assert error.status == 403


@pytest.mark.parametrize(
    ("scenario", "verify_codes"),
    [
        ("intercepted", {19, 20}),
        ("expired", {10}),
        ("not_yet_valid", {9}),
        ("wrong_host", {62}),
        ("self_signed", {18}),
        ("missing_intermediate", {20}),
        ("noncompliant_ca", {85, 89, 92}),
    ],
)
def test_entra003_each_tls_scenario(emu: Emulator, app: object, scenario: str, verify_codes: set[int], tmp_path: Path) -> None:
    emu.set_tls_scenario(scenario)
    bundle = tmp_path / "bundle.pem"
    # noncompliant_ca only fails under strict X.509 rules when its CA is trusted
    extra = Path(emu.scenario_ca_path).read_bytes() if scenario == "noncompliant_ca" else b""
    bundle.write_bytes(Path(emu.ca_bundle_path).read_bytes() + extra)
    error = failure(GraphClient(make_config(emu, app, ca_bundle=bundle)).list_locations)  # type: ignore[arg-type]
    assert_clean(error, code="ENTRA003", host=LOGIN)
    assert error.verify_code in verify_codes  # type: ignore[attr-defined]


def test_entra003_behind_an_intercepting_proxy(emu: Emulator, app: object) -> None:
    mapping = {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}
    proxy = ConnectProxy(mode="intercept", connect_to=mapping, upstream_ca=Path(emu.ca_bundle_path))
    proxy.start()
    try:
        config = make_config(emu, app, connect_to=(), proxy=proxy.url)  # type: ignore[arg-type]
        error = failure(GraphClient(config).list_locations)
        assert_clean(error, code="ENTRA003", host=LOGIN)
    finally:
        proxy.stop()


def test_entra004_stalled_handshake(emu: Emulator, app: object) -> None:
    with SilentServer() as silent:
        config = make_config(
            emu, app, connect_to=(ConnectTo(LOGIN, 443, "127.0.0.1", silent.port),), timeout=0.5  # type: ignore[arg-type]
        )
        error = failure(GraphClient(config).list_locations)
    assert_clean(error, code="ENTRA004", host=LOGIN)


def test_entra004_graph_never_answers(emu: Emulator, app: object) -> None:
    emu.set_fault(EmulatorFault(kind="hang", host=GRAPH))
    graph = GraphClient(make_config(emu, app, timeout=0.5))  # type: ignore[arg-type]
    error = failure(graph.list_locations)
    assert_clean(error, code="ENTRA004", host=GRAPH)


def test_entra005_throttled_without_retry_after(emu: Emulator, app: object) -> None:
    emu.set_fault(EmulatorFault(kind="throttle", host=GRAPH))
    error = failure(GraphClient(make_config(emu, app)).list_locations)  # type: ignore[arg-type]
    assert_clean(error, code="ENTRA005", host=GRAPH)
    assert error.retry_after is None  # type: ignore[attr-defined]
    assert error.request_id


def test_entra006_missing_location(emu: Emulator, app: object) -> None:
    graph = GraphClient(make_config(emu, app))  # type: ignore[arg-type]
    error = failure(lambda: graph.find_location("Entragate staff"))
    assert_clean(error, code="ENTRA006", host=GRAPH)
    error = failure(lambda: graph.get_location("00000000-0000-0000-0000-000000000000"))
    assert_clean(error, code="ENTRA006", host=GRAPH)
    assert error.request_id


def test_entra007_graph_rejects_a_bare_address(emu: Emulator, app: object) -> None:
    graph = GraphClient(make_config(emu, app))  # type: ignore[arg-type]
    body = {
        "@odata.type": "#microsoft.graph.ipNamedLocation",
        "displayName": "Bare",
        "isTrusted": False,
        "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "81.2.69.142"}],
    }
    error = failure(lambda: graph.request("POST", LOCATIONS_PATH, json=body, operation="create", write=True))
    assert_clean(error, code="ENTRA007", host=GRAPH)
    assert error.status == 400
    assert error.request_id


def test_entra008_graph_service_error(emu: Emulator, app: object) -> None:
    emu.set_fault(EmulatorFault(kind="status", host=GRAPH, status=503))
    error = failure(GraphClient(make_config(emu, app)).list_locations)  # type: ignore[arg-type]
    assert_clean(error, code="ENTRA008", host=GRAPH)
    assert error.request_id


def test_entra008_token_endpoint_service_error(emu: Emulator, app: object) -> None:
    emu.set_fault(EmulatorFault(kind="status", host=LOGIN, status=500))
    error = failure(GraphClient(make_config(emu, app)).list_locations)  # type: ignore[arg-type]
    assert_clean(error, code="ENTRA008", host=LOGIN)


@pytest.mark.parametrize(("mode", "status"), [("refuse407", 407), ("refuse403", 403)])
def test_entra009_proxy_refuses_connect(emu: Emulator, app: object, mode: str, status: int) -> None:
    proxy = ConnectProxy(mode=mode, connect_to={})
    proxy.start()
    try:
        config = make_config(emu, app, connect_to=(), proxy=proxy.url)  # type: ignore[arg-type]
        error = failure(GraphClient(config).list_locations)
    finally:
        proxy.stop()
    assert_clean(error, code="ENTRA009", host=LOGIN)
    assert error.proxy_status == status  # type: ignore[attr-defined]


def test_every_code_has_a_page() -> None:
    from entragate.errors import Code

    for code in Code:
        page = explain_text(code)
        assert page is not None, code
        assert page.startswith(f"# {code}: {code.title}")
    assert explain_text("ENTRA999") is None
