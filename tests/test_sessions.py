"""``revoke_sessions = true``: when a user's last grant in the ACL ends (expiry, revoke, flush)
their sign-in sessions are revoked through Graph, exactly once, never while another grant
of theirs is active; failures are retried and reported with their code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from entragate.agent import Agent
from entragate.cli import main
from entragate.config import AclConfig, Config
from entragate.emulator import DEFAULT_ROLES, AppRegistration, Emulator, EmulatorFault
from entragate.grants import GrantStore, InvalidGrant, open_store
from entragate.graph.directory import REVOKE_RATE, DirectoryClient
from entragate.service import GrantService
from entragate.sessions import SessionRevoker
from tests.helpers.config import SECRET, make_config
from tests.helpers.process import write_config
from tests.helpers.servers import free_port
from tests.helpers.sync import LOCATION, wait_for

ALICE = "alice@contoso.example"
V4 = "81.2.69.142"
V6 = "2a00:1450:4001:80b::200e"
ROLES = (*DEFAULT_ROLES, "User.RevokeSessions.All")


def acls(revoke: bool = True) -> dict[str, AclConfig]:
    return {
        "staff": AclConfig(name="staff", location=LOCATION, create=True, revoke_sessions=revoke),
        "open": AclConfig(name="open", location="Entragate open", create=True),
    }


@pytest.fixture
def tenant_app(emu: Emulator) -> AppRegistration:
    app = emu.add_app(emu.add_tenant(), secret=SECRET, roles=ROLES)
    emu.add_user(app.tenant_id, ALICE)
    return app


def revocations(emu: Emulator, app: AppRegistration) -> list[str]:
    return [r["userPrincipalName"] for r in emu.session_revocations(app.tenant_id)]


def test_expiry_of_the_last_grant_revokes_once_and_not_before(
    emu: Emulator, tenant_app: AppRegistration, tmp_path: Path
) -> None:
    config = make_config(emu, tenant_app, tmp_path, acls=acls())
    with Agent(config) as agent:
        agent.service.grant("staff", V4, ALICE, ttl=1)
        agent.service.grant("staff", V6, ALICE, ttl=4)
        assert wait_for(lambda: agent.sessions is not None and agent.sessions.skipped == 1, 30)
        assert revocations(emu, tenant_app) == []  # her IPv6 grant is still active
        assert wait_for(lambda: revocations(emu, tenant_app) == [ALICE], 30)
        assert wait_for(lambda: agent.sessions is not None and agent.sessions.pending == 0, 10)
        status = agent.status()["sessions"]
        assert status["revoked"] == 1 and status["pending"] == [] and status["acls"] == ["staff"]
        assert status["last_revoked"]["user"] == ALICE
    assert revocations(emu, tenant_app) == [ALICE]


def test_ends_in_an_acl_without_revoke_sessions_revoke_nothing(
    emu: Emulator, tenant_app: AppRegistration, tmp_path: Path
) -> None:
    config = make_config(emu, tenant_app, tmp_path, acls=acls())
    store = open_store(f"sqlite:///{tmp_path / 'grants.db'}")
    revoker = SessionRevoker(config, store, DirectoryClient(config, rate=REVOKE_RATE))
    service = GrantService(config, store)
    try:
        service.grant("open", V4, "bob", ttl=60)
        service.revoke("open", V4)
        assert revoker.pending == 0
        service.grant("staff", V4, ALICE, ttl=60)
        service.grant("staff", V6, ALICE, ttl=60)
        service.flush("staff")  # both of her grants end in one commit: one call
        assert revoker.drain(timeout=20) == []
        assert revocations(emu, tenant_app) == [ALICE]
    finally:
        revoker.stop()
        store.close()


class Revoking:
    def __init__(self, config: Config, store: GrantStore) -> None:
        self.service = GrantService(config, store)
        self.revoker = SessionRevoker(config, store, DirectoryClient(config, rate=50.0),
                                      backoff_cap=0.3, parked_retry=0.2).start()


@pytest.fixture
def revoking(emu: Emulator, tenant_app: AppRegistration, tmp_path: Path) -> Iterator[Revoking]:
    config = make_config(emu, tenant_app, tmp_path, acls=acls())
    store = open_store(f"sqlite:///{tmp_path / 'grants.db'}")
    running = Revoking(config, store)
    try:
        yield running
    finally:
        running.revoker.stop()
        store.close()


def pending_error(revoker: SessionRevoker) -> dict[str, Any] | None:
    pending = revoker.status()["pending"]
    return pending[0]["last_error"] if pending else None


def test_a_transient_failure_is_retried_until_it_succeeds(
    emu: Emulator, tenant_app: AppRegistration, revoking: Revoking
) -> None:
    before = emu.counters["POST revokeSignInSessions"]
    emu.set_fault(EmulatorFault("status", host="graph", status=503, path="revokeSignInSessions", count=2))
    revoking.service.grant("staff", V4, ALICE, ttl=60)
    revoking.service.revoke("staff", V4)
    assert wait_for(lambda: revocations(emu, tenant_app) == [ALICE], 30)
    assert revoking.revoker.last_revoked == {"user": ALICE, "acls": ["staff"], "attempts": 3}
    assert emu.counters["POST revokeSignInSessions"] - before == 3


def test_a_missing_permission_is_reported_with_its_code_and_retried(
    emu: Emulator, tenant_app: AppRegistration, revoking: Revoking
) -> None:
    emu.set_roles(tenant_app.tenant_id, tenant_app.client_id, DEFAULT_ROLES)
    revoking.service.grant("staff", V4, ALICE, ttl=60)
    revoking.service.revoke("staff", V4)
    assert wait_for(lambda: pending_error(revoking.revoker) is not None, 20)
    error = pending_error(revoking.revoker)
    assert error is not None and error["code"] == "ENTRA002"
    assert "User.RevokeSessions.All" in error["message"]
    emu.set_roles(tenant_app.tenant_id, tenant_app.client_id, ROLES)  # the admin grants it
    assert wait_for(lambda: revocations(emu, tenant_app) == [ALICE], 30)
    assert revoking.revoker.status()["pending"] == []


def test_a_new_grant_before_the_call_cancels_it(
    emu: Emulator, tenant_app: AppRegistration, tmp_path: Path
) -> None:
    config = make_config(emu, tenant_app, tmp_path, acls=acls())
    store = open_store(f"sqlite:///{tmp_path / 'own.db'}")
    revoker = SessionRevoker(config, store, DirectoryClient(config, rate=50.0), backoff_cap=0.1)
    service = GrantService(config, store)
    try:
        emu.set_fault(EmulatorFault("status", host="graph", status=503, path="revokeSignInSessions", count=1))
        service.grant("staff", V4, ALICE, ttl=60)
        service.revoke("staff", V4)
        assert revoker.run_due() == 1  # the call fails: still queued, with its code
        error = pending_error(revoker)
        assert error is not None and error["code"] == "ENTRA008" and error["request_id"]
        service.grant("staff", V6, ALICE, ttl=60)  # access again before the retry
        assert revoker.drain(timeout=10) == []
        assert revocations(emu, tenant_app) == []
        assert revoker.skipped == 1
    finally:
        revoker.stop()
        store.close()


def test_grants_in_such_an_acl_must_name_a_directory_user(
    emu: Emulator, tenant_app: AppRegistration, revoking: Revoking
) -> None:
    with pytest.raises(InvalidGrant) as refused:
        revoking.service.grant("staff", V4, "alice", ttl=60)
    assert refused.value.reason == "invalid_user" and "revoke_sessions" in refused.value.message
    revoking.service.grant("staff", V4, ALICE, ttl=60)
    revoking.service.grant("staff", V4, "6f1c2e8b-5d4e-4f9a-8b2c-3d4e5f6a7b8c", ttl=60)
    revoking.service.grant("open", V4, "alice", ttl=60)  # no revoke_sessions: any name


def test_direct_mode_revokes_before_the_command_exits(
    emu: Emulator, tenant_app: AppRegistration, tmp_path: Path
) -> None:
    config = write_config(emu, tenant_app, tmp_path, free_port(), rate=20)
    config.write_text(config.read_text().replace("create = true", "create = true\nrevoke_sessions = true"))
    run = CliRunner().invoke
    assert run(main, ["--config", str(config), "grant", V4, "--acl", "staff", "--user", ALICE, "--ttl", "1h"]).exit_code == 0
    refused = run(main, ["--config", str(config), "grant", V4, "--acl", "staff", "--user", "alice", "--ttl", "1h"])
    assert refused.exit_code == 2 and "invalid_user" in refused.stderr
    result = run(main, ["--config", str(config), "--json", "revoke", V4, "--acl", "staff"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"ended": 1}
    assert revocations(emu, tenant_app) == [ALICE]


def test_doctor_warns_when_revoke_sessions_lacks_its_permission(emu: Emulator, tmp_path: Path) -> None:
    import os

    from entragate.doctor.runner import run_doctor

    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("ENTRAGATE_")}
    app = emu.add_app(emu.add_tenant(), secret=SECRET)  # the two Policy roles only
    check = run_doctor(make_config(emu, app, tmp_path, acls=acls()), env).check("permissions")
    assert check.status == "warn" and "User.RevokeSessions.All" in check.summary
    plain = run_doctor(make_config(emu, app, tmp_path, acls=acls(revoke=False)), env).check("permissions")
    assert plain.status == "pass"
    assert "AuditLog.Read.All for `entragate why` (sign-in logs): missing" in plain.summary
    emu.set_roles(app.tenant_id, app.client_id, ROLES)
    granted = run_doctor(make_config(emu, app, tmp_path, acls=acls()), env).check("permissions")
    assert granted.status == "pass" and "User.RevokeSessions.All for revoke_sessions: granted" in granted.summary
