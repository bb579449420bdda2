"""uvicorn's HTTP/1.1 protocol (h11), hardened for a server that holds a bearer token.

What it adds to :class:`uvicorn.protocols.http.h11_impl.H11Protocol`:

- a deadline for the request line and headers (slow clients cannot hold a connection
  by trickling bytes; uvicorn's keep-alive timeout only covers idle connections);
- refusal of ambiguous framing before h11 reads a body: more than one Content-Length
  (400), Content-Length together with chunked (411), a length of more digits than any
  accepted body (413);
- a client that half-closes in the middle of its body is answered (400
  ``incomplete_body``) instead of dropped, and one that half-closes after its request
  still gets the answer;
- closing while the client is still sending (a refused 1 MiB body) lingers: the answer
  is followed by a half-close and the rest is read and dropped for a moment, so the
  client reads the 413 instead of a connection reset;
- protocol errors and the concurrency limit answer in the API's JSON error shape.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from entragate.logs import get_logger

from .errors import COMMON_HEADERS, ApiError, error_json, response_headers, send_error
from .middleware import App, Receive, Scope, Send

_HEAD_END = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_TRANSFER_ENCODING = re.compile(rb"^transfer-encoding[ \t]*:", re.IGNORECASE | re.MULTILINE)
MAX_LENGTH_DIGITS = 12  # far beyond the body limit; refused without parsing the number
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024


def framing_problem(head: bytes) -> ApiError | None:
    """Why the header section ``head`` frames its body ambiguously, or None."""
    lengths = [v.strip() for v in _CONTENT_LENGTH.findall(head)]
    if len(lengths) > 1 or any(b"," in v for v in lengths):
        return ApiError(400, "invalid_request", "send exactly one Content-Length header")
    if lengths and _TRANSFER_ENCODING.search(head):
        return ApiError(
            411, "length_required", "send the body with Content-Length or chunked, not both"
        )
    if lengths and lengths[0].isdigit() and len(lengths[0]) > MAX_LENGTH_DIGITS:
        return ApiError(413, "body_too_large", "the announced body is far larger than accepted")
    return None


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: ``close()`` may linger first."""

    def __init__(self, transport: asyncio.Transport, protocol: ApiProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_lingering()


class ApiProtocol(H11Protocol):
    """One connection. ``header_timeout`` is set per server (:func:`protocol_class`)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._peer_done = False  # the client half-closed after sending its request
        self._raw: asyncio.Transport | None = None
        self.lingering = False
        self._dropped = 0
        # uvicorn's own limit answers in plain text; this one answers in the API's shape
        self._limit, self.limit_concurrency = self.limit_concurrency, None
        self.app = self._within_limit(self.app)

    # ------------------------------------------------------------------ deadlines

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._raw = transport
        self.transport = _LingeringTransport(transport, self)  # type: ignore[assignment]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the rest of a body already answered: dropped unread
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES and self._raw is not None:
                self._raw.close()
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._peer_done:
            self.transport.close()
        elif not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the next request's headers have the same deadline

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0].strip():
            self._answer_and_close(
                ApiError(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within {self.header_timeout:g} s",
                )
            )
        else:
            self.transport.close()  # an idle connection: nothing to answer

    # ------------------------------------------------------------------ framing

    def handle_events(self) -> None:
        if self.conn.their_state is h11.IDLE:
            buffered = self.conn.trailing_data[0]
            end = _HEAD_END.search(buffered)
            problem = framing_problem(buffered[: end.start()]) if end else None
            if problem is not None:
                self._answer_and_close(problem)
                return
        super().handle_events()

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(
            ApiError(400, "bad_request", "the request is not valid HTTP: its request line, "
                     "headers or body framing is malformed")
        )

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio's contract
        if self.lingering:
            return None
        if self.conn.their_state is h11.SEND_BODY:
            self._answer_and_close(
                ApiError(400, "incomplete_body", "the connection ended before the body did")
            )
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            self._peer_done = True
            return True  # half-closed: keep the connection open to write the answer
        return None

    def _answer_and_close(self, error: ApiError) -> None:
        """Answer before (or instead of) the application, then close the connection."""
        get_logger(component="api").warning(
            "api.protocol_error",
            status=error.status,
            code=error.code,
            client=self.client[0] if self.client else None,
        )
        started = self.cycle is not None and self.cycle.response_started
        if not started and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = error_json(error.code, error.message)
            headers = [*response_headers("application/json", len(body)), *COMMON_HEADERS,
                       (b"Connection", b"close")]
            try:
                data = self.conn.send(
                    h11.Response(
                        status_code=error.status, headers=headers, reason=STATUS_PHRASES[error.status]
                    )
                )
                data = (data or b"") + (self.conn.send(h11.Data(data=body)) or b"")
                data += self.conn.send(h11.EndOfMessage()) or b""
                self.transport.write(data)
            except h11.LocalProtocolError:
                pass  # h11 cannot send an answer in this state: closing is all that is left
        if self.cycle is not None:
            self.cycle.disconnected = True  # the application's answer, if any, goes nowhere
            self.cycle.message_event.set()
        self.transport.close()

    def close_lingering(self) -> None:
        """Close; while the client is still sending, half-close first and drop the rest."""
        raw = self._raw
        if raw is None or self.lingering or raw.is_closing():
            return
        sending = self.conn.their_state in (h11.SEND_BODY, h11.ERROR) or bool(
            self.conn.trailing_data[0]
        )
        if not sending or not raw.can_write_eof():
            raw.close()
            return
        self.lingering = True
        self._cancel_header_timer()
        raw.write_eof()
        raw.resume_reading()
        self.loop.call_later(LINGER_SECONDS, raw.close)

    # ------------------------------------------------------------------ concurrency

    def _within_limit(self, app: App) -> App:
        limit = self._limit

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            # this request's task is already counted; uvicorn's own check ran before it was
            if limit is not None and (len(self.connections) > limit or len(self.tasks) > limit):
                await send_error(
                    send,
                    ApiError(503, "overloaded", "too many requests at once; retry shortly",
                             {"Retry-After": "1", "Connection": "close"}),
                    common_headers=True,
                )
                return
            await app(scope, receive, send)

        return limited


def protocol_class(header_timeout: float) -> type[ApiProtocol]:
    """The protocol for one server, with its header deadline."""
    return type("ServerApiProtocol", (ApiProtocol,), {"header_timeout": header_timeout})
