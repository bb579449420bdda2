"""The layer around every request: token, access log, common headers, HEAD, framing.

Pure ASGI, outside the application's routing, so that the token is checked before any
route, 404 or 405 answers, and an error the application did not handle still answers
in the API's error shape. While the agent drains (:mod:`entragate.api.drain`), new
requests are answered 503 ``shutting_down`` here, on the direct path too, and answers
close their connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from entragate.logs import get_logger, printable

from .auth import OPEN_PATHS, BearerToken, unauthorized
from .drain import Drain, shutting_down
from .errors import COMMON_HEADERS, api_error, send_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
LIVENESS = "/healthz"  # answered while draining too: the process is alive
_CLOSE = (b"connection", b"close")


def _announces_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


#: an endpoint the middleware may call itself: ``(request) -> response``
Endpoint = Callable[[Any], Awaitable[Any]]


class ApiMiddleware:
    """``direct`` maps (method, path) to an endpoint the application also routes: the
    middleware calls it without the framework's layers (routing, dependency solving,
    exception middleware), which cost a third of a grant's CPU at burst rates
    (docs/design.md#grant-path). The endpoint is the same function, so the answer is
    the same; an error it raises answers through :func:`api_error`, as the
    application's catch-all handler does."""

    def __init__(
        self,
        app: App,
        token: BearerToken,
        direct: Mapping[tuple[str, str], Endpoint] | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.direct = direct or {}
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        drain = self.drain
        answered: list[int] = []  # the status, once the response started
        body_pending = _announces_body(scope["headers"])

        async def receive_body() -> Message:
            nonlocal body_pending
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])
                headers = [*message.get("headers", []), *COMMON_HEADERS]
                # an unread body would be parsed as the next request on this connection;
                # a draining server takes no next request
                closing = body_pending or (drain is not None and drain.draining)
                if closing and not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append(_CLOSE)
                message = {**message, "headers": headers}
            await send(message)

        counted = drain is not None and drain.enter()
        try:
            if drain is not None and not counted and scope["path"] != LIVENESS:
                await send_error(send_with_headers, shutting_down())
                return
            if scope["path"] not in OPEN_PATHS and not self.token.accepts(scope["headers"]):
                await send_error(send_with_headers, unauthorized())
                return
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await self._call_direct(endpoint, scope, receive_body, send_with_headers)
                return
            # HEAD is GET without the body (the server drops it): route it as GET
            inner = {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope
            await self.app(inner, receive_body, send_with_headers)
        except Exception as exc:  # the application's handlers answered (and logged) if they could
            if not answered:
                await send_error(send_with_headers, api_error(exc))
        except asyncio.CancelledError:  # the server gave up waiting on it: 503, never uvicorn's 500
            if not answered:
                await send_error(send_with_headers, shutting_down(
                    "the agent is shutting down before this request finished; it may or may not "
                    "have been stored: retry shortly (granting again is safe)"))
            raise
        finally:
            if counted and drain is not None:
                drain.leave()
            _access_log(scope, answered[0] if answered else 0, started)


    async def _call_direct(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request

        scope = {**scope, "app": self.app}  # as the application sets it: request.app.state
        response = await endpoint(Request(scope, receive))
        await response(scope, receive, send)


def _access_log(scope: Scope, status: int, started: float) -> None:
    """One event per request, without any header (so never the token) or query string."""
    path = scope["path"]
    client = scope.get("client")
    event = {
        "method": printable(scope["method"]),
        "path": printable(path if len(path) <= 200 else path[:200] + "…"),
        "status": status,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "client": client[0] if client else None,
    }
    log = get_logger(component="api")
    if path in QUIET_PATHS and 0 < status < 400:
        log.debug("api.request", **event)
    else:
        log.info("api.request", **event)
