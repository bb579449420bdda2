"""Under ``--json`` an error is one JSON document on stdout, in the API's shape
``{"error": {"code", "message"}}`` (the human lines still go to stderr)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from entragate.cli import main
from tests.helpers.servers import free_port


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
