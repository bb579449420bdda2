"""The grant operations shared by the HTTP API and the CLI's direct mode.

Requests arrive parsed (:class:`GrantRequest`, :class:`RevokeRequest`: types and
formats are the model's); the rules that need the configuration are checked here
(docs/design.md#grant-model) before the store is touched, so a refusal
(:class:`InvalidGrant`) leaves the store exactly as it was. A grant that would not fit
the ACL's shards is refused with ``Code.ENTRA007`` inside the store's transaction
(``capacity_check``), so two concurrent grants cannot both squeeze into the last free slot.
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from entragate.config import Config
from entragate.errors import RequestRejected
from entragate.grants import (
    Grant,
    GrantRequest,
    GrantStore,
    InvalidGrant,
    InvalidRequest,
    RevokeRequest,
    canonical_user,
    check_ttl,
    format_ttl,
    normalize_cidr,
    parse_cidr,
    rfc3339,
    utcnow,
    validate_acl,
)
from entragate.grants.validation import is_directory_user
from entragate.logs import get_logger
from entragate.sync.ranges import make_capacity_check

__all__ = ["GrantService", "InvalidRequest", "UnknownAcl", "canonical_user", "default_capacity"]

Capacity = Callable[[str, Sequence[str]], None]

MAX_IP_TEXT = 64  # the longest IPv6 CIDR text is 43 characters; zone ids add a few

_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def unmap_ipv4(ip: str) -> str:
    """``::ffff:a.b.c.d`` (an IPv4 client as a dual-stack socket reports it) → ``a.b.c.d``.

    Entra evaluates an IPv4 client by its IPv4 source address, never by the mapped
    IPv6 form, so a grant of the mapped form would never match. The mapped form names
    exactly the same address(es), so this grants nothing wider. Anything else, including
    mapped prefixes shorter than /96, is returned unchanged for ``parse_cidr`` to judge.
    Text far longer than any address is refused here, keeping error messages short.
    """
    if len(ip.strip()) > MAX_IP_TEXT:
        raise InvalidGrant(
            "invalid_ip", f"{ip.strip()[:24]!r}… is not an IP address or CIDR (too long)"
        )
    if ":" not in ip or "%" in ip:
        return ip
    addr_text, slash, prefix_text = ip.strip().partition("/")
    try:
        address = ipaddress.IPv6Address(addr_text)
    except ValueError:
        return ip
    if address not in _V4_MAPPED or address.ipv4_mapped is None:
        return ip
    if not slash:
        return str(address.ipv4_mapped)
    if not (prefix_text.isascii() and prefix_text.isdigit()) or not 96 <= int(prefix_text) <= 128:
        return ip
    return f"{address.ipv4_mapped}/{int(prefix_text) - 96}"


class UnknownAcl(InvalidGrant):
    """The ACL name is well formed but not configured (``[acl.NAME]``)."""

    def __init__(self, acl: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none configured"
        super().__init__("unknown_acl", f"acl {acl!r} is not configured (known: {names})", acl)


def default_capacity(config: Config) -> Capacity:
    """The ACL's shards (``max_ranges`` x ``max_locations``) as the limit, refused with
    ``Code.ENTRA007``; the agent and the CLI's direct mode both use this one rule."""

    def check(acl_name: str, cidrs: Sequence[str]) -> None:
        acl = config.acls[acl_name]
        limit = make_capacity_check(
            acl.static, max_ranges=acl.max_ranges, max_locations=acl.max_locations, acl=acl_name
        )
        try:
            limit(cidrs)
        except InvalidGrant as exc:
            raise RequestRejected(
                exc.message,
                operation="grant",
                hint="raise max_locations for this acl, or revoke unused grants",
            ) from None

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

    def _expiry(self, request: GrantRequest, now: datetime) -> datetime:
        max_ttl = self.config.agent.max_ttl
        if request.ttl is not None:
            if request.ttl > max(max_ttl, 10**12):
                raise InvalidGrant(  # keep the message short: no 4,000-digit numbers
                    "ttl_too_long", f"TTL is far beyond max_ttl {format_ttl(max_ttl)} ({max_ttl}s)"
                )
            return now + timedelta(seconds=check_ttl(request.ttl, max_ttl))
        expires_at = request.expires_at
        assert expires_at is not None  # the model holds exactly one of the two
        try:
            expires_at = expires_at.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
            remaining = (expires_at - now).total_seconds()
            raise InvalidGrant(
                "ttl_too_long" if remaining > 0 else "invalid_ttl",
                f"expires_at {expires_at.isoformat()} is out of range; "
                f"give a time within max_ttl ({format_ttl(max_ttl)}) from now",
                expires_at.isoformat(),
            ) from None
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
        """:meth:`submit_grant` of these values (``ttl`` may be a duration such as ``"8h"``)."""
        fields = {"acl": acl, "ip": ip, "user": user, "ttl": ttl, "expires_at": expires_at,
                  "note": note, "source": source}
        request = GrantRequest.parse(fields, durations=True, default_source="cli")
        return self.submit_grant(request, now=now)

    def submit_grant(self, request: GrantRequest, *, now: datetime | None = None) -> Grant:
        """Check and store a grant (renewing an existing one); returns the stored grant."""
        acl = self.check_acl(request.acl)
        user = canonical_user(request.user)
        if self.config.acls[acl].revoke_sessions and not is_directory_user(user):
            raise InvalidGrant(
                "invalid_user",
                f"acl {acl!r} revokes sessions when access ends (revoke_sessions), so the user must be "
                f"a user principal name (alice@contoso.com) or an object id, not {user[:64]!r}",
                user[:64],
            )
        cidr = str(parse_cidr(unmap_ipv4(request.ip)))
        now = now or utcnow()
        expiry = self._expiry(request, now)

        def capacity_check(cidrs: Sequence[str]) -> None:
            self.capacity(acl, cidrs)

        grant, renewed = self.store.add(
            acl,
            user,
            cidr,
            expiry,
            source=request.source,
            note=request.note,
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
        """:meth:`submit_revoke` of these values."""
        return self.submit_revoke(RevokeRequest.parse({"acl": acl, "ip": ip, "user": user}))

    def submit_revoke(self, request: RevokeRequest) -> int:
        """End the grants of the address (of one user, or of every holder); idempotent."""
        acl = self.check_acl(request.acl)
        # structural only: a grant made under older limits can go
        cidr = normalize_cidr(unmap_ipv4(request.ip))
        user = None if request.user is None else canonical_user(request.user)
        return self._ended(self.store.revoke(acl, cidr, user))

    def flush(self, acl: str) -> int:
        """End every grant of ``acl``."""
        acl = self.check_acl(acl)
        ended = self._ended(self.store.flush(acl), reason="flush")
        self.log.info("acl.flushed", acl=acl, ended=ended)
        return ended

    def list(self, acl: str | None = None) -> builtins.list[Grant]:
        """Active grants (of one ACL, or of all)."""
        if acl is not None:
            acl = self.check_acl(acl)
        return self.store.active(acl)

    def _ended(self, removed: builtins.list[Grant], **extra: str) -> int:
        for grant in removed:
            self.log.info(
                "grant.revoked",
                acl=grant.acl,
                user=grant.user,
                cidr=grant.cidr,
                expires_at=rfc3339(grant.expires_at),
                source=grant.source,
                **extra,
            )
        if removed:
            self._changed()
        return len(removed)

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception as exc:  # the grant is stored; a wake-up hook must not undo that
                self.log.warning("grant.on_change_failed", error=type(exc).__name__)
