"""The API's bearer token file: where it lives, created private, refused when others can
read it."""

from __future__ import annotations

import io
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from entragate.api import default_token_path, find_api_token, load_or_create_api_token
from entragate.config import Config, Secret
from tests.helpers.api import make_api_config

# --------------------------------------------------------------------------- token file


def test_token_sources(tmp_path: Path) -> None:
    config = make_api_config(tmp_path)
    assert default_token_path(config) == tmp_path / "api-token"
    assert find_api_token(config) is None
    token = load_or_create_api_token(config)
    path = tmp_path / "api-token"
    assert len(token) >= 40 and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_api_token(config) == token  # stable across restarts
    assert find_api_token(config) == token

    explicit = replace(config, agent=replace(config.agent, api_token=Secret(" given ")))
    assert load_or_create_api_token(explicit) == "given"

    other = tmp_path / "etc" / "token"
    other.parent.mkdir()
    other.write_text("from-file\n")
    other.chmod(0o600)
    from_file = replace(config, agent=replace(config.agent, api_token_file=other))
    assert load_or_create_api_token(from_file) == "from-file"

    pg = replace(config, agent=replace(config.agent, store="postgresql://u:p@db/entragate"))
    assert default_token_path(pg) == Path("/var/lib/entragate/api-token")



# --------------------------------------------------------------------------- token file hardening


def test_new_token_file_is_private_even_under_a_zero_umask(tmp_path: Path) -> None:
    config = make_api_config(tmp_path / "state")
    old = os.umask(0)
    try:
        token = load_or_create_api_token(config)
    finally:
        os.umask(old)
    path = tmp_path / "state" / "api-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert path.read_text() == token + "\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["api-token"]  # no temp file left


def test_concurrent_starts_agree_on_one_token(tmp_path: Path) -> None:
    import threading

    for round_ in range(10):
        config = make_api_config(tmp_path / str(round_))
        barrier = threading.Barrier(8)
        results: list[str] = []

        def start(
            cfg: Config = config, b: threading.Barrier = barrier, out: list[str] = results
        ) -> None:
            b.wait()
            out.append(load_or_create_api_token(cfg))

        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        on_disk = (tmp_path / str(round_) / "api-token").read_text().strip()
        assert set(results) == {on_disk}


def test_empty_token_file_is_replaced(tmp_path: Path) -> None:
    config = make_api_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("\n")
    path.chmod(0o600)
    token = load_or_create_api_token(config)
    assert token and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o622, 0o606])
def test_world_readable_or_writable_token_file_is_refused(tmp_path: Path, mode: int) -> None:
    from entragate.config import ConfigError

    config = make_api_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("sekret-token-value\n")
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_or_create_api_token(config)
    text = str(info.value)
    assert f"chmod 600 {path}" in text and "sekret-token-value" not in text


def test_group_readable_token_file_is_used_with_a_warning(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    config = make_api_config(tmp_path)
    path = tmp_path / "api-token"
    path.write_text("shared-with-group\n")
    path.chmod(0o640)
    assert load_or_create_api_token(config) == "shared-with-group"
    assert "api.token_file_permissive" in log_stream.getvalue()
    assert "shared-with-group" not in log_stream.getvalue()


def test_unreadable_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    from entragate.config import ConfigError

    config = make_api_config(tmp_path)
    (tmp_path / "api-token").mkdir()  # unreadable as a file, whoever runs the test
    with pytest.raises(ConfigError) as info:
        load_or_create_api_token(config)
    assert str(tmp_path / "api-token") in str(info.value)
