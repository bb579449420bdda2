"""Files only their owner may read: the grant store and its lock (the API token file
follows the same rule in the API package).

Created private from the first byte: the mode is given to ``open``/``mkdir`` at
creation (0600 / 0700), never fixed by a ``chmod`` afterwards, so there is no
moment in which another local user can open the file. The process umask is left
alone: it is process-wide, and changing it around one creation would also change
files other threads create meanwhile. Files found with looser modes are reported,
not silently changed: the operator may share them on purpose, and a warning says
how to make them private (docs/design.md#store).
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_GROUP_OTHER = 0o077


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if absent; the leaf is created 0700.

    An existing directory keeps its mode (see :func:`loose_modes`).
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when created here."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def loose_modes(paths: tuple[Path, ...]) -> list[tuple[Path, int]]:
    """Each existing path that its group or others may access, with its permission bits."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & _GROUP_OTHER:
            found.append((path, mode))
    return found


def describe_loose(path: Path, mode: int) -> str:
    """One line: what is too open and the command that makes it private."""
    wanted = PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE
    return (
        f"{path} is mode {mode:04o}: other local users can access it; "
        f"make it private with chmod {wanted:o} {path}"
    )


# Configuration keys whose value is a credential (docs/design.md#store): a file holding
# one of them must not be readable by other local users.
_SECRET_KEYS = ("client_secret", "client_certificate_password")
_SECRET_AGENT_KEYS = ("api_token",)


def config_file_exposure(path: Path) -> str | None:
    """One line when the configuration file ``path`` holds a secret and others can read it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # the configuration loader reports unreadable files
    if not mode & 0o004:
        return None
    table = raw.get("agent")
    agent: dict[str, object] = table if isinstance(table, dict) else {}
    held = [k for k in _SECRET_KEYS if raw.get(k)] + [
        f"agent.{k}" for k in _SECRET_AGENT_KEYS if agent.get(k)
    ]
    if not held:
        return None
    return (
        f"configuration file {path} holds {', '.join(held)} and is mode {mode:04o}: every "
        f"local user can read it; chmod 600 {path}, or give the secret through its "
        "ENTRAGATE_* environment variable or *_file key"
    )
