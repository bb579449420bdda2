"""The application factory: routes, error handlers and the OpenAPI document.

Routes: ``POST/DELETE/GET /v1/grants``, ``POST /v1/acls/{acl}/flush``,
``GET /v1/status``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /`` (the
status page) and ``GET /v1/openapi.json`` (generated from the routes and
:mod:`entragate.api.models`). Every route but the two probes and the page (which holds
no data) needs ``Authorization: Bearer <api_token>``
(:mod:`entragate.api.middleware`). Errors are always ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from entragate import __version__

from . import models
from .auth import OPEN_PATHS
from .context import ApiContext, Context
from .errors import ApiError, JsonResponse, api_error, error_response
from .middleware import ApiMiddleware, App
from .routes import acls, grants, health, metrics, page, status

TITLE = "entragate agent API"
DESCRIPTION = (
    "Just-in-time IP grants kept in Microsoft Entra ID IP named locations. Bound to "
    "loopback by default. Every route except /healthz and /readyz needs "
    "`Authorization: Bearer <api_token>`."
)
# a framework validation error of a field answers with the field's code word
_FIELD_CODES = {"acl": "invalid_acl", "ip": "invalid_ip", "user": "invalid_user",
                "ttl": "invalid_ttl", "expires_at": "invalid_ttl"}


def create_app(api: ApiContext) -> App:
    """The API as an ASGI application, ready for any ASGI server."""
    app = FastAPI(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        openapi_url=None,  # served by the route below, with this server's address
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # /healthz/ is not /healthz: no redirect around the token
    )
    app.state.api = api
    document = APIRouter()

    @document.get(
        "/v1/openapi.json",
        summary="This document",
        response_class=JsonResponse,
        responses=models.responses((200, None, "OpenAPI 3.1"), models.UNAUTHORIZED),
    )
    async def openapi(api: Context) -> JsonResponse:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, api.server_url)
        return JsonResponse(app.openapi_schema)

    routers = (grants.router, acls.router, status.router, health.router, metrics.router, page.router, document)
    for router in routers:
        app.include_router(router)
    app.state.allowed = _allowed_methods(routers)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _any_error)
    # the hot path: grants and revokes skip the framework's layers (docs/design.md#grant-path)
    direct = {("POST", "/v1/grants"): grants.create_grant, ("DELETE", "/v1/grants"): grants.revoke_grants}
    return ApiMiddleware(app, api.token, direct, api.drain)


async def _any_error(_request: Request, exc: Exception) -> JsonResponse:
    return error_response(api_error(exc))


async def _http_error(request: Request, exc: HTTPException) -> JsonResponse:
    path = request.url.path
    if exc.status_code == 404:
        return error_response(ApiError(404, "not_found", f"no route {path}"))
    if exc.status_code == 405:
        allowed: list[str] = next((m for p, m in request.app.state.allowed if p.match(path)), [])
        return error_response(
            ApiError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {path}; use {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )
        )
    return error_response(ApiError(exc.status_code, f"http_{exc.status_code}", str(exc.detail)))


def _allowed_methods(routers: Iterable[APIRouter]) -> list[tuple[re.Pattern[str], list[str]]]:
    """Per path, the methods of its routes (one route per method; HEAD goes with GET)."""
    methods: dict[re.Pattern[str], set[str]] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute):
                methods.setdefault(route.path_regex, set()).update(route.methods or ())
    return [(pattern, sorted(names)) for pattern, names in methods.items()]


async def _validation_error(_request: Request, exc: RequestValidationError) -> JsonResponse:
    first = exc.errors()[0] if exc.errors() else {}
    field = next((str(part) for part in reversed(first.get("loc", ())) if isinstance(part, str)), "")
    message = f"{field or 'request'}: {first.get('msg', 'invalid input')}"
    return error_response(ApiError(400, _FIELD_CODES.get(field, "invalid_request"), message))


def openapi_document(app: FastAPI, server_url: str) -> dict[str, Any]:
    """OpenAPI 3.1 of ``app``'s routes, the request bodies of the grant model included."""
    doc = get_openapi(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        routes=app.routes,
        servers=[{"url": server_url}],
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in models.REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{"bearer": []}]
    for path in OPEN_PATHS & set(doc["paths"]):  # the status page is not in the document
        for operation in doc["paths"][path].values():
            operation["security"] = []
    return doc
