"""The writer across store outages (docs/design.md#outages): a real PostgreSQL stopped
and started again, and a real SQLite file that has no room left.

While the store is down: /readyz and new grants answer 503 ``store_unavailable``,
status says so, and an address whose grant expires inside the outage still leaves
Entra. When the store is back, grants work again and nothing acknowledged is lost.
Waits are generous safety limits; the measured lags are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from entragate.agent import Agent
from entragate.emulator import Emulator
from entragate.grants import StoreUnavailable
from entragate.grants.sqlite import SQLiteGrantStore
from tests.helpers.api import captured_logs
from tests.helpers.config import make_config
from tests.helpers.postgres import PgServer, start_again, stop_pg_server
from tests.helpers.sync import PLACEHOLDER, remote_ranges, wait_for

#: how long PostgreSQL stays down (the acceptance run uses 30)
OUTAGE = float(os.environ.get("ENTRAGATE_TEST_OUTAGE_SECONDS", "8"))
ALICE, BOB, CAROL = "81.2.69.150/32", "81.2.69.151/32", "81.2.69.152/32"


def agent_on(emu: Emulator, app: Any, tmp_path: Path, store: str) -> Agent:
    config = make_config(emu, app, tmp_path, agent={"rate": 10.0, "max_ttl": 86400})
    config = replace(config, agent=replace(config.agent, store=store))
    return Agent(config, parked_retry=0.5, backoff_cap=2.0)


def call(agent: Agent, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(
        method, f"{agent.api_url}{path}", json=body,
        headers={"Authorization": f"Bearer {agent.token}"}, timeout=15,
    )


def grant(agent: Agent, ip: str, user: str, *, expires_in: float = 3600) -> requests.Response:
    expires_at = (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat()
    return call(agent, "POST", "/v1/grants", {"acl": "staff", "ip": ip, "user": user, "expires_at": expires_at})


def granted(emu: Emulator, app: Any) -> set[str]:
    return (remote_ranges(emu, app.tenant_id) or set()) - {PLACEHOLDER}


def events(stream: Any, name: str) -> list[dict[str, Any]]:
    found = []
    for line in stream.getvalue().splitlines():
        if f'"{name}"' in line:
            found.append(json.loads(line))
    return [e for e in found if e.get("event") == name]


def test_postgresql_stopped_and_started_again(
    emu: Emulator, app: Any, tmp_path: Path, own_pg_server: PgServer
) -> None:
    url = own_pg_server.create_database("outage")
    with captured_logs() as logs, agent_on(emu, app, tmp_path, url) as agent:
        assert wait_for(agent.engine.ready)
        assert grant(agent, ALICE.split("/")[0], "alice").status_code == 201
        bob_expires = time.time() + OUTAGE / 2 + 2
        assert grant(agent, BOB.split("/")[0], "bob", expires_in=bob_expires - time.time()).status_code == 201
        assert wait_for(lambda: granted(emu, app) == {ALICE, BOB})

        stop_pg_server(own_pg_server)
        down = time.monotonic()
        refused = grant(agent, CAROL.split("/")[0], "carol")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert wait_for(lambda: call(agent, "GET", "/readyz").status_code == 503, 30)
        assert call(agent, "GET", "/readyz").json()["error"]["code"] == "store_unavailable"
        status = call(agent, "GET", "/v1/status").json()
        assert status["store_unavailable"] is not None and status["store_unavailable"]["failed_calls"] >= 1
        assert call(agent, "GET", "/healthz").status_code == 200  # the loop lives on

        # Bob's grant expires inside the outage: his address leaves Entra anyway.
        assert wait_for(lambda: granted(emu, app) == {ALICE}, OUTAGE + 30)
        removed_after = time.time() - bob_expires
        print(f"expired address removed {removed_after:.2f}s after its expiry, store down")  # noqa: T201
        assert time.monotonic() - down < OUTAGE, "the outage ended before the expiry: make OUTAGE longer"

        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
        start_again(own_pg_server)
        assert wait_for(lambda: call(agent, "GET", "/readyz").status_code == 200, 60)
        back = time.monotonic()
        assert grant(agent, CAROL.split("/")[0], "carol").status_code == 201
        assert wait_for(lambda: granted(emu, app) == {ALICE, CAROL})
        print(f"grant after the restart visible after {time.monotonic() - back:.2f}s")  # noqa: T201

        listed = {(g["user"], g["cidr"]) for g in call(agent, "GET", "/v1/grants").json()["grants"]}
        assert listed == {("alice", ALICE), ("carol", CAROL)}
        assert call(agent, "GET", "/v1/status").json()["store_unavailable"] is None
        assert b"entragate_store_up 1.0" in agent.metrics.render()
        assert agent.store.next_expiry() is not None  # bob's row went: alice's and carol's remain
        assert agent.store.pop_expired() == []
    # One event when the outage began and one when it ended, not one per retry.
    assert len(events(logs, "store.unavailable")) == 1
    (recovered,) = events(logs, "store.recovered")
    assert recovered["outage_seconds"] >= OUTAGE / 2
    assert any(e.get("recorded") is False for e in events(logs, "grant.expired"))
    assert len(events(logs, "grant.expiry_recorded")) == 1


def fill_up(store: SQLiteGrantStore) -> None:
    """No page more for this database: as good as a full disk for the store's writes."""
    with store._lock:  # the store's own connection: max_page_count is per connection
        conn = store._connection()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {int(pages)}")


def make_room(store: SQLiteGrantStore) -> None:
    with store._lock:
        store._connection().execute("PRAGMA max_page_count = 1073741823")


def test_sqlite_with_no_room_left(emu: Emulator, app: Any, tmp_path: Path) -> None:
    with agent_on(emu, app, tmp_path, f"sqlite:///{tmp_path}/grants.db") as agent:
        assert isinstance(agent.store, SQLiteGrantStore)
        assert wait_for(agent.engine.ready)
        bob_expires = time.time() + 4
        assert grant(agent, BOB.split("/")[0], "bob", expires_in=4).status_code == 201
        fill_up(agent.store)
        acknowledged: set[tuple[str, str]] = set()
        refused = None
        for n in range(5000):  # the free pages left fill up first
            ip, user = f"81.2.{n // 250}.{n % 250 + 1}", f"user{n}"
            response = grant(agent, ip, user)
            if response.status_code == 201:
                acknowledged.add((user, response.json()["cidr"]))
                continue
            refused = response
            break
        assert refused is not None, "the database never filled up"
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert call(agent, "GET", "/v1/status").json()["store_unavailable"] is not None
        with pytest.raises(StoreUnavailable):  # the same row needs the same page it cannot have
            agent.service.grant("staff", ip, user, ttl=600)

        # Bob's address still leaves Entra when his grant ends.
        assert wait_for(lambda: BOB not in granted(emu, app), 60)
        print(f"expired address removed {time.time() - bob_expires:.2f}s after its expiry, disk full")  # noqa: T201

        make_room(agent.store)
        assert grant(agent, CAROL.split("/")[0], "carol").status_code == 201
        assert wait_for(lambda: call(agent, "GET", "/v1/status").json()["store_unavailable"] is None, 30)
        listed = {(g["user"], g["cidr"]) for g in call(agent, "GET", "/v1/grants").json()["grants"]}
        assert acknowledged | {("carol", CAROL)} == listed  # every 201 is there, nothing else
        assert wait_for(lambda: granted(emu, app) == {cidr for _, cidr in listed}, 60)
