"""Checks of the configuration's files and addresses, run by ``load_config``.

Each returns problems (one line each, naming the key) instead of raising, so that
``entragate config check`` and every command show all of them at once. What is
checked here is what would otherwise fail later with a misleading code: an
unreadable ``ca_bundle`` looks like ENTRA003, a certificate without its key like
ENTRA001, a bad port like a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _read(key: str, path: Path, problems: list[str]) -> bytes | None:
    """The file's bytes, or None with the reason (missing, unreadable, a directory)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{key} {path} does not exist")
    except PermissionError:
        problems.append(f"{key} {path} is not readable by this user (uid {os.geteuid()})")
    except IsADirectoryError:
        problems.append(f"{key} {path} is a directory, not a file")
    except OSError as exc:
        problems.append(f"{key} {path} cannot be read: {exc.strerror}")
    return None


def check_trust_file(key: str, path: Path | None) -> list[str]:
    """``ca_bundle`` / ``expected_roots``: a readable PEM file with at least one certificate."""
    problems: list[str] = []
    if path is None:
        return problems
    data = _read(key, path, problems)
    if data is not None and PEM_CERTIFICATE not in data:
        problems.append(f"{key} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return problems


def check_secret_file(key: str, path: Path) -> list[str]:
    """A file holding a secret must not be readable or writable by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return []  # reported by whoever reads it
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return [f"{key} {path} is accessible to other users (mode {stat.S_IMODE(mode):04o}); chmod 600 it"]
    return []


def check_certificate(path: Path | None, password: str | None, *, key: str = "client_certificate") -> list[str]:
    """``client_certificate``: readable, private, and a usable key + certificate pair."""
    problems: list[str] = []
    if path is None:
        return problems
    if _read(key, path, problems) is None:
        return problems
    problems += check_secret_file(key, path)
    from entragate.credentials import CredentialError, load_certificate_credential

    try:
        load_certificate_credential(path, password)
    except CredentialError as exc:
        problems.append(f"{key} {path} {exc}")
    except ValueError as exc:
        problems.append(f"{key} {path} cannot be read: {str(exc)[:120]}")
    return problems


def check_listen(listen: str) -> list[str]:
    """``agent.listen``: HOST:PORT with a port from 0 to 65535 (0: any free port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        return [f"agent.listen {listen!r} is not HOST:PORT (for example 127.0.0.1:8787)"]
    if host.startswith("[") != host.endswith("]"):
        return [f"agent.listen {listen!r}: put an IPv6 address in brackets, as [::1]:8787"]
    if not 0 <= int(port) <= 65535:
        return [f"agent.listen {listen!r}: port {int(port)} is outside 0-65535"]
    return []
