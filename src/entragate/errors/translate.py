"""The single translation point: lower-level failures and error answers become codes.

Like httpx's ``map_httpcore_exceptions``, this is the one place that decides a code
(docs/design.md#errors):

- :func:`classify_exception`: an exception from the socket, ``ssl``, urllib3 or
  requests. It walks ``__cause__``, ``__context__`` and the ``reason``/``args`` links,
  keys TLS failures on ``verify_code`` (never on message text) and keeps the original
  as ``__cause__``.
- :func:`from_graph_response`: a Graph answer with an error status (status first,
  then the body's ``error.code``, never its message).
- :func:`from_token_result`: msal's result dict for a failed token request, with the
  HTTP status the transport remembered (msal hides it and may answer from its cache).
"""

from __future__ import annotations

import email.utils
import errno
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3.exceptions

from entragate.errors.codes import AADSTS_HINTS, Code
from entragate.errors.exceptions import (
    ERROR_TYPES,
    AuthenticationFailed,
    CannotConnect,
    EntraError,
    ProxyRefused,
    ProxyTunnelRefused,
    ServiceError,
    Throttled,
    TimedOut,
    TlsNotTrusted,
)


def iter_chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception behind ``exc``: causes, contexts, and the ``reason``/``args``
    that requests and urllib3 use to wrap one another without chaining."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked: list[Any] = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        stack.extend(e for e in linked if isinstance(e, BaseException))


def root_cause(exc: BaseException) -> BaseException:
    last = exc
    for last in iter_chain(exc):  # noqa: B007 - the last one reached is the deepest
        pass
    return last


def _first(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    return next((e for e in iter_chain(exc) if isinstance(e, kind)), None)


_CONNECT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EPIPE,
}


def classify_exception(
    exc: BaseException, *, host: str | None, operation: str
) -> EntraError:
    """Turn any lower-level failure into exactly one coded error, keeping ``exc`` as cause."""
    if isinstance(exc, EntraError):
        return exc
    found: EntraError
    kw: dict[str, Any] = {"host": host, "operation": operation}
    verify = _first(exc, ssl.SSLCertVerificationError)
    tunnel = _first(exc, ProxyTunnelRefused)
    if verify is not None:
        found = TlsNotTrusted(
            f"certificate verification failed: {verify.verify_message} "
            f"(OpenSSL verify code {verify.verify_code})",
            verify_code=verify.verify_code,
            verify_message=verify.verify_message,
            **kw,
        )
    elif tunnel is not None:
        found = ProxyRefused(
            f"the proxy {tunnel.proxy} refused the tunnel: {tunnel.status} {tunnel.reason}",
            proxy_status=tunnel.status,
            **kw,
        )
    elif _first(exc, (socket.gaierror, urllib3.exceptions.NameResolutionError)) is not None:
        found = CannotConnect(f"cannot resolve the host name ({root_cause(exc)})", **kw)
    elif _first(exc, (ConnectionRefusedError, urllib3.exceptions.NewConnectionError)) is not None:
        through = " through the proxy" if _first(exc, urllib3.exceptions.ProxyError) else ""
        found = CannotConnect(f"the connection{through} was refused or failed ({root_cause(exc)})", **kw)
    elif _first(
        exc, (TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout)
    ) is not None:
        found = TimedOut("no answer within the configured timeout (connect, TLS handshake or response)", **kw)
    elif _first(
        exc,
        (
            ConnectionError,
            urllib3.exceptions.ProtocolError,
            requests.ConnectionError,
            ssl.SSLError,
        ),
    ) is not None or any(
        isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS for e in iter_chain(exc)
    ):
        found = CannotConnect(f"the connection failed ({root_cause(exc)})", **kw)
    else:
        found = CannotConnect(f"unexpected failure: {type(exc).__name__}: {exc}", **kw)
    found.__cause__ = exc
    return found


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# Graph's error statuses, checked in order; anything else unexpected is a service error.
_GRAPH_STATUS: tuple[tuple[range, Code], ...] = (
    (range(401, 402), Code.ENTRA001),
    (range(403, 404), Code.ENTRA002),
    (range(404, 405), Code.ENTRA006),
    (range(400, 500), Code.ENTRA007),
    (range(500, 600), Code.ENTRA008),
)


def _error_type_for_status(status: int) -> type[EntraError]:
    code = next((code for span, code in _GRAPH_STATUS if status in span), Code.ENTRA008)
    return ERROR_TYPES[code]


#: Graph's 403 for sign-in logs in a tenant without an Entra ID P1/P2 licence.
NOT_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


def from_graph_response(
    response: requests.Response, *, operation: str, permission: str | None = None
) -> EntraError:
    """Graph answered with an error status: choose the code from status and error.code.

    ``permission`` names the application permission the operation needs; a 403 then
    says to grant it (a 403 for a missing licence says that instead)."""
    status = response.status_code
    host = urlparse(response.url).hostname if response.url else None
    graph_code = None
    graph_message = ""
    request_id = response.headers.get("request-id")
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(error, dict):
            graph_code = error.get("code")
            graph_message = str(error.get("message", ""))[:300]
            inner = error.get("innerError") or error.get("innererror") or {}
            request_id = request_id or (inner.get("request-id") if isinstance(inner, dict) else None)
    except ValueError:
        pass
    detail = f"Graph answered {status}" + (f" {graph_code}" if graph_code else "")
    if graph_message:
        detail += f": {graph_message}"
    kw: dict[str, Any] = {
        "host": host,
        "operation": operation,
        "request_id": request_id,
        "status": status,
        "graph_code": graph_code,
    }
    if status == 429:
        return Throttled(
            detail, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kw
        )
    if status == 403 and graph_code == NOT_PREMIUM:
        kw["hint"] = ("Graph serves sign-in logs only to tenants with a Microsoft Entra ID P1 or P2 "
                      "licence; read them in the Entra admin center (Sign-in logs) instead")
    elif status == 403 and permission:
        kw["hint"] = (f"grant the application permission {permission} (Microsoft Graph, Application "
                      "permissions) with admin consent; `entragate doctor` lists what the token holds")
    return _error_type_for_status(status)(detail, **kw)


def from_token_result(
    result: Mapping[str, Any], *, host: str, status: int | None
) -> EntraError:
    """msal returns token failures as a dict; the transport remembers the HTTP status."""
    error = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", "")).split("\r\n")[0].split("\n")[0]
    codes = result.get("error_codes") or []
    aadsts: int | None = int(codes[0]) if codes and str(codes[0]).isdigit() else None
    if aadsts is None:
        m = re.match(r"AADSTS(\d+)", description)
        aadsts = int(m.group(1)) if m else None
    kw: dict[str, Any] = {
        "host": host,
        "operation": "token request",
        "correlation_id": result.get("correlation_id"),
        "status": status,
    }
    detail = f"{error}: {description[:300]}" if description else error
    if status == 429:
        return Throttled(detail, **kw)
    if (status is not None and status >= 500) or error in (
        "temporarily_unavailable",
        "server_error",
    ):
        return ServiceError(detail, **kw)
    hint = AADSTS_HINTS.get(aadsts) if aadsts is not None else None
    return AuthenticationFailed(detail, aadsts=aadsts, hint=hint, **kw)
