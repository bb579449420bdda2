"""``GET /``: the status page for people, one self-contained HTML file (status_page.html).

The page carries everything it shows besides the live data: the error catalogue
(each code's title, next step and ``entragate explain`` text) and the agent's pace,
embedded here as JSON. It asks for the API token and keeps it in the tab's session
storage; the data come from ``GET /v1/status`` and ``GET /v1/grants``. The
Content-Security-Policy allows only its own inline script and style (by hash) and
requests to this agent.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from importlib.resources import files


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


@functools.lru_cache(maxsize=8)
def render_page(rate: float) -> tuple[str, str]:
    """(the page, its Content-Security-Policy) for an agent pacing at ``rate``."""
    from entragate.errors.codes import Code, explain_text

    template = files("entragate").joinpath("status_page.html").read_text(encoding="utf-8")
    codes = {
        str(code): {"title": code.title, "next_step": code.next_step, "explain": explain_text(str(code))}
        for code in Code
    }
    catalogue = json.dumps({"rate": rate, "codes": codes}).replace("</", "<\\/")
    page = template.replace("/*CATALOGUE*/", catalogue)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(_hash(s) for s in scripts),
            "style-src " + " ".join(_hash(s) for s in styles),
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return page, policy
