"""The HTTP stack against real loopback servers: trust precedence, connect_to, proxies, codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme

from entragate.config import Config, ConnectTo
from entragate.errors import classify_exception
from entragate.transport import bypasses_proxy, new_session, proxy_for, resolve_trust
from tests.helpers.servers import RefusingProxy, SilentServer, TlsHttpServer, closed_port

GRAPH = "graph.microsoft.com"


def config_for(port: int, **kw: object) -> Config:
    return Config(connect_to=(ConnectTo(GRAPH, 443, "127.0.0.1", port),), timeout=2.0, **kw)  # type: ignore[arg-type]


def get(config: Config, env: dict[str, str] | None = None) -> object:
    session = new_session(config, env=env if env is not None else dict(os.environ))
    try:
        return session.get(f"https://{GRAPH}/v1.0/ping")
    except Exception as exc:
        raise classify_exception(exc, host=GRAPH, operation="ping") from exc


@pytest.fixture
def corp_ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA(organization_name="Contoso Test Root")
    path = tmp_path / "corp.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


def test_connect_to_keeps_sni_host_header_and_verification(corp_ca: tuple[trustme.CA, Path]) -> None:
    ca, path = corp_ca
    with TlsHttpServer(ca, [GRAPH]) as server:
        response = get(config_for(server.port, ca_bundle=path))
        assert response.status_code == 200  # type: ignore[attr-defined]
    assert server.sni == [GRAPH]
    assert server.hosts == [GRAPH]


def test_configured_ca_bundle_wins_over_environment(corp_ca: tuple[trustme.CA, Path], tmp_path: Path) -> None:
    ca, path = corp_ca
    other = trustme.CA(organization_name="Some Other Root")
    other_path = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(other_path))
    env = {
        "REQUESTS_CA_BUNDLE": str(other_path),
        "CURL_CA_BUNDLE": str(other_path),
        "SSL_CERT_FILE": str(other_path),
    }
    with TlsHttpServer(ca, [GRAPH]) as server:
        # ca_bundle trusts the server although every environment variable names another root
        assert get(config_for(server.port, ca_bundle=path), env).status_code == 200  # type: ignore[attr-defined]
        # and the reverse: a ca_bundle that lacks the root fails although the environment has it
        env_right = {"REQUESTS_CA_BUNDLE": str(path), "SSL_CERT_FILE": str(path)}
        with pytest.raises(Exception) as caught:
            get(config_for(server.port, ca_bundle=other_path), env_right)
        assert caught.value.code == "ENTRA003"  # type: ignore[attr-defined]
        assert caught.value.verify_code == 20  # type: ignore[attr-defined]


def test_environment_bundle_is_used_without_ca_bundle(corp_ca: tuple[trustme.CA, Path]) -> None:
    ca, path = corp_ca
    env = {"REQUESTS_CA_BUNDLE": str(path)}
    assert resolve_trust(Config(), env).origin == "REQUESTS_CA_BUNDLE"
    assert resolve_trust(Config(), {"SSL_CERT_FILE": str(path)}).origin == "SSL_CERT_FILE"
    assert resolve_trust(Config(), {}).origin == "system"
    with TlsHttpServer(ca, [GRAPH]) as server:
        assert get(config_for(server.port), env).status_code == 200  # type: ignore[attr-defined]


def test_wrong_host_certificate_is_entra003(corp_ca: tuple[trustme.CA, Path]) -> None:
    ca, path = corp_ca
    with TlsHttpServer(ca, ["intranet.example.org"]) as server, pytest.raises(Exception) as caught:
        get(config_for(server.port, ca_bundle=path))
    assert caught.value.code == "ENTRA003"  # type: ignore[attr-defined]
    assert caught.value.verify_code == 62  # type: ignore[attr-defined]
    assert GRAPH in str(caught.value)


def test_missing_ca_bundle_is_entra003_not_a_crash(tmp_path: Path, corp_ca: tuple[trustme.CA, Path]) -> None:
    ca, _ = corp_ca
    with TlsHttpServer(ca, [GRAPH]) as server, pytest.raises(Exception) as caught:
        get(config_for(server.port, ca_bundle=tmp_path / "absent.pem"))
    assert caught.value.code == "ENTRA003"  # type: ignore[attr-defined]


def test_closed_port_is_entra000() -> None:
    with pytest.raises(Exception) as caught:
        get(config_for(closed_port()))
    assert caught.value.code == "ENTRA000"  # type: ignore[attr-defined]
    assert GRAPH in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)


def test_stalled_handshake_is_entra004_not_entra000() -> None:
    with SilentServer() as silent, pytest.raises(Exception) as caught:
        get(Config(connect_to=(ConnectTo(GRAPH, 443, "127.0.0.1", silent.port),), timeout=0.5))
    assert caught.value.code == "ENTRA004"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "reason"), [(407, "Proxy Authentication Required"), (403, "Forbidden")])
def test_proxy_refusing_connect_is_entra009(status: int, reason: str) -> None:
    with RefusingProxy(status, reason) as proxy, pytest.raises(Exception) as caught:
        get(Config(timeout=2.0), {"HTTPS_PROXY": proxy.url})
    assert caught.value.code == "ENTRA009"  # type: ignore[attr-defined]
    assert caught.value.proxy_status == status  # type: ignore[attr-defined]
    assert proxy.connects == [f"{GRAPH}:443"]


def test_unreachable_proxy_is_entra000() -> None:
    with pytest.raises(Exception) as caught:
        get(Config(timeout=2.0), {"HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}"})
    assert caught.value.code == "ENTRA000"  # type: ignore[attr-defined]


def test_proxy_selection_and_no_proxy() -> None:
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".microsoftonline.com,10.0.0.0/8"}
    assert proxy_for(Config(), f"https://{GRAPH}/", env) == "http://proxy.corp:3128"
    assert proxy_for(Config(), "https://login.microsoftonline.com/", env) is None
    assert proxy_for(Config(proxy="http://file.proxy:8080"), f"https://{GRAPH}/", {}) == "http://file.proxy:8080"
    assert bypasses_proxy("10.1.2.3", 443, "10.0.0.0/8")
    assert bypasses_proxy("anything", 443, "*")
    assert not bypasses_proxy("graph.microsoft.com", 443, "microsoft.co")
