"""``GET /v1/status``: per ACL and location, what is desired, applied and failing."""

from __future__ import annotations

from fastapi import APIRouter

from .. import models
from ..context import Context
from ..errors import JsonResponse

router = APIRouter()


@router.get(
    "/v1/status",
    summary="Per ACL and location: ranges desired and applied, last sync, last error code, "
    "throttled until",
    response_class=JsonResponse,
    responses=models.responses((200, None, "Agent status"), models.COMMON_ERRORS),
)
def status(api: Context) -> JsonResponse:
    return JsonResponse(api.status())
