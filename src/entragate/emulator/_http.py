"""What the TLS server, the token service and the Graph routes pass each other.

A :class:`Request` comes in, an :class:`Exchange` follows it through the emulator (ids,
the operation it was classified as, headers to add), a :class:`Response` goes out; the
services raise :class:`GraphError` or :class:`TokenError` to answer with an error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
DIAGNOSTIC = '{"ServerInfo":{"DataCenter":"Emulated","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"EMULATOR"}}'
STATUS_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "ResourceNotFound",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    500: "generalException",
    502: "serviceNotAvailable",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}
STATUS_MESSAGES = {
    403: "Insufficient privileges to complete the operation.",
    401: "Access token validation failure.",
}


@dataclass
class Request:
    method: str
    host: str
    target: str
    headers: Message
    body: bytes
    sni: str | None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str | None = None  # None | "reset" | "hang"


@dataclass
class Exchange:
    """One request's bookkeeping: its ids, operation (a counter key) and tenant."""

    request_id: str
    client_request_id: str | None
    operation: str | None
    tenant: str | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


class GraphError(Exception):
    """A Graph error answer: HTTP status, error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class TokenError(Exception):
    """A token endpoint error answer (``error`` and an AADSTS code)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as Microsoft's services send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def graph_headers(ex: Exchange, content_type: str | None = GRAPH_CONTENT_TYPE) -> list[tuple[str, str]]:
    """The headers of every Graph answer (ids, diagnostics), then the exchange's own."""
    h = [
        ("Cache-Control", "no-cache"),
        ("Strict-Transport-Security", "max-age=31536000"),
        ("request-id", ex.request_id),
        ("client-request-id", ex.client_request_id or ex.request_id),
        ("x-ms-ags-diagnostic", DIAGNOSTIC),
    ]
    if content_type:
        h.insert(0, ("Content-Type", content_type))
    return h + ex.extra_headers
