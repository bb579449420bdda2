"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from entragate.grants import StoreUnavailable
from entragate.metrics import Metrics

from .. import models
from ..context import Context

router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **models.responses(None, models.UNAUTHORIZED),
    },
)
def metrics(api: Context) -> Response:
    try:  # grants are cheap to count; keep the gauge right even between syncs
        counts = dict.fromkeys(api.config.acls, 0)
        for grant in api.service.list():
            counts[grant.acl] = counts.get(grant.acl, 0) + 1
        for acl, n in counts.items():
            known = api.config.acls.get(acl)
            api.metrics.set_grants(acl, n, tenant=known.tenant if known else api.config.tenant_name)
    except StoreUnavailable:
        pass
    return Response(api.metrics.render(), media_type=Metrics.CONTENT_TYPE)
