"""A bad configuration stops every command at load: exit 2, one line per problem naming
the file and the key, never a traceback. Run as real processes (`config check` and
`run`), the way an operator meets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.credentials import self_signed_credential

TENANT = "4a6f1c2e-8b5d-4e3f-9a1b-2c3d4e5f6a7b"
CLIENT = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
# Root reads every file; the agent's real user does not. As root, the check runs
# without the capabilities that bypass file permissions (setpriv, util-linux).
WITHOUT_DAC_OVERRIDE = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
     "--inh-caps=-dac_override,-dac_read_search"]
    if os.geteuid() == 0
    else []
)


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    return tmp_path


def write(directory: Path, credential: str, extra_top: str = "", agent: str = "") -> Path:
    path = directory / "config.toml"
    if "listen" not in agent:
        agent = f'listen = "127.0.0.1:0"\n{agent}'
    path.write_text(
        f"""tenant_id = "{TENANT}"
client_id = "{CLIENT}"
{credential}
{extra_top}

[acl.staff]
location = "Entragate staff"

[agent]
store = "sqlite:///{directory}/grants.db"
{agent}
"""
    )
    path.chmod(0o644)
    return path


SECRET_LINE = 'client_secret = "Qx8~not.a.real.secret_0123456789abc"'


def entragate(
    *args: str, cwd: Path | None = None, unprivileged: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTRAGATE_")}
    prefix = WITHOUT_DAC_OVERRIDE if unprivileged else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "entragate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def assert_refused(result: subprocess.CompletedProcess[str], config: Path, *needles: str) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("entragate: configuration error"), lines
    problems = lines[1:]
    assert all(line.startswith(f"entragate: {config}: ") for line in problems), problems
    for needle in needles:
        assert sum(needle in line for line in problems) == 1, (needle, problems)
    return problems


def check_and_run(config: Path, *needles: str, unprivileged: bool = False) -> None:
    for command in (("config", "check"), ("run",)):
        result = entragate("--config", str(config), *command, unprivileged=unprivileged)
        assert_refused(result, config, *needles)


def test_a_good_configuration_passes_the_check(confdir: Path) -> None:
    config = write(confdir, SECRET_LINE)
    result = entragate("--config", str(config), "config", "check")
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK" in result.stdout
    as_json = entragate("--config", str(config), "--json", "config", "check")
    assert json.loads(as_json.stdout) == {
        "ok": True, "file": str(config), "problems": [], "acls": ["staff"]
    }


def test_ca_bundle_this_user_cannot_read(confdir: Path) -> None:
    bundle = confdir / "corp-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    bundle.chmod(0o000)
    config = write(confdir, SECRET_LINE, f'ca_bundle = "{bundle}"')
    check_and_run(config, f"ca_bundle {bundle} is not readable", unprivileged=True)


def test_listen_port_out_of_range(confdir: Path) -> None:
    config = write(confdir, SECRET_LINE, agent='listen = "127.0.0.1:99999"')
    check_and_run(config, "agent.listen '127.0.0.1:99999': port 99999 is outside 0-65535")


def test_certificate_pem_without_its_key(confdir: Path) -> None:
    cert_pem, _, _ = self_signed_credential(confdir)
    only_cert = confdir / "app.crt.pem"
    only_cert.write_bytes(cert_pem)
    only_cert.chmod(0o600)
    config = write(confdir, f'client_certificate = "{only_cert}"')
    check_and_run(config, f"client_certificate {only_cert} holds no private key")


def test_pfx_with_the_wrong_password(confdir: Path) -> None:
    _, _, pfx = self_signed_credential(confdir)
    pfx.chmod(0o600)
    config = write(
        confdir, f'client_certificate = "{pfx}"\nclient_certificate_password = "not-the-password"'
    )
    check_and_run(config, f"client_certificate {pfx} is not a PFX that client_certificate_password opens")


def test_a_certificate_file_others_can_read_is_refused(confdir: Path) -> None:
    _, pem, _ = self_signed_credential(confdir)
    pem.chmod(0o644)
    config = write(confdir, f'client_certificate = "{pem}"')
    check_and_run(config, f"client_certificate {pem} is accessible to other users (mode 0644)")


def test_every_problem_at_once_with_did_you_mean(confdir: Path) -> None:
    config = write(
        confdir,
        SECRET_LINE,
        'clound = "global"\nca_bundle = "missing.pem"\ntimeout = "soon"',
        agent='listen = "127.0.0.1:99999"\nrat = 2',
    )
    problems = assert_refused(
        entragate("--config", str(config), "config", "check"),
        config,
        "unknown key 'clound' (did you mean 'cloud'?)",
        "unknown key agent.rat (did you mean 'rate'?)",
        f"ca_bundle {confdir / 'missing.pem'} does not exist",
        "timeout must be a number",
        "port 99999 is outside 0-65535",
    )
    assert len(problems) == 5, problems
    as_json = entragate("--config", str(config), "--json", "config", "check")
    assert as_json.returncode == 2
    assert len(json.loads(as_json.stdout)["problems"]) == 5


def test_no_configuration_file_at_all_names_where_it_looked(confdir: Path) -> None:
    if Path("/etc/entragate/config.toml").exists():
        pytest.skip("this host has /etc/entragate/config.toml")
    for command in (("config", "check"), ("run",)):
        result = entragate(*command, cwd=confdir)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "no configuration file" in result.stderr, result.stderr
        assert "/etc/entragate/config.toml" in result.stderr and "entragate.toml" in result.stderr
