"""A weak API token refuses to start the agent; ``entragate token new`` makes a good one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from entragate.api.token import (
    MIN_TOKEN_BITS,
    estimated_token_bits,
    new_api_token,
    token_weakness,
)
from entragate.emulator import AppRegistration, Emulator
from tests.helpers.process import write_config
from tests.helpers.servers import free_port

WEAK = [
    "",
    "short10chr",  # 10 characters
    "Tr0ub4dor&3xY!",  # varied, but 14 characters
    "a" * 40,
    "abcd" * 10,
    "0123456789" * 4,
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",  # one long run
    "cli-token-" + "y" * 32,
    "9" * 16 + "8" * 16,
    "31415926535897932384626433832795",  # 32 digits: about 106 bits, however random
    "deadbeef" * 5,
]
STRONG = [
    "gAaYXah9UMeac8TOwVjLSseLpl3zdHfoMPduWoeVfLo",  # entragate token new
    "3f2a9c41d07be8a65c3e19f0b27d4a88",  # 16 random bytes as hex: 128 bits
    "Vq3Lr8Zs1Kc6Xw9Nh2Pb5Tj7Md4Gf0Ya",
    "q7/0nX3kP+Zb9LwT2cR5vY8hJ1mD6sF4gE0aU3iO=",  # base64
]


@pytest.mark.parametrize("token", WEAK)
def test_weak_tokens_are_refused(token: str) -> None:
    why = token_weakness(token)
    assert why is not None and "at least 32 characters and 128 bits" in why


@pytest.mark.parametrize("token", STRONG)
def test_strong_tokens_are_accepted(token: str) -> None:
    assert token_weakness(token) is None


def test_generated_tokens_are_always_strong() -> None:
    tokens = {new_api_token() for _ in range(500)}
    assert len(tokens) == 500
    assert all(len(t) == 43 and token_weakness(t) is None for t in tokens)
    assert min(estimated_token_bits(t) for t in tokens) > 1.5 * MIN_TOKEN_BITS


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entragate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_10_character_token_refuses_to_start(
    emu: Emulator, app: AppRegistration, tmp_path: Path
) -> None:
    config = write_config(emu, app, tmp_path, free_port(), token="short10chr")
    result = run("--config", str(config), "run", timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "agent.api_token" in result.stderr and "too weak" in result.stderr
    assert "entragate token new" in result.stderr
    assert "short10chr" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_weak_token_file_refuses_to_start(
    emu: Emulator, app: AppRegistration, tmp_path: Path
) -> None:
    config = write_config(emu, app, tmp_path, free_port())
    token_file = tmp_path / "api-token"
    token_file.write_text("x" * 48 + "\n")
    token_file.chmod(0o600)
    text = config.read_text().replace(
        next(line for line in config.read_text().splitlines() if line.startswith("api_token")),
        f'api_token_file = "{token_file}"',
    )
    config.write_text(text)
    result = run("--config", str(config), "run", timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"the API token in {token_file} is too weak" in result.stderr
    assert f"entragate token new > {token_file}" in result.stderr


def test_token_new_prints_a_strong_token_each_time() -> None:
    first, second = run("token", "new"), run("token", "new")
    assert first.returncode == 0 and second.returncode == 0
    assert first.stdout != second.stdout
    token = first.stdout.strip()
    assert first.stdout == token + "\n" and len(token) == 43
    assert token_weakness(token) is None
    help_text = run("token", "new", "--help").stdout
    assert "Example" in help_text and "umask 077; entragate token new >" in help_text
