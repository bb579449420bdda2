"""Every error the API answers has one shape: ``{"error": {"code": …, "message": …}}``.

:func:`api_error` is the one place that turns an exception into a status, a code and a
message (docs/design.md#api): input the model cannot parse is 400, input the rules
refuse is 422, an unusable store 503, a full ACL 409 (``Code.ENTRA007``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import Response

from entragate import __version__
from entragate.errors import Code, EntraError
from entragate.grants import InvalidGrant, InvalidRequest, StoreError, StoreUnavailable
from entragate.logs import get_logger

Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = "application/json"
# Sent with every response, errors the HTTP layer writes itself included.
COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"server", f"entragate/{__version__}".encode()),
)


class ApiError(Exception):
    """An answer other than success, with its status, error code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_json(code: str, message: str) -> bytes:
    return json_bytes({"error": {"code": code, "message": message}})


def json_bytes(body: Any) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def api_error(exc: BaseException) -> ApiError:
    """The answer to give for ``exc``."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidRequest):
        return ApiError(400, exc.reason, exc.message)
    if isinstance(exc, InvalidGrant):
        return ApiError(422, exc.reason, exc.message)
    if isinstance(exc, StoreError):  # unavailable, or already closed by a stopping agent
        if not isinstance(exc, StoreUnavailable):  # an outage is logged once, by the store's health
            get_logger(component="api").error("api.store_unavailable", error=str(exc)[:300])
        return ApiError(
            503,
            "store_unavailable",
            "the grant store is unavailable; nothing was changed, retry shortly",
            {"Retry-After": "5"},
        )
    if isinstance(exc, EntraError):
        return ApiError(409 if exc.code == Code.ENTRA007 else 502, str(exc.code), exc.message)
    get_logger(component="api").error(
        "api.internal_error", error=type(exc).__name__, detail=str(exc)[:300]
    )
    return ApiError(500, "internal_error", "internal error; see the agent's log")


def response_headers(
    content_type: str, length: int, extra: Mapping[str, str] | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items())
    return headers


async def send_error(send: Send, error: ApiError, *, common_headers: bool = False) -> None:
    """Answer ``error`` on a raw ASGI ``send`` (before the application's routing)."""
    body = error_json(error.code, error.message)
    headers = response_headers(JSON, len(body), error.headers)
    if common_headers:
        headers.extend(COMMON_HEADERS)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class JsonResponse(Response):
    """Compact JSON with a final newline, as every answer of the API."""

    media_type = JSON

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def error_response(error: ApiError) -> JsonResponse:
    body = {"error": {"code": error.code, "message": error.message}}
    return JsonResponse(body, status_code=error.status, headers=error.headers)
