"""Error codes, the exception tree and the single translation point (docs/design.md#errors).

- :mod:`.codes`: the ``Code`` enum ENTRA000–ENTRA009, titles, next steps, pages.
- :mod:`.exceptions`: the tree of coded exceptions, drawn at its top.
- :mod:`.translate`: the one place where lower-level failures become codes.

``codes`` and ``exceptions`` are light; ``translate`` imports requests, so its names
load on first use and ``entragate explain`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from entragate.errors.codes import AADSTS_HINTS, Code, explain_text
from entragate.errors.exceptions import (
    ERROR_TYPES,
    AuthenticationFailed,
    AuthorizationFailed,
    CannotConnect,
    EntraError,
    LocationProblem,
    ProxyRefused,
    ProxyTunnelRefused,
    RequestRejected,
    ServiceError,
    Throttled,
    TimedOut,
    TlsNotTrusted,
)

if TYPE_CHECKING:
    from entragate.errors.translate import (
        classify_exception,
        from_graph_response,
        from_token_result,
        iter_chain,
        parse_retry_after,
        root_cause,
    )

_TRANSLATE = {
    "classify_exception",
    "from_graph_response",
    "from_token_result",
    "iter_chain",
    "parse_retry_after",
    "root_cause",
}

__all__ = [
    "AADSTS_HINTS",
    "ERROR_TYPES",
    "AuthenticationFailed",
    "AuthorizationFailed",
    "CannotConnect",
    "Code",
    "EntraError",
    "LocationProblem",
    "ProxyRefused",
    "ProxyTunnelRefused",
    "RequestRejected",
    "ServiceError",
    "Throttled",
    "TimedOut",
    "TlsNotTrusted",
    "classify_exception",
    "explain_text",
    "from_graph_response",
    "from_token_result",
    "iter_chain",
    "parse_retry_after",
    "root_cause",
]


def __getattr__(name: str) -> Any:
    if name in _TRANSLATE:
        from entragate.errors import translate

        return getattr(translate, name)
    raise AttributeError(f"module 'entragate.errors' has no attribute {name!r}")
