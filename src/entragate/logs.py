"""Structured audit events: JSON lines, or logfmt when a person watches a terminal.

structlog is imported when the first logger is made, not when logging is configured:
every command configures logging, and most (``--help``, ``explain``, ``script``) never
log, so they start without paying for it (docs/design.md#cli).
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections.abc import MutableMapping
from typing import Any

_SECRET_KEYS = {"client_secret", "secret", "api_token", "token", "authorization", "password", "access_token"}


# Secrets that can hide inside a value: a URL's user:password@, a password=… or
# secret=… parameter (libpq keyword DSNs, query strings), an Authorization header.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:]*):[^\s/?#]*@")
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|client_secret|api_token|access_token|secret)"
    r"(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{12,}")


def _may_hold_secret(text: str) -> bool:
    """Whether any of the patterns below can match: each needs an ``@``, an ``=`` or the
    word bearer/basic. Most values (events, addresses, users, paths) have none, and this
    test costs a tenth of the three searches (docs/design.md#grant-path)."""
    if "=" in text or "@" in text:
        return True
    low = text.lower()
    return "bearer" in low or "basic" in low


def redact_text(text: str) -> str:
    """``text`` with URL passwords, ``password=…``-style values and bearer tokens masked."""
    if not text or not _may_hold_secret(text):
        return text
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    text = _KEY_VALUE.sub(r"\1\2***", text)
    return _BEARER.sub(r"\1\2***", text)


def _drop_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Defence in depth: no call site should pass a secret, but if one does it is masked.
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
        elif isinstance(event[key], str):
            event[key] = redact_text(event[key])
    return event


def printable(text: str) -> str:
    """Control, bidi and other invisible characters escaped, so text shown on a terminal
    (a log value, a note, a user name) cannot move the cursor, retitle the window or
    reorder what is shown."""
    if text.isprintable() and not any(unicodedata.category(ch) == "Cf" for ch in text):
        return text
    return "".join(
        ch
        if ch.isprintable() and unicodedata.category(ch) != "Cf"
        else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in text
    )


def _escape_controls(
    _: Any, __: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # logfmt goes to a terminal
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = printable(value)
    return event


_settings: dict[str, Any] = {"json_lines": None, "level": logging.INFO, "stream": None}
_applied = False


def configure_logging(*, json_lines: bool | None = None, level: int = logging.INFO, stream: Any = None) -> None:
    """Where and how events are written; applied when the first logger is made."""
    global _applied
    _settings.update(json_lines=json_lines, level=level, stream=stream)
    _applied = False


def _apply_settings() -> None:
    import structlog

    stream = _settings["stream"] or sys.stderr
    json_lines = _settings["json_lines"]
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_lines
        else structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            *([] if json_lines else [_escape_controls]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_settings["level"]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    global _applied
    import structlog

    if not _applied:
        _apply_settings()
        _applied = True
    return structlog.get_logger("entragate").bind(**bound)


def store_label(url: str) -> str:
    """The store URL without any password (in the user part or a ``password=`` parameter)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.startswith("sqlite"):
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:  # user[:password]@host: the password may itself contain @ or :
        authority = "***@" + authority.rpartition("@")[2]
    return redact_text(f"{scheme}://{authority}{slash}{tail}")
