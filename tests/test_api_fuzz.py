"""The API fuzzed from its own OpenAPI document: never a 5xx, and a refusal changes nothing.

schemathesis reads ``/v1/openapi.json`` from a running agent (in-process, against the
emulated tenant, on a real SQLite store) and sends each operation a bounded number of
generated requests, valid and invalid (bodies, parameters and the bearer token).
Every answer must be below 500, and every answer of 400 or more must leave the store
exactly as it was: the same active grants and the same change sequence. (The
``schemathesis.pytest`` loaders are not used: their lazy fixture loader does not run
on this pytest; the operations' hypothesis strategies are driven directly.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from entragate.agent import Agent
from entragate.config import Secret
from entragate.emulator import AppRegistration, Emulator
from tests.helpers.config import make_config
from tests.helpers.sync import LOCATION

TOKEN = "fuzz-token-Rk7Vn2Xq9Lb4Wt6Hz1Mc8Pd3Js5"
MAX_EXAMPLES = 50  # per operation: the whole module stays well under a minute


@pytest.fixture
def agent(emu: Emulator, app: AppRegistration, tmp_path: Path) -> Iterator[Agent]:
    emu.create_location(app.tenant_id, LOCATION, ["192.0.2.255/32"])
    config = make_config(emu, app, tmp_path)
    config = replace(config, agent=replace(config.agent, api_token=Secret(TOKEN)))
    with Agent(config) as running:
        # grants to lose: a refusal that deleted or changed any would show in the snapshot
        for i, user in enumerate(("alice", "bob", "carol")):
            running.service.grant("staff", f"81.2.69.{140 + i}", user, ttl=3600, source="test")
        yield running


def snapshot(agent: Agent) -> tuple[list[dict[str, Any]], int]:
    return [g.to_json() for g in agent.store.active()], agent.store.change_seq()


def fuzz(operation: APIOperation, agent: Agent) -> int:
    """Send ``operation`` up to MAX_EXAMPLES valid and as many invalid requests."""
    calls = 0
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # an operation with nothing to negate has no negative cases
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=MAX_EXAMPLES * len(strategies),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def exchange(case: schemathesis.Case) -> None:
        nonlocal calls
        before = snapshot(agent)
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        calls += 1
        label = f"{case.method} {case.formatted_path} {case.query or ''} {case.body!r:.200}"
        assert response.status_code < 500, f"{label} answered {response.status_code}: {response.text[:500]}"
        if response.status_code >= 400:
            assert snapshot(agent) == before, f"{label} was refused ({response.status_code}) but changed the store"

    exchange()
    return calls


def test_the_api_never_answers_5xx_and_refusals_change_nothing(agent: Agent) -> None:
    schema = schemathesis.openapi.from_url(
        f"{agent.api_url}/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"POST /v1/grants", "DELETE /v1/grants", "GET /v1/grants", "GET /v1/status"} <= labels
    calls = {f"{op.method.upper()} {op.path}": fuzz(op, agent) for op in operations}
    assert all(n > 0 for n in calls.values()), calls
