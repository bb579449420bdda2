"""What the routes of one API server work with, kept in ``app.state.api``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from entragate.config import Config
from entragate.metrics import Metrics
from entragate.service import GrantService

from .auth import BearerToken


@dataclass(frozen=True)
class ApiContext:
    config: Config
    service: GrantService
    token: BearerToken
    status: Callable[[], dict[str, Any]]
    ready: Callable[[], bool]
    metrics: Metrics
    server_url: str  # the OpenAPI document's server
    body_timeout: float
    #: why /readyz says 503 (reason code, message); None: use ``ready`` alone
    not_ready_reason: Callable[[], tuple[str, str] | None] | None = None
    #: False when the sync loop is dead (/healthz then fails); None: always alive
    alive: Callable[[], bool] | None = None


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


async def _context(request: Request) -> ApiContext:  # async: no thread for a lookup
    return context_of(request)


Context = Annotated[ApiContext, Depends(_context)]
