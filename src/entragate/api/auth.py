"""Bearer-token authentication of every request except the two probes.

Checked before routing, so no path or method trick reaches a route, a 404 or a 405
without the token. The comparison uses the header's raw bytes (a configured token may
be any UTF-8 text) and takes constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from .errors import ApiError

# Probes that orchestrators call without credentials; they reveal only liveness and
# readiness (docs/design.md#api).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})  # "/": the page holds no data


class BearerToken:
    def __init__(self, token: str) -> None:
        if not token or not token.strip():
            raise ValueError("the API needs a non-empty token")
        self._token = token.strip().encode("utf-8")

    def __repr__(self) -> str:
        return "BearerToken('***')"

    def accepts(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """True when the first Authorization header is ``Bearer <this token>``."""
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None:
            return False
        scheme, _, sent = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(sent.strip(), self._token)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "missing or wrong bearer token (Authorization: Bearer <api_token>)",
        {"WWW-Authenticate": 'Bearer realm="entragate"'},
    )
