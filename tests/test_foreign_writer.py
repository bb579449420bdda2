"""Another writer on the same location (docs/design.md#foreign-writer): a script PATCHing
through Graph, or a second agent with its own store. The agent notices, reports
``foreign_writer``, repairs at a slow pace while it lasts and clears once it stops.

Paces are counted from the emulator's write log; waits are generous safety timeouts.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from entragate.agent import Agent
from entragate.doctor.checks import WARN, check_locations
from entragate.emulator import Emulator
from entragate.emulator.state import WriteRecord
from entragate.sync.foreign import FOREIGN_WINDOW, SLOW_REPAIR, ForeignPace, ForeignWriter
from tests.helpers.config import make_config
from tests.helpers.emulator import TenantApp, emulator_session
from tests.helpers.sync import LOCATION, PLACEHOLDER, remote_ranges, wait_for

#: Short enough for a test, long against a 0.2 s verify interval (about 15 reads per repair);
#: quiet outlasts two repair intervals, as the default does, or two slowed agents would each
#: take the other's pause for the end.
PACE = ForeignPace(changes=3, window=60.0, repair_interval=3.0, quiet=6.0, quiet_reads=3)
OURS = "81.2.69.1/32"
THEIRS = ("81.9.9.9/32", "81.9.9.10/32")


# ---------------------------------------------------------------- the detector alone


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_three_changes_within_the_window_start_an_episode_and_quiet_reads_end_it() -> None:
    clock = Clock()
    fw = ForeignWriter(clock=clock)
    pace = ForeignPace(changes=3, window=300.0, repair_interval=60.0, quiet=120.0, quiet_reads=3)
    assert not fw.changed(["81.9.9.9/32"], [OURS], pace)
    clock.now += 200
    assert not fw.changed([], [], pace)
    clock.now += 200  # the first change left the window
    assert not fw.changed(["81.9.9.10/32"], [], pace)
    assert not fw.active and fw.describe() is None
    clock.now += 10
    assert fw.changed([], ["81.9.9.10/32"], pace)  # three within 300 s
    assert fw.active
    described = fw.describe()
    assert described is not None and described["changes"] == 3
    assert described["last_change"]["removed"] == ["81.9.9.10/32"]
    assert not fw.changed(["81.9.9.11/32"], [], pace)  # still the same episode
    assert fw.describe()["changes"] == 4  # type: ignore[index]
    # quiet: at least three reads *and* 120 s without a change
    for _ in range(5):
        clock.now += 10
        assert not fw.unchanged(pace)
    clock.now += 100
    assert fw.unchanged(pace)
    assert not fw.active and fw.describe() is None
    assert not fw.unchanged(pace)  # ends once


def test_only_repairs_wait_and_only_while_another_writer_is_active() -> None:
    clock = Clock()
    fw = ForeignWriter(clock=clock)
    pace = ForeignPace(changes=1, repair_interval=60.0)
    wrote_at = clock.now
    assert fw.repair_hold(True, wrote_at, pace) == 0.0  # no episode: repair now
    fw.changed(["81.9.9.9/32"], [], pace)
    assert fw.repair_hold(True, wrote_at, pace) == wrote_at + 60.0
    assert fw.repair_hold(False, wrote_at, pace) == 0.0  # our own change (grant, expiry) goes now
    clock.now += 61
    assert fw.repair_hold(True, wrote_at, pace) == 0.0


def test_the_default_pace_fits_the_verify_interval() -> None:
    short = ForeignPace.for_verify(5.0)
    assert (short.window, short.repair_interval) == (FOREIGN_WINDOW, SLOW_REPAIR)
    slow = ForeignPace.for_verify(300.0)  # the default: changes are only seen every 5 minutes
    assert slow.window >= slow.changes * 300.0
    assert slow.repair_interval >= 300.0 and slow.quiet >= slow.quiet_reads * 300.0


# ---------------------------------------------------------------- against the emulator


def start(emu: Emulator, app: Any, tmp_path: Path) -> Agent:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = make_config(emu, app, tmp_path, agent={"rate": 50.0, "verify_interval": 0.2})
    agent = Agent(config, parked_retry=0.5)
    agent.engine.foreign_pace = PACE
    agent.start()
    assert wait_for(agent.engine.ready, 30)
    return agent


def foreign_writer(agent: Agent) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = agent.engine.status()["acls"]["staff"]["locations"][0]["foreign_writer"]
    return entry


def repairs(emu: Emulator, tenant: str, since: int, address: str) -> list[WriteRecord]:
    return [w for w in emu.writes(tenant)[since:] if w.method == "PATCH" and address in (w.ranges or ())]


def assert_slow(writes: list[WriteRecord]) -> None:
    gaps = [b.time - a.time for a, b in zip(writes, writes[1:], strict=False)]
    assert all(gap >= PACE.repair_interval * 0.9 for gap in gaps), gaps


def events(stream: io.StringIO, state: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [e for e in found if e.get("event") == "location.foreign_writer" and e.get("state") == state]


@pytest.fixture
def log_stream() -> io.StringIO:
    from entragate.logs import configure_logging

    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.INFO, stream=stream)
    return stream


def test_a_script_patching_the_location_is_reported_and_repaired_slowly(
    emu: Emulator, app: Any, tmp_path: Path, log_stream: io.StringIO
) -> None:
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    agent = start(emu, app, tmp_path)
    session = emulator_session(emu)
    script = TenantApp(emu, app.tenant_id, app, session)
    stop = threading.Event()
    try:
        agent.service.grant("staff", OURS.split("/")[0], "alice", ttl=3600, source="test")
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {OURS}, 30)
        location_id = agent.engine.shards["staff"][0].location.id  # type: ignore[union-attr]
        token = script.access_token()

        def other_writer() -> None:
            n = 0
            while not stop.wait(0.25):
                body = {
                    "@odata.type": "#microsoft.graph.ipNamedLocation",
                    "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": THEIRS[n % 2]}],
                }
                n += 1
                script.graph("PATCH", f"identity/conditionalAccess/namedLocations/{location_id}", json=body,
                             headers={"Authorization": f"Bearer {token}"})

        before = len(emu.writes(app.tenant_id))
        thread = threading.Thread(target=other_writer, daemon=True)
        thread.start()
        assert wait_for(lambda: foreign_writer(agent) is not None, 30)
        started = events(log_stream, "started")
        assert len(started) == 1 and started[0]["location"] == LOCATION
        assert started[0]["added"] and set(started[0]["added"]) <= set(THEIRS)
        assert 'entragate_foreign_writer{acl="staff",location="Entragate staff",tenant="default"} 1.0' in agent.metrics.render().decode()
        # over many verify passes and dozens of foreign writes, our repairs stay slow
        active_from = len(emu.writes(app.tenant_id))
        reads = emu.counters.get("GET namedLocations", 0)
        assert wait_for(lambda: emu.counters.get("GET namedLocations", 0) >= reads + 40, 60)
        ours = repairs(emu, app.tenant_id, active_from, OURS)
        theirs = [w for w in emu.writes(app.tenant_id)[active_from:] if w.method == "PATCH" and OURS not in (w.ranges or ())]
        assert len(theirs) >= 10 and len(ours) <= 1 + len(theirs) // 5, (len(ours), len(theirs))
        assert_slow(repairs(emu, app.tenant_id, before, OURS)[1:])  # the first may precede the episode
        status = foreign_writer(agent)
        assert status is not None and status["changes"] >= 3 and status["last_change"]["at"]
        # doctor's locations check, given the agent's status, names the location and what to do
        result = check_locations(agent.config, agent.graph.list_locations(), agent.engine.status())
        assert result.status == WARN and "being changed by someone else" in result.summary
        assert [c.details["location"] for c in result.causes if c.id == "foreign_writer"] == [LOCATION]
        assert any("own store" in fix for fix in result.fix)
        stop.set()
        thread.join(10)
        # the other writer stopped: the episode ends and the location is ours again
        assert wait_for(lambda: foreign_writer(agent) is None, 30)
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {OURS}, 30)
        assert len(events(log_stream, "ended")) == 1 and len(events(log_stream, "started")) == 1
        assert 'entragate_foreign_writer{acl="staff",location="Entragate staff",tenant="default"} 0.0' in agent.metrics.render().decode()
    finally:
        stop.set()
        session.close()
        agent.stop()


def test_two_agents_with_separate_stores_stop_fighting(
    emu: Emulator, app: Any, tmp_path: Path, log_stream: io.StringIO
) -> None:
    emu.create_location(app.tenant_id, LOCATION, [PLACEHOLDER])
    first = start(emu, app, tmp_path / "first")
    second = start(emu, app, tmp_path / "second")
    try:
        first.service.grant("staff", OURS.split("/")[0], "alice", ttl=3600, source="test")
        second.service.grant("staff", THEIRS[0].split("/")[0], "bob", ttl=3600, source="test")
        assert wait_for(lambda: foreign_writer(first) is not None and foreign_writer(second) is not None, 60)
        active_from = len(emu.writes(app.tenant_id))
        reads = emu.counters.get("GET namedLocations", 0)
        assert wait_for(lambda: emu.counters.get("GET namedLocations", 0) >= reads + 60, 60)
        for address in (OURS, THEIRS[0]):
            assert_slow(repairs(emu, app.tenant_id, active_from, address))
        second.stop()
        assert wait_for(lambda: foreign_writer(first) is None, 30)
        assert wait_for(lambda: remote_ranges(emu, app.tenant_id) == {OURS}, 30)
        assert {e["location"] for e in events(log_stream, "ended")} == {LOCATION}
    finally:
        second.stop()
        first.stop()
