"""The exception tree: every failure that reaches an operator is one of these.

::

    Exception
    ├── EntraError                 every coded failure (``.code``, ``.message``, ``.to_json()``)
    │   ├── CannotConnect          ENTRA000  DNS, refused, reset, unreachable, proxy TCP
    │   ├── AuthenticationFailed   ENTRA001  token endpoint refused us, or Graph 401
    │   ├── AuthorizationFailed    ENTRA002  Graph 403
    │   ├── TlsNotTrusted          ENTRA003  certificate verification failed
    │   ├── TimedOut               ENTRA004  connect, handshake or response too slow
    │   ├── Throttled              ENTRA005  429
    │   ├── LocationProblem        ENTRA006  named location missing, ambiguous, not IP
    │   ├── RequestRejected        ENTRA007  400/413/422 to a write, capacity full
    │   ├── ServiceError           ENTRA008  5xx from Graph or the token endpoint
    │   └── ProxyRefused           ENTRA009  proxy answered CONNECT with non-2xx
    └── OSError
        └── ProxyTunnelRefused     raised by the transport, becomes ProxyRefused

Only :mod:`entragate.errors.translate` decides which of these a lower-level failure
becomes (docs/design.md#errors).
"""

from __future__ import annotations

from typing import Any, ClassVar

from entragate.errors.codes import Code


class EntraError(Exception):
    code: ClassVar[Code] = Code.ENTRA000

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
        **facts: Any,
    ) -> None:
        # A subclass declares the facts of its own failure as class attributes with a
        # default (``retry_after``, ``verify_code`` …); only those may be passed.
        for name, value in facts.items():
            if name.startswith("_") or not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} has no fact {name!r}")
            setattr(self, name, value)
        self.detail = detail
        self.host = host
        self.operation = operation
        self.request_id = request_id
        self.correlation_id = correlation_id
        self.status = status
        self.graph_code = graph_code
        self.hint = hint or self.code.next_step
        super().__init__(self.message)

    @property
    def title(self) -> str:
        return self.code.title

    @property
    def retryable(self) -> bool:
        return self.code.retryable

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
    """DNS failure, connection refused, reset or unreachable, or the proxy's TCP port failed."""

    code = Code.ENTRA000


class AuthenticationFailed(EntraError):
    """The token endpoint refused the credentials (``aadsts`` holds its AADSTS code), or Graph answered 401."""

    code = Code.ENTRA001
    aadsts: int | None = None


class AuthorizationFailed(EntraError):
    """Graph answered 403: a permission is missing, not consented, or delegated instead of application."""

    code = Code.ENTRA002


class TlsNotTrusted(EntraError):
    """TCP connected but certificate verification failed; ``verify_code`` is OpenSSL's."""

    code = Code.ENTRA003
    verify_code: int | None = None
    verify_message: str = ""


class TimedOut(EntraError):
    """Connect, TLS handshake or response did not complete within the configured timeout."""

    code = Code.ENTRA004


class Throttled(EntraError):
    """Graph or the token endpoint answered 429; ``retry_after`` when it said how long."""

    code = Code.ENTRA005
    retry_after: float | None = None


class LocationProblem(EntraError):
    """The configured named location is missing, ambiguous, or not an IP location;
    ``reason`` says which (``missing``, ``ambiguous``, ``not_ip``), ``ids`` lists the
    ambiguous matches and ``suggestions`` the closest existing names."""

    code = Code.ENTRA006
    reason: str | None = None
    ids: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()


class RequestRejected(EntraError):
    """Graph refused a write (400/413/422), or the ACL's locations are full."""

    code = Code.ENTRA007


class ServiceError(EntraError):
    """Graph or the token endpoint answered 5xx."""

    code = Code.ENTRA008


class ProxyRefused(EntraError):
    """The proxy answered CONNECT with non-2xx (407 authentication, 403 policy); ``proxy_status``."""

    code = Code.ENTRA009
    proxy_status: int | None = None


ERROR_TYPES: dict[Code, type[EntraError]] = {
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
