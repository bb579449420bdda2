"""The JSON shapes of the API, for its OpenAPI document.

Parsing is not done here: a request body goes through the grant model's one parser
(:class:`entragate.grants.GrantRequest`); these models describe what it accepts (a test
keeps their fields equal to the parser's) and what the routes answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from entragate.errors import Code
from entragate.grants.model import MAX_NOTE_LEN, MAX_SOURCE_LEN
from entragate.grants.validation import MAX_USER_LEN


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable code: an input reason (invalid_ip, forbidden_range, "
        "prefix_too_short, invalid_ttl, ttl_too_long, unknown_acl, …), a protocol code "
        "(malformed_json, invalid_request, unauthorized, body_too_large, not_found, "
        "method_not_allowed, not_ready, store_unavailable, sync_loop_dead, overloaded) or an ENTRAnnn code",
        examples=["forbidden_range", Code.ENTRA007],
    )
    message: str


class Error(BaseModel):
    error: ErrorDetail


class Grant(BaseModel):
    acl: str
    user: str
    cidr: str = Field(examples=["81.2.69.142/32"])
    created_at: AwareDatetime
    expires_at: AwareDatetime
    source: str = Field(examples=["api", "cli", "knocknoc"])
    note: str


class GrantList(BaseModel):
    grants: list[Grant]


class Ended(BaseModel):
    ended: int = Field(ge=0, description="How many grants ended (0 when none matched)")


class GrantRequest(BaseModel):
    """Exactly one of ttl and expires_at. Granting the same (acl, user, ip) again sets
    its new expiry."""

    model_config = ConfigDict(extra="forbid")

    acl: str = Field(examples=["staff"])
    ip: str = Field(
        description="A globally routable address (becomes /32 or /128) or CIDR (at least "
        "/9 IPv4, /16 IPv6)",
        examples=["81.2.69.142", "2a00:1450:4001:80b::200e"],
    )
    user: str = Field(min_length=1, max_length=MAX_USER_LEN)
    ttl: int | None = Field(None, ge=1, description="Seconds, at most max_ttl")
    expires_at: AwareDatetime | None = Field(None, description="RFC 3339 with Z or an offset")
    note: str | None = Field(None, max_length=MAX_NOTE_LEN)
    source: str | None = Field(None, max_length=MAX_SOURCE_LEN, description="Who asked (default: api)")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acl: str
    ip: str
    user: str | None = Field(
        None, min_length=1, description="Omit to end every holder's grant of this address"
    )


class Health(BaseModel):
    ok: bool


class Ready(BaseModel):
    ready: bool


REQUEST_MODELS: tuple[type[BaseModel], ...] = (GrantRequest, RevokeRequest)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is ``model``."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}
    }


def responses(
    ok: tuple[int, type[BaseModel] | None, str] | None, errors: Mapping[int, str]
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: its success (status, model, description), then its
    errors (status: description), all of them :class:`Error` bodies."""
    out: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        status, model, description = ok
        out[status] = {"description": description}
        if model is not None:
            out[status]["model"] = model
    for status, description in errors.items():
        out[status] = {"model": Error, "description": description}
    return out


BODY_ERRORS = {
    400: "Malformed JSON, not UTF-8, NaN/Infinity or nested too deeply (`malformed_json`), "
    "a body that ended early or too slowly (`incomplete_body`), a body that is not an object, "
    "has unknown, repeated or missing fields, or a field of the wrong type or format "
    "(`invalid_request`, `invalid_ttl`, `invalid_user`, `invalid_acl`, `invalid_ip`)",
    411: "No body (`length_required`)",
    413: "Body larger than 64 KiB (`body_too_large`)",
    415: "Body not sent as application/json (`unsupported_media_type`)",
    422: "Input refused, nothing stored: `invalid_ip`, `zone_id`, `forbidden_range`, "
    "`prefix_too_short`, `host_bits_set`, `invalid_ttl`, `ttl_too_long`, `invalid_user`, "
    "`invalid_acl`, `unknown_acl`",
}
UNAUTHORIZED = {401: "Missing or wrong bearer token (`unauthorized`)"}
COMMON_ERRORS = {
    **UNAUTHORIZED,
    503: "The grant store is unavailable (`store_unavailable`), or too many requests at "
    "once (`overloaded`)",
}
