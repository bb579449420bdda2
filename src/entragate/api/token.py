"""The API's bearer token: where it lives and how it is created (0600, never half written).

``agent.api_token`` wins; else the file ``agent.api_token_file``, else ``api-token``
beside a SQLite store, else under /var/lib/entragate. The CLI reads the same file to
talk to a running agent, so this module imports nothing of the HTTP stack.
"""

from __future__ import annotations

import contextlib
import errno
import math
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
    Raises :class:`ConfigError` for a token file others can read or that cannot be read,
    and for a token too weak to guard the API (:func:`token_weakness`).
    """
    log = get_logger(component="api")
    if config.agent.api_token:
        return _strong(
            config.agent.api_token.reveal().strip(),
            "agent.api_token (or ENTRAGATE_API_TOKEN)",
            "put the output of `entragate token new` there, or in a file named by "
            "agent.api_token_file",
        )
    path = default_token_path(config)
    text = _read_token_file(path)
    if text:
        return _strong(text, f"the API token in {path}", _FILE_FIX.format(path=path))
    token = new_api_token()
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
                return _strong(existing, f"the API token in {path}", _FILE_FIX.format(path=path))
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


def new_api_token() -> str:
    """32 random bytes, URL-safe base64 (43 characters, 256 bits): what the agent writes
    when it has no token and what ``entragate token new`` prints."""
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- strength

MIN_TOKEN_LENGTH = 32
MIN_TOKEN_BITS = 128
# A guesser tries the character classes a token uses: the estimate is length × log2(pool).
_CLASS_SIZES = ((str.islower, 26), (str.isupper, 26), (str.isdigit, 10))
_ASCII_SYMBOLS = 33  # printable ASCII that is neither a letter nor a digit, space included
_NON_ASCII = 128  # a generous guess: nobody draws from all of Unicode
_FILE_FIX = (
    "replace it: (umask 077; entragate token new > {path}), or delete it and the agent "
    "writes a new one"
)


def estimated_token_bits(token: str) -> float:
    """A conservative estimate of the randomness in ``token``, in bits.

    ``length × log2(pool)``: the pool is the sum of the character classes the token
    uses, and the length counts only what a guesser could not predict. A character
    that continues a run (``aaaa``, ``abcd``, ``0246``: the same step as the one
    before it) counts nothing, and a token that repeats a shorter pattern counts as
    that pattern. Words are not recognised: this refuses the obviously weak, it does
    not bless a phrase.
    """
    if not token:
        return 0.0
    pool = sum(size for test, size in _CLASS_SIZES if any(ch.isascii() and test(ch) for ch in token))
    if any(ch.isascii() and not ch.isalnum() for ch in token):
        pool += _ASCII_SYMBOLS
    if not token.isascii():
        pool += _NON_ASCII
    codes = [ord(ch) for ch in token]
    predictable = sum(
        1 for i in range(2, len(codes)) if codes[i] - codes[i - 1] == codes[i - 1] - codes[i - 2]
    )
    return min(len(codes) - predictable, _period(token)) * math.log2(pool)


def _period(text: str) -> int:
    """The length of the shortest pattern whose repetition is ``text`` (KMP borders)."""
    border = [0] * len(text)
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + 1 if text[i] == text[k] else k
    return len(text) - border[-1]


def token_weakness(token: str) -> str | None:
    """Why ``token`` is too weak to guard the API, or None when it is strong enough."""
    bits = estimated_token_bits(token)
    if len(token) >= MIN_TOKEN_LENGTH and bits >= MIN_TOKEN_BITS:
        return None
    return (
        f"{len(token)} characters with about {bits:.0f} bits of randomness; the API needs "
        f"at least {MIN_TOKEN_LENGTH} characters and {MIN_TOKEN_BITS} bits"
    )


def _strong(token: str, where: str, fix: str) -> str:
    """``token``, or a :class:`ConfigError` naming where it came from and how to fix it."""
    why = token_weakness(token)
    if why is None:
        return token
    raise ConfigError([f"{where} is too weak ({why}); {fix}"])


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
