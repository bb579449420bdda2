"""``GET /``: the status page for people (``entragate/status_page.py``). It is open like
the probes because it holds no data: it asks for the token and reads the API with it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from entragate.status_page import render_page

from ..context import Context

router = APIRouter()


@router.get(
    "/",
    summary="The status page for people (no authentication; it asks for the token)",
    response_class=HTMLResponse,
    include_in_schema=False,  # a page for people, not part of the JSON API
    responses={200: {"description": "One self-contained HTML page", "content": {"text/html": {}}}},
)
async def status_page(api: Context) -> HTMLResponse:
    page, policy = render_page(api.config.agent.rate)
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"},
    )
