"""Grants: the grant model, input validation and the durable grant store (SQLite or
PostgreSQL)."""

from __future__ import annotations

from .model import (
    Grant,
    GrantRequest,
    InvalidRequest,
    RevokeRequest,
    canonical_user,
    parse_rfc3339,
    rfc3339,
    utcnow,
)
from .store import CapacityCheck, GrantStore, StoreError, StoreUnavailable, store_kind
from .validation import (
    InvalidGrant,
    check_ttl,
    format_ttl,
    has_unsafe_characters,
    normalize_cidr,
    parse_cidr,
    parse_ttl,
    validate_acl,
    validate_user,
)

__all__ = [
    "CapacityCheck",
    "Grant",
    "GrantRequest",
    "GrantStore",
    "InvalidGrant",
    "InvalidRequest",
    "RevokeRequest",
    "StoreError",
    "StoreUnavailable",
    "canonical_user",
    "check_ttl",
    "format_ttl",
    "has_unsafe_characters",
    "normalize_cidr",
    "open_store",
    "parse_cidr",
    "parse_rfc3339",
    "parse_ttl",
    "rfc3339",
    "utcnow",
    "validate_acl",
    "validate_user",
]


def open_store(url: str) -> GrantStore:
    """Open (creating if needed) the grant store named by ``url``.

    ``sqlite:///abs/path.db`` (also ``sqlite:relative.db``) or
    ``postgresql://user:pass@host/db`` (also ``postgres://``). Raises
    ``StoreUnavailable`` when the database cannot be reached, ``ValueError`` for
    an unsupported URL.
    """
    url = url.strip()
    if store_kind(url) == "postgresql":
        from .postgres import PostgresGrantStore

        return PostgresGrantStore(url)
    from .sqlite import SQLiteGrantStore, path_from_url

    return SQLiteGrantStore(path_from_url(url))
