"""``POST /v1/acls/{acl}/flush``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from entragate.service import UnknownAcl

from .. import models
from ..body import no_body
from ..context import Context
from ..errors import ApiError, JsonResponse

router = APIRouter()


@router.post(
    "/v1/acls/{acl}/flush",
    summary="End every grant of an ACL",
    response_class=JsonResponse,
    dependencies=[Depends(no_body)],
    responses=models.responses(
        (200, models.Ended, "How many grants ended"),
        {
            404: "Unknown ACL (`unknown_acl`)",
            413: models.BODY_ERRORS[413],
            422: "Malformed ACL name (`invalid_acl`)",
            **models.COMMON_ERRORS,
        },
    ),
)
def flush(api: Context, acl: str) -> JsonResponse:
    try:
        ended = api.service.flush(acl)
    except UnknownAcl as exc:  # the path names a resource that does not exist
        raise ApiError(404, exc.reason, exc.message) from None
    return JsonResponse({"ended": ended})
