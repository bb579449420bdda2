"""Request bodies: at most :data:`MAX_BODY` bytes, read within a deadline, strict JSON.

The framing itself (one Content-Length, not together with chunked) is checked by the
HTTP protocol (:mod:`entragate.api.protocol`) before a request gets here. The route
decides what the JSON must look like (the grant model's parser).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from .errors import ApiError

MAX_BODY = 64 * 1024


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_unicode(value: Any) -> None:
    """Refuse strings with lone surrogates (\\ud800 escapes): they are not text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json_body(raw: bytes) -> Any:
    """Strict JSON: UTF-8 text, no duplicate keys, no NaN/Infinity, no lone surrogates."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
        _check_unicode(value)
    except _DuplicateKey as exc:
        raise ApiError(
            400, "invalid_request", f"field {str(exc)!r} appears more than once; send it once"
        ) from None
    except UnicodeError:
        raise ApiError(
            400, "malformed_json", "the body is not valid UTF-8 text (or has lone surrogates)"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    return value


def _declared(request: Request) -> tuple[int | None, bool]:
    """(Content-Length, chunked) as sent."""
    length = request.headers.get("content-length")
    return (None if length is None else int(length)), "transfer-encoding" in request.headers


def _refuse_declared_size(length: int | None) -> None:
    if length is not None and length > MAX_BODY:  # refused before a byte of it is read
        raise ApiError(
            413, "body_too_large", f"the body is {length} bytes; at most {MAX_BODY} are accepted"
        )


async def read_body(request: Request, timeout: float) -> bytes:
    """The whole body, refused (413) as soon as it passes :data:`MAX_BODY`."""
    _refuse_declared_size(_declared(request)[0])
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise ApiError(
                        413, "body_too_large", f"the body passed {MAX_BODY} bytes, the most accepted"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            400, "incomplete_body", f"the body did not arrive within {timeout:g} s"
        ) from None
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client went away before the body ended") from None
    return b"".join(chunks)


async def json_body(request: Request) -> Any:
    """Dependency: the request's JSON body (required, sent as application/json)."""
    length, chunked = _declared(request)
    if length is None and not chunked:
        raise ApiError(411, "length_required", "a JSON body with Content-Length is required")
    _refuse_declared_size(length)
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json (got {media or 'no Content-Type'})",
        )
    return parse_json_body(await read_body(request, request.app.state.api.body_timeout))


async def no_body(request: Request) -> None:
    """Dependency of routes that take no body: whatever was sent is read and dropped."""
    await read_body(request, request.app.state.api.body_timeout)
