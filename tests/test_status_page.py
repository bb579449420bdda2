"""``GET /``, the status page, in a real headless browser (Debian's chromium through
Playwright) against a real agent process and the emulated tenant."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from entragate.emulator import AppRegistration, Emulator, EmulatorFault
from tests.helpers.process import TOKEN, running_agent
from tests.helpers.sync import remote_ranges, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def agent(emu: Emulator, app: AppRegistration, tmp_path: Path) -> Iterator[str]:
    with running_agent(emu, app, tmp_path) as (url, _config):
        yield url


def grant(url: str, ip: str, user: str) -> None:
    answer = requests.post(
        f"{url}/v1/grants",
        json={"acl": "staff", "ip": ip, "user": user, "ttl": 3600},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_page_is_one_self_contained_file_with_a_strict_policy(agent: str) -> None:
    answer = requests.get(f"{agent}/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy
    for external in ("src=\"http", "href=\"http", "<link", "@import"):
        assert external not in answer.text, external
    assert TOKEN not in answer.text  # the page never carries the token


def test_token_prompt_then_grants_and_a_failing_location(
    agent: str, emu: Emulator, app: AppRegistration, browser: object
) -> None:
    grant(agent, "81.2.69.142", "alice")
    assert wait_for(lambda: "81.2.69.142/32" in (remote_ranges(emu, app.tenant_id) or set()), 30)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{agent}/")
    page.wait_for_selector("#login:not([hidden])")

    page.fill("#token", "not-the-token")
    page.click("#login button")
    page.wait_for_selector("#problem:has-text('refused')")

    page.fill("#token", TOKEN)
    page.click("#login button")
    page.wait_for_selector("section.acl[data-acl='staff']")
    acl = page.text_content("section.acl[data-acl='staff']") or ""
    assert "alice" in acl and "81.2.69.142/32" in acl
    assert "59 min" in acl or "1 h" in acl  # expires in, relative
    page.wait_for_selector("section.location .ok:has-text('in sync')")
    assert page.evaluate("sessionStorage.getItem('entragate-api-token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0  # nothing outlives the tab

    # Graph now refuses the agent's writes: the next grant leaves the location failing.
    emu.set_fault(EmulatorFault("status", host="graph", method="PATCH", status=403))
    grant(agent, "81.2.69.160", "bob")
    failing = page.wait_for_selector("section.location .failing", timeout=30_000)
    assert "ENTRA002" in (failing.text_content() or "")
    box = page.text_content("section.location .error[data-code='ENTRA002']") or ""
    assert "Authorization failed" in box
    assert "+ 81.2.69.160/32" in (page.text_content("section.location") or "")
    page.click("section.location .error details summary")
    assert "ENTRA002" in (page.text_content("section.location .error details pre") or "")

    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('entragate-api-token')") is None
