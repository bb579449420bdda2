"""``POST``, ``DELETE`` and ``GET /v1/grants``.

Handlers are plain functions: FastAPI runs them on its thread pool, where the store's
blocking calls belong. A grant is answered 201 only once the store committed it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from entragate.errors import Code
from entragate.grants import GrantRequest, RevokeRequest

from .. import models
from ..body import json_body
from ..context import Context
from ..errors import JsonResponse

router = APIRouter()
Body = Annotated[Any, Depends(json_body)]


@router.post(
    "/v1/grants",
    summary="Grant an address (acknowledged once durably stored)",
    status_code=201,
    response_class=JsonResponse,
    openapi_extra=models.request_body(models.GrantRequest),
    responses=models.responses(
        (201, models.Grant, "The stored grant"),
        **models.BODY_ERRORS,
        e409=f"{Code.ENTRA007}: the ACL's named locations are full; nothing stored",
        **models.COMMON_ERRORS,
    ),
)
def create_grant(api: Context, body: Body) -> JsonResponse:
    grant = api.service.submit_grant(GrantRequest.parse(body))
    return JsonResponse(grant.to_json(), status_code=201)


@router.delete(
    "/v1/grants",
    summary="End grants of an address (idempotent)",
    response_class=JsonResponse,
    openapi_extra=models.request_body(models.RevokeRequest),
    responses=models.responses(
        (200, models.Ended, "How many grants ended (0 when none matched)"),
        **models.BODY_ERRORS,
        **models.COMMON_ERRORS,
    ),
)
def revoke_grants(api: Context, body: Body) -> JsonResponse:
    return JsonResponse({"ended": api.service.submit_revoke(RevokeRequest.parse(body))})


@router.get(
    "/v1/grants",
    summary="List active grants",
    response_class=JsonResponse,
    responses=models.responses(
        (200, models.GrantList, "Active grants"),
        e422="Unknown ACL (`unknown_acl`)",
        **models.COMMON_ERRORS,
    ),
)
def list_grants(api: Context, acl: str | None = None) -> JsonResponse:
    grants = api.service.list(acl or None)
    return JsonResponse({"grants": [g.to_json() for g in grants]})
