"""The grant operations shared by the HTTP API and the CLI's direct mode.

Everything a caller sends is validated here (SPEC section 4) before the store is
touched, so a refusal (:class:`InvalidGrant`) leaves the store exactly as it was.
A grant that would not fit the ACL's shards is refused with ENTRA007 inside the
store's transaction (``capacity_check``), so two concurrent grants cannot both
squeeze into the last free slot.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from entragate.config import Config
from entragate.grants import (
    Grant,
    GrantStore,
    InvalidGrant,
    check_ttl,
    format_ttl,
    normalize_cidr,
    parse_cidr,
    parse_ttl,
    rfc3339,
    utcnow,
    validate_acl,
    validate_user,
)
from entragate.logs import get_logger
from entragate.sync.engine import check_capacity

Capacity = Callable[[str, list[str]], None]

MAX_NOTE_LEN = 1024
MAX_SOURCE_LEN = 64


class UnknownAcl(InvalidGrant):
    """The ACL name is well formed but not configured (``[acl.NAME]``)."""

    def __init__(self, acl: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none configured"
        super().__init__("unknown_acl", f"acl {acl!r} is not configured (known: {names})", acl)


def default_capacity(config: Config) -> Capacity:
    """The ACL's shards (``max_ranges`` x ``max_locations``) as the limit: the sync
    engine's own rule, so the CLI's direct mode refuses exactly what the agent would."""

    def check(acl_name: str, cidrs: list[str]) -> None:
        check_capacity(config.acls[acl_name], cidrs)

    return check


class GrantService:
    def __init__(
        self,
        config: Config,
        store: GrantStore,
        *,
        capacity: Capacity | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.capacity = capacity if capacity is not None else default_capacity(config)
        self.on_change = on_change

    @property
    def log(self) -> Any:
        # looked up per use, so events follow configure_logging calls made after start-up
        return get_logger(component="grants")

    # ------------------------------------------------------------------ validation

    def check_acl(self, acl: object) -> str:
        name = validate_acl(acl)
        if name not in self.config.acls:
            raise UnknownAcl(name, self.config.acls)
        return name

    def _expiry(
        self, ttl: int | str | None, expires_at: datetime | None, now: datetime
    ) -> datetime:
        max_ttl = self.config.agent.max_ttl
        if ttl is not None and expires_at is not None:
            raise InvalidGrant("invalid_ttl", "give either ttl or expires_at, not both")
        if ttl is None and expires_at is None:
            raise InvalidGrant(
                "invalid_ttl", "a grant needs a ttl (e.g. 8h) or an expires_at time; none given"
            )
        if ttl is not None:
            seconds = check_ttl(parse_ttl(ttl), max_ttl)
            return now + timedelta(seconds=seconds)
        assert expires_at is not None
        if not isinstance(expires_at, datetime):
            raise InvalidGrant("invalid_ttl", f"expires_at {expires_at!r} is not a time")
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise InvalidGrant(
                "invalid_ttl",
                f"expires_at {expires_at.isoformat()} has no time zone; use RFC 3339 "
                "with Z or an offset",
                expires_at.isoformat(),
            )
        remaining = (expires_at - now).total_seconds()
        if remaining <= 0:
            raise InvalidGrant(
                "invalid_ttl", f"expires_at {rfc3339(expires_at)} is not in the future"
            )
        if remaining > max_ttl:
            raise InvalidGrant(
                "ttl_too_long",
                f"expires_at {rfc3339(expires_at)} is {format_ttl(int(remaining))} away; "
                f"max_ttl is {format_ttl(max_ttl)} ({max_ttl}s)",
                rfc3339(expires_at),
            )
        return expires_at

    # ------------------------------------------------------------------ operations

    def grant(
        self,
        acl: str,
        ip: str,
        user: str,
        *,
        ttl: int | str | None = None,
        expires_at: datetime | None = None,
        note: str = "",
        source: str = "cli",
        now: datetime | None = None,
    ) -> Grant:
        """Validate and store a grant (renewing an existing one); returns the stored grant."""
        acl = self.check_acl(acl)
        user = validate_user(user)
        cidr = str(parse_cidr(ip))
        now = now or utcnow()
        expiry = self._expiry(ttl, expires_at, now)
        note = str(note or "").strip()[:MAX_NOTE_LEN]
        source = str(source)[:MAX_SOURCE_LEN]

        def capacity_check(cidrs: list[str]) -> None:
            self.capacity(acl, cidrs)

        grant, renewed = self.store.add(
            acl,
            user,
            cidr,
            expiry,
            source=source,
            note=note,
            now=now,
            capacity_check=capacity_check,
        )
        self.log.info(
            "grant.renewed" if renewed else "grant.created",
            acl=grant.acl,
            user=grant.user,
            cidr=grant.cidr,
            expires_at=rfc3339(grant.expires_at),
            source=grant.source,
        )
        self._changed()
        return grant

    def revoke(self, acl: str, ip: str, user: str | None = None) -> int:
        """End the grants of ``ip`` in ``acl`` (of ``user`` only when given); idempotent."""
        acl = self.check_acl(acl)
        cidr = normalize_cidr(ip)  # structural only: a grant made under older limits can go
        if user is not None:
            user = validate_user(user)
        removed = self.store.revoke(acl, cidr, user)
        for grant in removed:
            self.log.info(
                "grant.revoked",
                acl=grant.acl,
                user=grant.user,
                cidr=grant.cidr,
                expires_at=rfc3339(grant.expires_at),
                source=grant.source,
            )
        if removed:
            self._changed()
        return len(removed)

    def flush(self, acl: str) -> int:
        """End every grant of ``acl``."""
        acl = self.check_acl(acl)
        removed = self.store.flush(acl)
        for grant in removed:
            self.log.info(
                "grant.revoked",
                acl=grant.acl,
                user=grant.user,
                cidr=grant.cidr,
                expires_at=rfc3339(grant.expires_at),
                source=grant.source,
                reason="flush",
            )
        self.log.info("acl.flushed", acl=acl, ended=len(removed))
        if removed:
            self._changed()
        return len(removed)

    def list(self, acl: str | None = None) -> builtins.list[Grant]:
        """Active grants (of one ACL, or of all)."""
        if acl is not None:
            acl = self.check_acl(acl)
        return self.store.active(acl)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception as exc:  # the grant is stored; a wake-up hook must not undo that
                self.log.warning("grant.on_change_failed", error=type(exc).__name__)
