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
    responses=models.responses(
        (200, models.Health, "The process answers and its sync loop runs"),
        {503: "The sync loop is dead or keeps crashing (`sync_loop_dead`): restart the agent"},
    ),
)
async def healthz(api: Context) -> JsonResponse:
    if api.alive is not None and not api.alive():
        raise ApiError(
            503,
            "sync_loop_dead",
            "the sync loop is not running (see the agent's log for sync.loop_restarted); restart the agent",
        )
    return JsonResponse({"ok": True})


@router.get(
    "/readyz",
    summary="Readiness: the remote named locations have been read once (no authentication)",
    response_class=JsonResponse,
    responses=models.responses(
        (200, models.Ready, "Ready"),
        {503: "Not ready yet (`not_ready`), or the grant store is down (`store_unavailable`)"},
    ),
)
def readyz(api: Context) -> JsonResponse:  # ready() may ask the store: a thread
    reason = api.not_ready_reason() if api.not_ready_reason is not None else None
    if reason is None and not api.ready():
        reason = "not_ready", "the agent has not read the named locations yet; see GET /v1/status for why"
    if reason is not None:
        raise ApiError(503, reason[0], reason[1], {"Retry-After": "5"})
    return JsonResponse({"ready": True})
