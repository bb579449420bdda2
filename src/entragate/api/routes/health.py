"""``GET /healthz`` and ``GET /readyz``: the probes, open without a token."""

from __future__ import annotations

from fastapi import APIRouter

from .. import models
from ..context import Context
from ..errors import ApiError, JsonResponse

router = APIRouter()


@router.get(
    "/healthz",
    summary="Liveness (no authentication)",
    response_class=JsonResponse,
    responses=models.responses((200, models.Health, "The process answers"), {}),
)
async def healthz() -> JsonResponse:
    return JsonResponse({"ok": True})


@router.get(
    "/readyz",
    summary="Readiness: the remote named locations have been read once (no authentication)",
    response_class=JsonResponse,
    responses=models.responses((200, models.Ready, "Ready"), {503: "Not ready yet (`not_ready`)"}),
)
def readyz(api: Context) -> JsonResponse:  # ready() may ask the store: a thread
    if not api.ready():
        raise ApiError(
            503,
            "not_ready",
            "the agent has not read the named locations yet; see GET /v1/status for why",
            {"Retry-After": "5"},
        )
    return JsonResponse({"ready": True})
