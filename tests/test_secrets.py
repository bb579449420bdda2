"""Secrets are never shown: not by a command, a log line, the status API or the metrics.

A known client secret, a PFX certificate password and an API token are planted in a
real configuration file; every command runs as a real process against the emulated
tenant with Graph failing (so the error paths, where secrets usually leak, are the
ones taken), and so does an agent whose sync keeps failing. Everything they print,
log or answer is searched for each secret, as itself and URL-encoded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from entragate.emulator import Emulator, EmulatorFault
from tests.helpers.emulator import make_app_certificate
from tests.helpers.process import healthy, start, stop, write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for

CLIENT_SECRET = "Planted~Client.Secret_V4lue-9qZ3xK7mW2pL8vN5"
PFX_PASSWORD = "Planted-Pfx-Passw0rd_r6Tj2Yc8"
API_TOKEN = "Planted_Api_Token-Hq5Zk9Xv2Lm7Rb4Nw8Jt3Fd6Gs1Pc0Ay"
ADDRESS = "81.2.69.142"


class Outputs:
    """Everything the processes said, with where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.exit_codes: dict[str, int] = {}

    def add(self, where: str, text: str | bytes) -> None:
        self.items.append((where, text.decode("utf-8", "replace") if isinstance(text, bytes) else text))

    def assert_free_of(self, *secrets: str) -> None:
        forms = {form for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}
        for where, text in self.items:
            for form in forms:
                assert form not in text, f"{where} shows a secret ({form[:8]}…):\n{text[:2000]}"


def cli(config: Path, *args: str, outputs: Outputs, timeout: float = 60) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTRAGATE_") and "proxy" not in k.lower()}
    result = subprocess.run(
        [sys.executable, "-m", "entragate", "--config", str(config), "-v", *args],
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    where = "entragate " + " ".join(args)
    outputs.add(f"{where} (stdout)", result.stdout)
    outputs.add(f"{where} (stderr)", result.stderr)
    outputs.exit_codes[where] = result.returncode
    return result.returncode


@pytest.fixture
def failing_graph(emu: Emulator) -> Iterator[Emulator]:
    emu.set_fault(EmulatorFault("status", host="graph", status=500))
    yield emu
    emu.clear_faults()


def secret_config(emu: Emulator, tmp_path: Path, port: int) -> Path:
    tenant = emu.add_tenant()
    app = emu.add_app(tenant, secret=CLIENT_SECRET)
    emu.create_location(tenant, "Entragate staff", ["192.0.2.255/32"])
    return write_config(emu, app, tmp_path, port, token=API_TOKEN)


def certificate_config(emu: Emulator, tmp_path: Path, port: int) -> Path:
    key, cert, _key_pem, cert_pem = make_app_certificate("entragate-secrets-test")
    pfx = tmp_path / "app.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"entragate", key, cert, None, serialization.BestAvailableEncryption(PFX_PASSWORD.encode())
        )
    )
    pfx.chmod(0o600)
    tenant = emu.add_tenant()
    app = emu.add_app(tenant, certificate_pem=cert_pem)
    emu.create_location(tenant, "Entragate staff", ["192.0.2.255/32"])
    credential = f'client_certificate = "{pfx}"\nclient_certificate_password = "{PFX_PASSWORD}"'
    return write_config(emu, app, tmp_path, port, token=API_TOKEN, credential=credential)


def run_every_command(emu: Emulator, config: Path, outputs: Outputs) -> None:
    """Each command once with Graph failing, then the credential's users with the token
    endpoint failing too; the commands did their work (or failed as they should)."""
    commands: list[tuple[str, ...]] = [
        ("grant", ADDRESS, "--acl", "staff", "--user", "alice", "--ttl", "1h"),
        ("grant", ADDRESS, "--acl", "staff", "--user", "bob", "--ttl", "1h", "--json"),
        ("list",),
        ("list", "--json"),
        ("status",),
        ("status", "--json"),
        ("sync", "--once"),
        ("sync", "--once", "--dry-run"),
        ("sync", "--once", "--json"),
        ("doctor",),
        ("doctor", "--json"),
        ("explain", "ENTRA001"),
        ("script", "add", "staff", "81.2.69.143"),
        ("script", "del", "staff", "81.2.69.143"),
        ("revoke", ADDRESS, "--acl", "staff", "--user", "alice"),
        ("flush", "--acl", "staff"),
        ("config", "check"),  # where the command exists; elsewhere a usage error
    ]
    for args in commands:
        cli(config, *args, outputs=outputs)
    emu.set_fault(EmulatorFault("status", host="login", status=400))
    for args in (("sync", "--once"), ("doctor",), ("doctor", "--json")):
        cli(config, *args, outputs=outputs)
    emu.clear_faults()
    emu.set_fault(EmulatorFault("status", host="graph", status=500))
    codes = outputs.exit_codes
    assert codes[f"entragate grant {ADDRESS} --acl staff --user alice --ttl 1h"] == 0
    assert codes["entragate script add staff 81.2.69.143"] == 0
    assert codes["entragate sync --once"] == 1 and codes["entragate doctor --json"] == 1


def run_failing_agent(config: Path, port: int, tmp_path: Path, outputs: Outputs) -> None:
    """A real agent whose every Graph call fails: its logs, status, metrics and health."""
    log = tmp_path / "agent.log"
    agent = start(config, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: healthy(url), timeout=30), log.read_text()
        cli(config, "grant", "81.2.69.144", "--acl", "staff", "--user", "carol", "--ttl", "1h",
            outputs=outputs)  # through the agent's API
        cli(config, "status", "--json", outputs=outputs)
        auth = {"Authorization": f"Bearer {API_TOKEN}"}

        def sync_failed() -> bool:
            status = requests.get(f"{url}/v1/status", headers=auth, timeout=5)
            return "ENTRA" in status.text

        assert wait_for(sync_failed, timeout=30), log.read_text()
        for path in ("/v1/status", "/v1/grants?acl=staff", "/metrics", "/healthz", "/readyz", "/"):
            answer = requests.get(url + path, headers=auth, timeout=5)
            outputs.add(f"GET {path}", answer.text)
            outputs.add(f"GET {path} (headers)", repr(dict(answer.headers)))
        unauthenticated = requests.get(f"{url}/v1/status", timeout=5)
        outputs.add("GET /v1/status without a token", unauthenticated.text)
    finally:
        stop(agent, timeout=20)
    outputs.add("agent log", log.read_bytes())


def test_no_command_shows_a_client_secret_or_the_api_token(
    failing_graph: Emulator, tmp_path: Path
) -> None:
    port = free_port()
    config = secret_config(failing_graph, tmp_path, port)
    outputs = Outputs()
    run_every_command(failing_graph, config, outputs)
    run_failing_agent(config, port, tmp_path, outputs)
    outputs.assert_free_of(CLIENT_SECRET, API_TOKEN)


def test_no_command_shows_a_certificate_password_or_the_api_token(
    failing_graph: Emulator, tmp_path: Path
) -> None:
    port = free_port()
    config = certificate_config(failing_graph, tmp_path, port)
    outputs = Outputs()
    run_every_command(failing_graph, config, outputs)
    run_failing_agent(config, port, tmp_path, outputs)
    outputs.assert_free_of(PFX_PASSWORD, API_TOKEN)
