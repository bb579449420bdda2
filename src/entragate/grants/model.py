"""The grant model: a stored :class:`Grant`, and the requests that make and end grants.

A grant request arrives as a JSON object (the HTTP API), as command-line options
(``grant``, ``revoke``, ``script``) or as keyword arguments (``GrantService.grant``).
Each goes through one parser, :meth:`GrantRequest.parse` / :meth:`RevokeRequest.parse`,
which checks the type and format of every field and raises :class:`InvalidRequest`
(the API answers 400). Whether a well-formed request is allowed — the address rules,
``max_ttl``, a configured ACL, the characters of a name — needs the configuration
and is the grant service's decision (:class:`InvalidGrant`, 422).
(docs/design.md#grant-model)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .validation import InvalidGrant, has_unsafe_characters, parse_ttl, validate_user

GRANT_FIELDS = ("acl", "ip", "user", "ttl", "expires_at", "note", "source")
REVOKE_FIELDS = ("acl", "ip", "user")
MAX_NOTE_LEN = 1024
MAX_SOURCE_LEN = 64
MAX_TTL_TEXT = 32  # "1w6d23h59m59s" is 13; anything much longer is not a duration

# RFC 3339 date-time; the offset is optional here only to name a missing one precisely.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?"
)


# --------------------------------------------------------------------------- times


def utcnow() -> datetime:
    return datetime.now(UTC)


def ensure_utc(value: datetime, what: str = "timestamp") -> datetime:
    """Refuse naive datetimes (ambiguous); convert aware ones to UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2024-05-01T12:00:00Z`` (fractional seconds only when present)."""
    return ensure_utc(value).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    return ensure_utc(value)


# --------------------------------------------------------------------------- stored grants


@dataclass(frozen=True)
class Grant:
    """One user's hold on one range in one ACL until ``expires_at`` (a row of the store)."""

    acl: str
    user: str
    cidr: str
    expires_at: datetime
    created_at: datetime
    source: str = "cli"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "acl": self.acl,
            "user": self.user,
            "cidr": self.cidr,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "source": self.source,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        return cls(
            acl=str(data["acl"]),
            user=str(data["user"]),
            cidr=str(data["cidr"]),
            expires_at=parse_rfc3339(str(data["expires_at"])),
            created_at=parse_rfc3339(str(data["created_at"])),
            source=str(data.get("source", "")),
            note=str(data.get("note", "")),
        )

    def remaining(self, now: datetime | None = None) -> float:
        """Seconds until expiry (negative once expired)."""
        return (self.expires_at - (now or utcnow())).total_seconds()


# --------------------------------------------------------------------------- requests


class InvalidRequest(InvalidGrant):
    """A request that does not parse: a field missing, unknown, of the wrong type or
    format (API: 400). ``reason`` names the field's rule (``invalid_ttl`` …) or is
    ``invalid_request``; an :class:`InvalidGrant` proper is a refusal by policy (422)."""

    @property
    def code(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.message, self.value))


def canonical_user(user: object) -> str:
    """``validate_user`` plus composed Unicode (NFC), so "é" typed as e + U+0301 and as
    U+00E9 is one user, whose grants revoke and ``script flush`` both find."""
    text = validate_user(user)
    return validate_user(unicodedata.normalize("NFC", text))


@dataclass(frozen=True)
class GrantRequest:
    """A grant asked for: exactly one of ``ttl`` (seconds) and ``expires_at`` (aware)."""

    acl: str
    ip: str
    user: str
    ttl: int | None = None
    expires_at: datetime | None = None
    note: str = ""
    source: str = "api"

    @classmethod
    def parse(
        cls, body: object, *, durations: bool = False, default_source: str = "api"
    ) -> GrantRequest:
        """The one parser of grant parameters.

        ``body`` is a JSON object (strict: ``ttl`` a positive integer of seconds) or,
        with ``durations``, the values a person typed (``ttl`` may also be ``"8h"``,
        ``expires_at`` a datetime). Absent and null fields are the same.
        """
        fields = _object(body, GRANT_FIELDS, required=("acl", "ip", "user"))
        ttl = _ttl(fields.get("ttl"), durations=durations)
        expires_at = _expiry(fields.get("expires_at"))
        if ttl is not None and expires_at is not None:
            raise InvalidRequest("invalid_ttl", "give either ttl or expires_at, not both")
        if ttl is None and expires_at is None:
            raise InvalidRequest(
                "invalid_ttl", "a grant needs a ttl (seconds, e.g. 28800) or an expires_at time"
            )
        return cls(
            acl=_name(fields, "acl", "invalid_acl"),
            ip=_name(fields, "ip", "invalid_ip"),
            user=_name(fields, "user", "invalid_user"),
            ttl=ttl,
            expires_at=expires_at,
            note=_plain_text("note", fields.get("note"), MAX_NOTE_LEN),
            source=_plain_text("source", fields.get("source"), MAX_SOURCE_LEN) or default_source,
        )

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /v1/grants`` that parses back into this request."""
        body: dict[str, Any] = {"acl": self.acl, "ip": self.ip, "user": self.user}
        if self.ttl is not None:
            body["ttl"] = self.ttl
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.isoformat()
        if self.note:
            body["note"] = self.note
        body["source"] = self.source
        return body


@dataclass(frozen=True)
class RevokeRequest:
    """Grants of ``ip`` in ``acl`` to end: of ``user``, or of every holder when None."""

    acl: str
    ip: str
    user: str | None = None

    @classmethod
    def parse(cls, body: object) -> RevokeRequest:
        fields = _object(body, REVOKE_FIELDS, required=("acl", "ip"))
        user = fields.get("user")
        return cls(
            acl=_name(fields, "acl", "invalid_acl"),
            ip=_name(fields, "ip", "invalid_ip"),
            user=None if user is None else _name(fields, "user", "invalid_user"),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"acl": self.acl, "ip": self.ip}
        if self.user is not None:
            body["user"] = self.user
        return body


# --------------------------------------------------------------------------- field rules


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _object(body: object, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequest("invalid_request", "the body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise InvalidRequest(
            "invalid_request",
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )
    missing = [k for k in required if body.get(k) is None]
    if missing:
        raise InvalidRequest("invalid_request", f"missing field(s) {', '.join(missing)}")
    return dict(body)


def _name(fields: Mapping[str, Any], field: str, code: str) -> str:
    """A non-empty string, trimmed; what it may contain is the service's rule."""
    value = fields[field]
    if not isinstance(value, str):
        raise InvalidRequest(code, f"{field} must be a string (got a JSON {_json_type(value)})")
    text = value.strip()
    if not text:
        raise InvalidRequest(code, f"{field} is empty")
    return text


def _ttl(value: object, *, durations: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InvalidRequest("invalid_ttl", "ttl must be a positive number of seconds")
        return value
    if durations and isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TTL_TEXT:
            raise InvalidRequest("invalid_ttl", f"ttl {text[:20]!r}… is not a duration")
        try:
            return parse_ttl(text)
        except InvalidGrant as exc:
            raise InvalidRequest("invalid_ttl", exc.message, text) from None
    hint = " (durations such as 8h are for the command line)" if isinstance(value, str) else ""
    raise InvalidRequest(
        "invalid_ttl",
        f"ttl must be a whole number of seconds such as 28800, not a JSON {_json_type(value)}"
        + hint,
    )


def _expiry(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        match = _RFC3339.fullmatch(text)
        try:
            if match is None:
                raise ValueError(text)
            moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(
                "invalid_ttl",
                f"expires_at {text[:40]!r} is not an RFC 3339 time (e.g. 2030-01-01T12:00:00Z)",
                text[:40],
            ) from None
    else:
        raise InvalidRequest(
            "invalid_ttl", f"expires_at must be an RFC 3339 string, not a JSON {_json_type(value)}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequest(
            "invalid_ttl",
            f"expires_at {moment.isoformat()} has no time zone; use RFC 3339 with Z or an offset",
            moment.isoformat(),
        )
    return moment  # not converted yet: the range check reports an overflow precisely


def _plain_text(field: str, value: object, max_len: int) -> str:
    """A free-text field (note, source): at most ``max_len`` characters, no control, format
    (bidi, zero-width) or line-separator characters, which would reach terminals."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("invalid_request", f"{field} must be a string")
    text = value.strip()
    if len(text) > max_len:
        raise InvalidRequest("invalid_request", f"{field} is {len(text)} characters; at most {max_len}")
    if has_unsafe_characters(text):
        raise InvalidRequest(
            "invalid_request",
            f"{field} {text[:40]!r} contains control or invisible characters; send plain text",
        )
    return text
