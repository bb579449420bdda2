"""Configuration: file, environment overrides, secrets from files, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from entragate.config import CLOUDS, ConfigError, ConnectTo, load_config, looks_like_secret_id

TENANT = "4a6f1c2e-8b5d-4e3f-9a1b-2c3d4e5f6a7b"
CLIENT = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entragate.toml"
    path.write_text(text)
    return path


def test_full_file_is_loaded(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
tenant_id = "{TENANT}"
client_id = "{CLIENT}"
client_secret = "s3cr3t-value"
cloud = "usgov"
ca_bundle = "corp.pem"
connect_to = ["graph.microsoft.us:443:127.0.0.1:8443"]
timeout = 3

[acl.staff]
location = "Entragate staff"
static = ["81.2.69.0/24"]
max_locations = 3

[agent]
listen = "127.0.0.1:9999"
rate = 2
""",
    )
    (tmp_path / "corp.pem").write_text("-----BEGIN CERTIFICATE-----\n")  # must exist
    config = load_config(path, env={})
    assert config.login_host == CLOUDS["usgov"].login_host
    assert config.graph_host == "graph.microsoft.us"
    assert config.ca_bundle == tmp_path / "corp.pem"
    assert config.ca_bundle_origin == "ca_bundle"
    assert config.connect_to == (ConnectTo("graph.microsoft.us", 443, "127.0.0.1", 8443),)
    assert config.timeout == 3.0
    assert config.acls["staff"].static == ("81.2.69.0/24",)
    assert config.acls["staff"].max_locations == 3
    assert config.acls["staff"].create is False  # a typo must not create a new location
    assert config.agent.listen_port == 9999
    assert config.agent.rate == 2.0
    assert config.client_secret is not None and config.client_secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(config)


def test_environment_overrides_file_and_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    secret_file.chmod(0o600)  # a secret others can read is refused
    corp = tmp_path / "corp.pem"
    corp.write_text("-----BEGIN CERTIFICATE-----\n")  # must exist
    path = write(tmp_path, f'tenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\nclient_secret_file = "secret"\n')
    config = load_config(
        path,
        env={"ENTRAGATE_CLOUD": "china", "ENTRAGATE_CA_BUNDLE": str(corp), "ENTRAGATE_RATE": "0.5"},
    )
    assert config.client_secret is not None and config.client_secret.reveal() == "from-a-file"
    assert config.graph_host == "microsoftgraph.chinacloudapi.cn"
    assert config.login_host == "login.partner.microsoftonline.cn"
    assert config.ca_bundle == corp
    assert config.ca_bundle_origin == "ENTRAGATE_CA_BUNDLE"
    assert config.agent.rate == 0.5


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'cloud = "mars"\ntimeout = "soon"\nconnect_to = ["nonsense"]\nbogus = 1\n[acl.x]\nmax_ranges = 5000\n'
        "[agent]\nlease_timeout = 1\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    problems = "\n".join(caught.value.problems)
    for expected in ("cloud 'mars'", "timeout must be a number", "nonsense", "unknown key 'bogus'",
                     "tenant_id is missing", "client_id is missing", "no credential", "exceeds Microsoft's 2000",
                     "agent.lease_timeout = 1: use at least 3 seconds"):
        assert expected in problems


def test_invalid_toml_is_one_clear_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "tenant_id = \n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert len(caught.value.problems) == 1
    assert "not valid TOML" in caught.value.problems[0]


def test_host_overrides_and_connect_to_ipv6() -> None:
    entry = ConnectTo.parse("login.microsoftonline.com:443:[::1]:9443")
    assert (entry.target_host, entry.target_port) == ("::1", 9443)
    with pytest.raises(ValueError):
        ConnectTo.parse("a:b:c")


def test_secret_id_shape_is_recognised(tmp_path: Path) -> None:
    from entragate.config import Secret

    assert looks_like_secret_id(Secret("8d6a1f0e-1111-2222-3333-444455556666"))
    assert not looks_like_secret_id(Secret("Abc8Q~realSecretValue.xyz"))
