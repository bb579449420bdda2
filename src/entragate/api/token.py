"""The API's bearer token: where it lives and how it is created (0600, never half written).

``agent.api_token`` wins; else the file ``agent.api_token_file``, else ``api-token``
beside a SQLite store, else under /var/lib/entragate. The CLI reads the same file to
talk to a running agent, so this module imports nothing of the HTTP stack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from pathlib import Path

from entragate.config import Config, ConfigError
from entragate.logs import get_logger

TOKEN_FILE_NAME = "api-token"
DEFAULT_TOKEN_DIR = Path("/var/lib/entragate")


def default_token_path(config: Config) -> Path:
    """``api_token_file``, else ``api-token`` beside a SQLite store, else /var/lib/entragate."""
    if config.agent.api_token_file is not None:
        return config.agent.api_token_file
    store = config.agent.store
    if store.startswith("sqlite:"):
        try:
            from entragate.grants.sqlite import path_from_url

            return path_from_url(store).expanduser().parent / TOKEN_FILE_NAME
        except ValueError:
            pass
    return DEFAULT_TOKEN_DIR / TOKEN_FILE_NAME


def find_api_token(config: Config) -> str | None:
    """The token the agent uses, if one is configured or already written; never creates one."""
    if config.agent.api_token:
        return config.agent.api_token.reveal().strip()
    path = default_token_path(config)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _read_token_file(path: Path) -> str:
    """The token in ``path`` ("" when missing or empty); refuses a file others can read or
    change, and turns unreadable files into a configuration error naming the path."""
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(4096)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(
            [
                f"agent API token file {path}: cannot read it ({exc.strerror or exc}); run the "
                "agent as the user that owns it, or set agent.api_token_file"
            ]
        ) from None
    if mode & 0o026:  # world-readable, or writable by group or others
        raise ConfigError(
            [
                f"agent API token file {path} is readable or writable by other users (mode "
                f"{oct(stat.S_IMODE(mode))}); anyone who can read it can grant addresses. "
                f"Fix: chmod 600 {path}"
            ]
        )
    if mode & 0o040:
        get_logger(component="api").warning(
            "api.token_file_permissive",
            path=str(path),
            mode=oct(stat.S_IMODE(mode)),
            note="the file's group can use the API",
            fix=f"chmod 600 {path}",
        )
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            [f"agent API token file {path} is not UTF-8 text; delete it to get a new token"]
        ) from None


def load_or_create_api_token(config: Config) -> str:
    """``agent.api_token``, else the token file's contents, else a new token written 0600.

    A new token is written to a private temporary file beside the target and linked
    into place, so the token file never exists empty, half written or with looser
    permissions, and concurrent starts all end up with the one token that won.
    Raises :class:`ConfigError` for a token file others can read or that cannot be read.
    """
    log = get_logger(component="api")
    if config.agent.api_token:
        return config.agent.api_token.reveal().strip()
    path = default_token_path(config)
    text = _read_token_file(path)
    if text:
        return text
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    except OSError as exc:
        raise ConfigError(
            [
                f"agent API token file {path}: cannot create it ({exc.strerror or exc}); create "
                "the directory for the agent's user, or set agent.api_token / api_token_file"
            ]
        ) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic; fails if another start got there first
        except FileExistsError:
            existing = _read_token_file(path)
            if existing:
                return existing
            os.replace(tmp, path)  # an empty file left behind: replace it atomically
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.replace(tmp, path)  # a file system without hard links: still never partial
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    log.info("api.token_created", path=str(path))
    return token


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
