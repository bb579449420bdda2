"""uvicorn's HTTP/1.1 protocol (httptools, llhttp), hardened for a server holding a token.

httptools rather than h11: measured with ``bench/burst.py``, h11's pure-Python parsing
costs a 1,000-grant burst 10–20 % of its speed (docs/design.md#api). llhttp is strict
(a repeated Content-Length, or one beside chunked, is an error). What this adds to
:class:`uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`:

- a deadline for the request line and headers (slow clients cannot hold a connection
  by trickling bytes; uvicorn's keep-alive timeout only covers idle connections), and
  a limit on their size (431);
- precise answers for ambiguous framing before a body is read: more than one
  Content-Length (400), Content-Length together with chunked (411), a length of more
  digits than any accepted body (413);
- a method llhttp does not know (``FOO``) or treats specially (``CONNECT``) is routed
  under its own name like any other, so it answers 405 with ``Allow``, not 400 (when
  it starts a packet: pipelined behind another request in one packet, llhttp sees it
  first and the connection gets its 400);
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

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from entragate.logs import get_logger

from .errors import COMMON_HEADERS, ApiError, error_json, response_headers, send_error
from .middleware import App, Receive, Scope, Send

_HEAD_END = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_TRANSFER_ENCODING = re.compile(rb"^transfer-encoding[ \t]*:", re.IGNORECASE | re.MULTILINE)
MAX_LENGTH_DIGITS = 12  # far beyond the body limit; refused without parsing the number
MAX_METHOD_BYTES = 32
# Methods the parser is given as they are; any other token is given as PLACEHOLDER_METHOD
# (one llhttp knows and nothing routes) and restored in the request's scope.
PARSED_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE"})
PLACEHOLDER_METHOD = b"PROPFIND"
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
MAX_HEAD_BYTES = 16 * 1024
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


class ApiProtocol(HttpToolsProtocol):
    """One connection. ``header_timeout`` is set per server (:func:`protocol_class`)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = b""  # bytes of a request head not yet complete
        # the first bytes of a request until its method is whole; None once with the parser
        self._method_start: bytes | None = b""
        self._method: str | None = None  # the method the parser was given a placeholder for
        self._in_body = False  # headers parsed, body not yet complete
        self._header_timer: asyncio.TimerHandle | None = None
        self._peer_done = False  # the client half-closed after sending its request
        self._raw: asyncio.Transport | None = None
        self.lingering = False
        self._dropped = 0
        # uvicorn's own limit answers in plain text; this one answers in the API's shape
        self._limit, self.limit_concurrency = self.limit_concurrency, None
        self.app = self._within_limit(self.app)

    # ------------------------------------------------------------------ connection

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
        self._unset_keepalive_if_required()
        if not self._in_body:
            if self._refused_head(data):
                return
            data = self._with_parsable_method(data)
            if not data:
                return  # the method is not whole yet
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or Upgrade: the request is dispatched as it is (answered 405 or as a
            # plain request); nothing is switched to, so the connection ends with it
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError:
            self._answer_and_close(
                ApiError(400, "bad_request", "the request is not valid HTTP: its request "
                         "line, headers or body framing is malformed")
            )

    def _refused_head(self, data: bytes) -> bool:
        """Check a request head before the parser acts on it; True when refused."""
        self._head += data
        end = _HEAD_END.search(self._head)
        if end is None:
            if len(self._head) <= MAX_HEAD_BYTES:
                return False
            problem: ApiError | None = ApiError(
                431, "headers_too_large", f"the request headers pass {MAX_HEAD_BYTES} bytes"
            )
        else:
            problem = framing_problem(self._head[: end.start()])
            self._head = b""  # what follows is the body (and the parser's business)
        if problem is not None:
            self._answer_and_close(problem)
            return True
        return False

    def _with_parsable_method(self, data: bytes) -> bytes:
        """``data`` for the parser: at the start of a request, once its method is whole,
        a method the parser would refuse or treat specially becomes the placeholder."""
        if self._method_start is None:  # the parser already has this request's method
            return data
        pending = self._method_start + data
        line = pending.lstrip(b"\r\n")
        method, space, _ = line.partition(b" ")
        if not space:
            self._method_start = pending
            if len(line) > MAX_METHOD_BYTES:
                self._answer_and_close(ApiError(400, "bad_request", "the request line is malformed"))
            return b""  # the rest of the method has yet to come
        self._method_start = None
        if method in PARSED_METHODS or not _TOKEN.fullmatch(method):
            return pending  # the parser judges it
        self._method = method.decode("ascii")
        blank = len(pending) - len(line)
        return pending[:blank] + PLACEHOLDER_METHOD + line[len(method) :]

    def on_message_begin(self) -> None:
        self._method_start = None  # begun inside the parser (pipelined after another)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._head = b""
        self._cancel_header_timer()
        super().on_headers_complete()
        if self._method is not None:  # routed under its own name (405 with Allow)
            self.scope["method"] = self._method
            self._method = None

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()
        self._method_start = b""  # the next request's method is checked again

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._peer_done:
            self.transport.close()
        elif not self.transport.is_closing() and not self._in_body and not self.pipeline:
            self._arm_header_timer()  # the next request's headers have the same deadline

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio's contract
        if self.lingering:
            return None
        if self._in_body:
            self._answer_and_close(
                ApiError(400, "incomplete_body", "the connection ended before the body did")
            )
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            self._peer_done = True
            return True  # half-closed: keep the connection open to write the answer
        return None

    # ------------------------------------------------------------------ deadlines

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._in_body:
            return
        if self._head.strip():
            self._answer_and_close(
                ApiError(
                    408,
                    "request_timeout",
                    f"the request headers did not arrive within {self.header_timeout:g} s",
                )
            )
        else:
            self.transport.close()  # an idle connection: nothing to answer

    # ------------------------------------------------------------------ answers

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(ApiError(400, "bad_request", "the request is not valid HTTP"))

    def _answer_and_close(self, error: ApiError) -> None:
        """Answer before (or instead of) the application, then close the connection."""
        get_logger(component="api").warning(
            "api.protocol_error",
            status=error.status,
            code=error.code,
            client=self.client[0] if self.client else None,
        )
        if self.cycle is None or not self.cycle.response_started:
            body = error_json(error.code, error.message)
            headers = [*response_headers("application/json", len(body)), *COMMON_HEADERS,
                       (b"connection", b"close")]
            head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.transport.write(STATUS_LINE[error.status] + head + b"\r\n" + body)
        if self.cycle is not None:
            self.cycle.disconnected = True  # the application's answer, if any, goes nowhere
            self.cycle.message_event.set()
        self.transport.close()

    def close_lingering(self) -> None:
        """Close; while the client is still sending, half-close first and drop the rest."""
        raw = self._raw
        if raw is None or self.lingering or raw.is_closing():
            return
        if not (self._in_body or self._head) or not raw.can_write_eof():
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
