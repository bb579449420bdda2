"""Validation of grant input: addresses/CIDRs, TTLs, user and ACL names.

Every refusal raises :class:`InvalidGrant` with a stable ``reason`` (used as the
API's error ``code``) and a one-line human ``message`` that names the input and
the rule it broke. Nothing here touches the store or the network.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
import uuid
from typing import Any, Literal, get_args

from .special_purpose import IPNetwork, why_not_public

Reason = Literal[
    "invalid_ip",
    "zone_id",
    "forbidden_range",
    "prefix_too_short",
    "host_bits_set",
    "invalid_ttl",
    "ttl_too_long",
    "invalid_user",
    "invalid_acl",
    "unknown_acl",
    "capacity",
    "invalid_request",
]
REASONS: frozenset[str] = frozenset(get_args(Reason))

MAX_USER_LEN = 256
MAX_ACL_LEN = 128
_PUBLIC_HINT = "Entra only sees public source addresses"


class InvalidGrant(Exception):
    """Grant input refused. Immutable once built; ``reason`` is a stable code."""

    __slots__ = ("reason", "message", "value")
    reason: str
    message: str
    value: str | None

    def __init__(self, reason: Reason | str, message: str, value: object = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown InvalidGrant reason {reason!r}")
        super().__init__(message)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "value", None if value is None else str(value))

    def __setattr__(self, name: str, val: Any) -> None:
        if name in ("reason", "message", "value"):
            raise AttributeError(f"InvalidGrant.{name} is read-only")
        # __traceback__, __cause__, __context__ … stay assignable (contextlib needs them)
        super().__setattr__(name, val)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"InvalidGrant(reason={self.reason!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvalidGrant):
            return NotImplemented
        return (self.reason, self.message, self.value) == (other.reason, other.message, other.value)

    def __hash__(self) -> int:
        return hash((self.reason, self.message, self.value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (InvalidGrant, (self.reason, self.message, self.value))

    def to_dict(self) -> dict[str, str]:
        """The API error body: ``{"code": reason, "message": message}``."""
        return {"code": self.reason, "message": self.message}


# --------------------------------------------------------------------------- addresses

# Microsoft documents IPv4 named-location ranges as "CIDR masks greater than /8": /9 and longer.
MIN_PREFIX_V4 = 9
MIN_PREFIX_V6 = 16


def parse_cidr(
    text: str, *, min_prefix_v4: int = MIN_PREFIX_V4, min_prefix_v6: int = MIN_PREFIX_V6
) -> IPNetwork:
    """Parse an address or CIDR a client may be granted.

    A bare address becomes /32 or /128. Refused (``InvalidGrant``): anything that
    is not an address/CIDR, zone ids, host bits set (never silently widened),
    prefixes shorter than the minimum, and special-purpose address space
    (``grants/special_purpose.py``, one table: no ``is_global``, whose answer changes
    between Python patch releases).
    """
    if not isinstance(text, str):
        raise InvalidGrant(
            "invalid_ip", f"{text!r} is not an IP address or CIDR (expected a string)", text
        )
    raw = text.strip()
    if not raw:
        raise InvalidGrant("invalid_ip", "empty address: expected an IP address or CIDR", text)
    if "%" in raw:
        raise InvalidGrant(
            "zone_id",
            f"{raw} carries a zone id (%...); zone ids are local to one host, grant the address without it",
            raw,
        )
    if any(ch.isspace() for ch in raw) or not raw.isascii():
        # Non-ASCII digits ("/٣٢") satisfy str.isdigit and int(), never an address parser.
        raise InvalidGrant("invalid_ip", f"{raw!r} is not an IP address or CIDR", raw)
    addr_part, slash, prefix_part = raw.partition("/")
    if slash and not prefix_part.isdigit():
        # ipaddress also accepts netmask/hostmask forms; keep the contract to prefix lengths.
        raise InvalidGrant(
            "invalid_ip",
            f"{raw} is not an IP address or CIDR (the part after / must be a prefix length)",
            raw,
        )
    try:
        address = ipaddress.ip_address(addr_part)
    except ValueError:
        raise InvalidGrant("invalid_ip", f"{raw} is not an IP address or CIDR", raw) from None
    max_len = address.max_prefixlen
    prefix = int(prefix_part) if slash else max_len
    if prefix > max_len:
        raise InvalidGrant(
            "invalid_ip",
            f"{raw} has prefix length /{prefix}; IPv{address.version} allows at most /{max_len}",
            raw,
        )
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    if net.network_address != address:
        raise InvalidGrant(
            "host_bits_set",
            f"{raw} has host bits set; the network is {net}, or grant the single address as "
            f"{address}/{max_len}",
            raw,
        )
    minimum = min_prefix_v4 if net.version == 4 else min_prefix_v6
    if net.prefixlen < minimum:
        raise InvalidGrant(
            "prefix_too_short",
            f"{raw} is a /{net.prefixlen}; IPv{net.version} grants must be /{minimum} or longer",
            raw,
        )
    why = why_not_public(net)
    if why is not None:
        raise InvalidGrant("forbidden_range", f"{raw} {why}; {_PUBLIC_HINT}", raw)
    return net


def normalize_cidr(text: str) -> str:
    """Structural normalisation only (no routability policy): the canonical network string.

    Used by the store for every cidr it is given; policy (``parse_cidr``) is the
    caller's job because its limits come from configuration.
    """
    if isinstance(text, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(text)
    raw = str(text).strip()
    if "%" in raw:
        raise InvalidGrant("zone_id", f"{raw} carries a zone id (%...)", raw)
    try:
        return str(ipaddress.ip_network(raw, strict=True))
    except ValueError as exc:
        if "host bits set" in str(exc):
            wide = ipaddress.ip_network(raw, strict=False)
            raise InvalidGrant(
                "host_bits_set", f"{raw} has host bits set; the network is {wide}", raw
            ) from None
        raise InvalidGrant("invalid_ip", f"{raw} is not an IP address or CIDR", raw) from None


# --------------------------------------------------------------------------- TTLs

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_TERM = re.compile(r"(\d+)([smhdw])")


def parse_ttl(value: str | int | float) -> int:
    """Parse a TTL into whole seconds.

    Accepts an int or integral float (seconds), a digit string (seconds), or a
    duration such as ``"90s"``, ``"15m"``, ``"8h"``, ``"7d"``, ``"1w"``, ``"1h30m"``.
    Non-positive values are refused here as well as in :func:`check_ttl`.
    """
    if isinstance(value, bool):
        raise InvalidGrant("invalid_ttl", f"TTL {value!r} is not a duration", value)
    seconds: int
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise InvalidGrant(
                "invalid_ttl", f"TTL {value!r} is not a whole number of seconds", value
            )
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"[+-]?\d+", text):
            seconds = int(text)
        elif re.fullmatch(r"(\d+[smhdw])+", text):
            units_seen = [m.group(2) for m in _TTL_TERM.finditer(text)]
            if len(set(units_seen)) != len(units_seen):
                raise InvalidGrant("invalid_ttl", f"TTL {value!r} repeats a unit", value)
            seconds = sum(int(n) * _TTL_UNITS[u] for n, u in _TTL_TERM.findall(text))
        else:
            raise InvalidGrant(
                "invalid_ttl",
                f"TTL {value!r} is not a duration (use seconds, or e.g. 90s, 15m, 8h, 7d)",
                value,
            )
    else:
        raise InvalidGrant("invalid_ttl", f"TTL {value!r} is not a duration", value)
    if seconds <= 0:
        raise InvalidGrant("invalid_ttl", f"TTL {value!r} must be positive", value)
    return seconds


def format_ttl(seconds: int) -> str:
    """Render seconds compactly (``28800`` → ``"8h"``, ``5400`` → ``"1h30m"``)."""
    if seconds <= 0:
        return f"{seconds}s"
    parts = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def check_ttl(seconds: int, max_ttl: int | None) -> int:
    """Refuse a TTL that is not positive or exceeds ``max_ttl`` (None: no limit)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise InvalidGrant(
            "invalid_ttl", f"TTL {seconds!r} must be a positive number of seconds", seconds
        )
    if max_ttl is not None and seconds > max_ttl:
        raise InvalidGrant(
            "ttl_too_long",
            f"TTL {format_ttl(seconds)} ({seconds}s) exceeds max_ttl {format_ttl(max_ttl)} ({max_ttl}s)",
            seconds,
        )
    return seconds


# --------------------------------------------------------------------------- names


def has_unsafe_characters(text: str) -> bool:
    """Control, format (bidi, zero-width), line-separator characters or lone surrogates
    (undecodable bytes): nothing a name or a note shown on a terminal may carry."""
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in text)


def validate_user(user: object) -> str:
    """A user is any non-empty string of at most 256 characters without control characters.

    Surrounding whitespace is trimmed.
    """
    return _validate_name(
        user,
        "user",
        max_len=MAX_USER_LEN,
        empty="every grant names who holds it",
        unsafe="control characters",
    )


_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_object_id(user: str) -> bool:
    """A directory object id: a GUID in its canonical form."""
    try:
        return str(uuid.UUID(user.strip())) == user.strip().lower()
    except ValueError:
        return False


def is_directory_user(user: str) -> bool:
    """A user Graph can name: a user principal name (``alice@contoso.com``) or an object id."""
    return bool(_UPN.match(user.strip())) or is_object_id(user)


def validate_acl(acl: object) -> str:
    """An ACL name: non-empty, at most 128 characters, no control characters and no ``/``.

    (It appears in URL paths such as ``/v1/acls/{acl}/flush``.) Surrounding
    whitespace is trimmed. Whether the ACL is configured is the caller's business.
    """
    return _validate_name(
        acl,
        "acl",
        max_len=MAX_ACL_LEN,
        empty="name the access list",
        unsafe="a control character or '/'",
        forbidden="/",
    )


def _validate_name(
    value: object, what: str, *, max_len: int, empty: str, unsafe: str, forbidden: str = ""
) -> str:
    """A trimmed, non-empty string of at most ``max_len`` characters, none of them unsafe
    or in ``forbidden``; otherwise ``InvalidGrant("invalid_" + what)``."""
    code = f"invalid_{what}"
    if not isinstance(value, str):
        raise InvalidGrant(code, f"{what} {value!r} must be a string", value)
    text = value.strip()
    if not text:
        raise InvalidGrant(code, f"{what} is empty; {empty}", value)
    if len(text) > max_len:
        raise InvalidGrant(
            code, f"{what} {text[:32]!r}… is {len(text)} characters; at most {max_len}", value
        )
    if has_unsafe_characters(text) or any(ch in text for ch in forbidden):
        raise InvalidGrant(code, f"{what} {text!r} contains {unsafe}", value)
    return text
