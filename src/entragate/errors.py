"""The error catalogue and the single place where failures become codes.

Exception tree (every failure that reaches an operator is one of these)::

    EntraError
    ├── CannotConnect          ENTRA000  DNS, refused, reset, unreachable, proxy TCP
    ├── AuthenticationFailed   ENTRA001  token endpoint refused us, or Graph 401
    ├── AuthorizationFailed    ENTRA002  Graph 403
    ├── TlsNotTrusted          ENTRA003  certificate verification failed
    ├── TimedOut               ENTRA004  connect, handshake or response too slow
    ├── Throttled              ENTRA005  429
    ├── LocationProblem        ENTRA006  named location missing, ambiguous, not IP
    ├── RequestRejected        ENTRA007  400/413/422 to a write, capacity full
    ├── ServiceError           ENTRA008  5xx from Graph or the token endpoint
    └── ProxyRefused           ENTRA009  proxy answered CONNECT with non-2xx

``classify_exception`` (lower-level exceptions), ``from_graph_response`` and
``from_token_result`` are the only functions that choose a code.
"""

from __future__ import annotations

import email.utils
import errno
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlparse

import requests
import urllib3.exceptions


@dataclass(frozen=True)
class CodeInfo:
    code: str
    title: str
    retryable: bool


CATALOGUE: dict[str, CodeInfo] = {
    info.code: info
    for info in (
        CodeInfo("ENTRA000", "Cannot connect to Microsoft", True),
        CodeInfo("ENTRA001", "Authentication failed", False),
        CodeInfo("ENTRA002", "Authorization failed", False),
        CodeInfo("ENTRA003", "TLS certificate not trusted", False),
        CodeInfo("ENTRA004", "Timed out", True),
        CodeInfo("ENTRA005", "Throttled", True),
        CodeInfo("ENTRA006", "Named location missing or ambiguous", False),
        CodeInfo("ENTRA007", "Request rejected", False),
        CodeInfo("ENTRA008", "Microsoft service error", True),
        CodeInfo("ENTRA009", "Proxy refused", False),
    )
}

_NEXT_STEP = {
    "ENTRA000": "check DNS, the route and the proxy setting for this host; run `entragate doctor`",
    "ENTRA001": "check tenant_id, client_id and the credential; run `entragate doctor`",
    "ENTRA002": "grant the application permission Policy.ReadWrite.ConditionalAccess "
    "(and Policy.Read.All) with admin consent",
    "ENTRA003": "run `entragate doctor` to name the cause (inspecting proxy, CA bundle or clock)",
    "ENTRA004": "check the proxy and firewall path to this host, or raise `timeout`",
    "ENTRA005": "entragate backs off and retries; check other apps using Conditional Access APIs",
    "ENTRA006": "check the acl's `location` (display name or id) in the Entra portal",
    "ENTRA007": "check the ranges and the limits (2000 ranges, /8, 195 locations)",
    "ENTRA008": "Microsoft had a problem; entragate retries. See the Microsoft 365 service health",
    "ENTRA009": "ask the proxy's administrators to allow CONNECT to Microsoft's hosts for this "
    "host, or bypass the proxy with NO_PROXY",
}

AADSTS_HINTS: dict[int, str] = {
    7000215: "the client secret is wrong; the portal shows a secret's Value only once, and the "
    "Secret ID next to it is not the secret",
    7000222: "the client secret has expired; create a new one in the app registration",
    700016: "the application was not found in this tenant; check client_id and tenant_id",
    90002: "the tenant was not found; check tenant_id and `cloud` (global, usgov, usgov-dod, china)",
    900023: "tenant_id is malformed; use the Directory (tenant) ID GUID or a verified domain",
    700027: "the certificate assertion was rejected; upload this certificate to the app "
    "registration or fix client_certificate",
    700024: "the certificate assertion is outside its valid time; this host's clock is probably "
    "wrong: enable NTP",
    7000218: "no credential was sent; set client_secret or client_certificate",
    53003: "Conditional Access blocked the token request; exclude this workload identity or "
    "allow this host's address",
}


class EntraError(Exception):
    code: ClassVar[str] = "ENTRA000"

    def __init__(
        self,
        detail: str,
        *,
        host: str | None = None,
        operation: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
        status: int | None = None,
        graph_code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.detail = detail
        self.host = host
        self.operation = operation
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.status = status
        self.graph_code = graph_code
        self.hint = hint or _NEXT_STEP[self.code]
        super().__init__(self.message)

    @property
    def title(self) -> str:
        return CATALOGUE[self.code].title

    @property
    def retryable(self) -> bool:
        return CATALOGUE[self.code].retryable

    @property
    def message(self) -> str:
        where = " ".join(p for p in (self.operation, self.host and f"({self.host})") if p)
        ids = []
        if self.request_id:
            ids.append(f"request-id {self.request_id}")
        if self.correlation_id:
            ids.append(f"correlation_id {self.correlation_id}")
        id_text = f" [{', '.join(ids)}]" if ids else ""
        return (
            f"{self.code} {self.title}: {where + ': ' if where else ''}{self.detail}{id_text}. "
            f"Next: {self.hint}; see `entragate explain {self.code}`"
        )

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "title": self.title,
            "message": self.message,
            "host": self.host,
            "operation": self.operation,
            "request_id": self.request_id,
            "correlation_id": self.correlation_id,
            "status": self.status,
        }


class CannotConnect(EntraError):
    code = "ENTRA000"


class AuthenticationFailed(EntraError):
    code = "ENTRA001"

    def __init__(self, detail: str, *, aadsts: int | None = None, **kw: Any) -> None:
        self.aadsts = aadsts
        super().__init__(detail, **kw)


class AuthorizationFailed(EntraError):
    code = "ENTRA002"


class TlsNotTrusted(EntraError):
    code = "ENTRA003"

    def __init__(
        self, detail: str, *, verify_code: int | None = None, verify_message: str = "", **kw: Any
    ) -> None:
        self.verify_code = verify_code
        self.verify_message = verify_message
        super().__init__(detail, **kw)


class TimedOut(EntraError):
    code = "ENTRA004"


class Throttled(EntraError):
    code = "ENTRA005"

    def __init__(self, detail: str, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(detail, **kw)


class LocationProblem(EntraError):
    code = "ENTRA006"


class RequestRejected(EntraError):
    code = "ENTRA007"


class ServiceError(EntraError):
    code = "ENTRA008"


class ProxyRefused(EntraError):
    code = "ENTRA009"

    def __init__(self, detail: str, *, proxy_status: int | None = None, **kw: Any) -> None:
        self.proxy_status = proxy_status
        super().__init__(detail, **kw)


ERROR_TYPES: dict[str, type[EntraError]] = {
    cls.code: cls
    for cls in (
        CannotConnect,
        AuthenticationFailed,
        AuthorizationFailed,
        TlsNotTrusted,
        TimedOut,
        Throttled,
        LocationProblem,
        RequestRejected,
        ServiceError,
        ProxyRefused,
    )
}


class ProxyTunnelRefused(OSError):
    """Raised by our connection class when a proxy answers CONNECT with non-2xx.

    http.client only reports this as a formatted ``OSError``; the transport turns it
    into this type once, at the source, so classification never parses messages.
    """

    def __init__(self, status: int, reason: str, proxy: str) -> None:
        self.status = status
        self.reason = reason
        self.proxy = proxy
        super().__init__(f"proxy {proxy} answered CONNECT with {status} {reason}")


# ---------------------------------------------------------------- classification


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


def from_graph_response(
    response: requests.Response, *, operation: str
) -> EntraError:
    """Graph answered with an error status: choose the code from status and error.code."""
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
    cls: type[EntraError]
    if status == 401:
        cls = AuthenticationFailed
    elif status == 403:
        cls = AuthorizationFailed
    elif status == 404:
        cls = LocationProblem
    elif status == 429:
        return Throttled(
            detail, retry_after=parse_retry_after(response.headers.get("Retry-After")), **kw
        )
    elif status >= 500:
        cls = ServiceError
    elif status in (400, 409, 413, 422) or 400 <= status < 500:
        cls = RequestRejected
    else:
        cls = ServiceError
    return cls(detail, **kw)


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


def explain_text(code: str) -> str | None:
    """The page for ``code`` (docs/errors/ENTRAnnn.md), or None when the code is unknown."""
    from importlib import resources
    from pathlib import Path

    code = code.upper()
    if code not in CATALOGUE:
        return None
    # A checkout (and an editable install) reads docs/ in place; a wheel carries a copy.
    in_checkout = Path(__file__).resolve().parents[2] / "docs" / "errors" / f"{code}.md"
    if in_checkout.exists():
        return in_checkout.read_text(encoding="utf-8")
    packaged = resources.files("entragate") / "docs" / f"{code}.md"
    return packaged.read_text(encoding="utf-8") if packaged.is_file() else None
