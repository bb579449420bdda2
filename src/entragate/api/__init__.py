"""The agent's local HTTP API, on FastAPI (Starlette) served by uvicorn.

``app`` builds the application, ``routes`` holds one module per resource, ``server``
runs it for the agent (:class:`ApiServer`), ``token`` manages the bearer token. The
token functions are imported at once (the CLI needs them and must start fast); the
HTTP stack is imported only when :class:`ApiServer` is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .token import default_token_path, find_api_token, load_or_create_api_token

if TYPE_CHECKING:
    from .body import MAX_BODY
    from .server import ApiServer

__all__ = [
    "MAX_BODY",
    "ApiServer",
    "default_token_path",
    "find_api_token",
    "load_or_create_api_token",
]


def __getattr__(name: str) -> Any:
    if name == "ApiServer":
        from .server import ApiServer

        return ApiServer
    if name == "MAX_BODY":
        from .body import MAX_BODY

        return MAX_BODY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
