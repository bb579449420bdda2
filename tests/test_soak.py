"""The fault soak's harness (``make soak``, bench/soak.py): its checks, and a short run.

The short run is the soak itself for about 20 s with a few of its faults (the agent a
real process on the session's PostgreSQL, ``kill -9`` and restarted, against the
emulator), so ``make test`` keeps the harness working; ``make soak`` runs every fault
for 3 minutes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("soak")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def check(bench: ModuleType) -> ModuleType:
    return sys.modules["soak_check"]  # imported by soak, from bench/


def op(check: ModuleType, kind: str, cidr: str, sent: float, answered: float, status: int,
       expires_at: float | None = None, ttl: int = 10) -> object:
    return check.Op(kind, cidr, "alice", ttl, sent, answered, status, None, expires_at)


def test_a_write_after_the_revoke_or_never_granted_is_a_violation(check: ModuleType) -> None:
    ledger = check.Ledger()
    ledger.add(op(check, "grant", "81.0.0.1/32", 100.0, 100.1, 201, expires_at=110.0))
    ledger.add(op(check, "revoke", "81.0.0.1/32", 103.0, 103.1, 200))
    ledger.add(op(check, "grant", "81.0.0.2/32", 100.0, 100.1, 503))  # in flight: may be stored
    writes = [
        (101.0, "loc", ["81.0.0.1/32", "81.0.0.2/32"]),  # both may be there
        (103.5, "loc", ["81.0.0.1/32"]),  # within the grace of the revoke's answer
        (105.0, "loc", ["81.0.0.1/32", "192.0.2.255/32"]),  # 1.9 s after the revoke: not allowed
        (106.0, "loc", ["81.0.0.9/32"]),  # nobody ever asked for it
    ]
    checked, bad = check.check_writes(ledger, writes, {"192.0.2.255/32"})
    assert checked == 4
    assert [(v.time, v.cidr, v.kept) for v in bad] == [(105.0, "81.0.0.1/32", True), (106.0, "81.0.0.9/32", False)]
    assert bad[1].why == "never granted"


def test_missing_and_extra_follow_the_last_certain_answer(check: ModuleType) -> None:
    ledger = check.Ledger()
    ledger.add(op(check, "grant", "81.0.0.1/32", 100.0, 100.1, 201, expires_at=130.0))
    ledger.add(op(check, "grant", "81.0.0.2/32", 100.0, 100.1, 201, expires_at=130.0))
    ledger.add(op(check, "revoke", "81.0.0.2/32", 101.0, 101.1, 503))  # perhaps ended: neither
    ledger.add(op(check, "grant", "81.0.0.3/32", 100.0, 100.1, 201, expires_at=104.0))
    ledger.add(op(check, "grant", "81.0.0.4/32", 100.0, 100.1, 422))  # refused: never allowed
    verdict = check.compare(ledger, {"81.0.0.3/32", "81.0.0.4/32"}, 110.0)
    assert verdict.missing == ["81.0.0.1/32"]
    assert verdict.extra == ["81.0.0.3/32", "81.0.0.4/32"]
    assert check.compare(ledger, {"81.0.0.1/32"}, 110.0).converged
    assert check.compare(ledger, {"81.0.0.1/32", "81.0.0.2/32"}, 110.0).converged


def test_a_short_soak_finds_nothing_wrong(bench: ModuleType, own_pg_server: object) -> None:
    # its own durable server, so pg_restart can stop it (docs/design.md#tests)
    faults = ["graph_5xx", "kill9", "pg_restart", "reset"]
    report = bench.run(24.0, faults, ttl=(3, 8), addresses=120, pg=own_pg_server)
    assert [p["fault"] for p in report["phases"]] == faults
    assert report["agent_starts"] == 2, report
    assert report["phases"][1]["api_errors"].get("0 ConnectionError", 0) >= 1, report["phases"][1]
    assert report["phases"][2]["api_errors"].get("503 store_unavailable", 0) >= 1, report["phases"][2]
    assert report["graph_writes_checked"] >= 5, report
    assert report["by_kind"].get("grant 201", 0) >= 50, report
    assert report["write_violations"] == 0, report["write_violation_examples"]
    assert (report["missing"], report["extra"]) == (0, 0), report
    assert report["ok"], bench.table(report)
