"""Under ``--json`` an error is one JSON document on stdout, in the API's shape
``{"error": {"code", "message"}}`` (the human lines still go to stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from entragate.cli import main
from entragate.emulator import AppRegistration, Emulator
from tests.helpers.process import TOKEN, healthy, start, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "entragate.toml"
    path.write_text(
        f"""[agent]
listen = "127.0.0.1:{free_port()}"
store = "sqlite:///{tmp_path}/grants.db"
api_token = "json-errors-token-0123456789"
{extra}
[acl.staff]
location = "Entragate staff"
"""
    )
    return path


@pytest.mark.parametrize(
    ("args", "exit_code", "code"),
    [
        (["grant", "10.0.0.1", "--acl", "staff", "--user", "alice", "--ttl", "1h", "--json"], 2, "forbidden_range"),
        (["--json", "grant", "81.2.69.142", "--acl", "nope", "--user", "alice", "--ttl", "1h"], 2, "unknown_acl"),
        (["--json", "revoke", "not-an-ip", "--acl", "staff"], 2, "invalid_ip"),
    ],
)
def test_an_input_error_under_json_is_the_apis_error_shape(
    tmp_path: Path, args: list[str], exit_code: int, code: str
) -> None:
    result = CliRunner().invoke(main, ["--config", str(config(tmp_path)), *args])
    assert result.exit_code == exit_code, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert code in result.stderr  # people still read it


def test_a_configuration_error_under_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(config(tmp_path, "rat = 2")), "--json", "list"])
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"]["code"] == "invalid_configuration"
    assert "did you mean 'rate'" in body["error"]["message"]


def test_without_json_errors_stay_on_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--config", str(config(tmp_path)), "grant", "10.0.0.1", "--acl", "staff", "--user", "a", "--ttl", "1h"]
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert "forbidden_range" in result.stderr


def test_a_grant_has_one_shape_in_grant_list_and_the_api(
    emu: Emulator, app: AppRegistration, tmp_path: Path
) -> None:
    port = free_port()
    path = write_config(emu, app, tmp_path, port, rate=20)
    agent = start(path, tmp_path / "agent.log")
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: healthy(url), 30), (tmp_path / "agent.log").read_text()
        runner = CliRunner()
        granted = runner.invoke(main, ["--config", str(path), "--json", "grant", "81.2.69.142", "--acl", "staff",
                                       "--user", "alice", "--ttl", "1h"])
        assert granted.exit_code == 0, granted.output
        from_cli = json.loads(granted.stdout)
        from_api = requests.post(f"{url}/v1/grants", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"acl": "staff", "ip": "81.2.69.160", "user": "bob", "ttl": 3600},
                                 timeout=10).json()
        assert set(from_cli) == set(from_api), (from_cli, from_api)
        listed = json.loads(runner.invoke(main, ["--config", str(path), "--json", "list"]).stdout)["grants"]
        api_listed = requests.get(f"{url}/v1/grants", headers={"Authorization": f"Bearer {TOKEN}"},
                                  timeout=10).json()["grants"]
        assert sorted(listed, key=lambda g: g["cidr"]) == sorted(api_listed, key=lambda g: g["cidr"])
        assert from_cli in listed and from_api in listed
    finally:
        agent.terminate()
        agent.wait(15)
