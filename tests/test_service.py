"""GrantService: validation before the store, renewals, capacity, audit events."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from entragate.config import AclConfig, AgentConfig, Config
from entragate.errors import RequestRejected
from entragate.grants import GrantStore, InvalidGrant, open_store, utcnow
from entragate.logs import configure_logging
from entragate.service import GrantService, UnknownAcl

V4 = "81.2.69.142"
V4_OTHER = "81.2.69.160"
V6 = "2a00:1450:4001:80b::200e"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json_lines=True, level=logging.DEBUG, stream=stream)
    yield stream


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def make_config(tmp_path: Path, **acl_kw: Any) -> Config:
    return Config(
        acls={"staff": AclConfig("staff", "entragate staff", **acl_kw)},
        agent=AgentConfig(store=f"sqlite:///{tmp_path}/grants.db", max_ttl=86400),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GrantStore]:
    s = open_store(f"sqlite:///{tmp_path}/grants.db")
    yield s
    s.close()


@pytest.fixture
def service(tmp_path: Path, store: GrantStore) -> GrantService:
    return GrantService(make_config(tmp_path), store)


def snapshot(store: GrantStore) -> tuple[list[Any], int]:
    return [g.to_json() for g in store.active()], store.change_seq()


def test_grant_host_addresses_become_single_address_ranges(
    service: GrantService, store: GrantStore, log_stream: io.StringIO
) -> None:
    now = utcnow()
    g4 = service.grant("staff", V4, "alice", ttl="8h", note="on call", now=now)
    g6 = service.grant("staff", V6, "bob", ttl=3600, source="api", now=now)
    assert g4.cidr == "81.2.69.142/32"
    assert g4.expires_at == now + timedelta(hours=8)
    assert g4.note == "on call" and g4.source == "cli"
    assert g6.cidr == "2a00:1450:4001:80b::200e/128"
    assert {g.cidr for g in store.active("staff")} == {g4.cidr, g6.cidr}
    created = [e for e in events(log_stream) if e["event"] == "grant.created"]
    assert [(e["acl"], e["user"], e["cidr"], e["source"]) for e in created] == [
        ("staff", "alice", "81.2.69.142/32", "cli"),
        ("staff", "bob", "2a00:1450:4001:80b::200e/128", "api"),
    ]
    assert created[0]["expires_at"].endswith("Z")


def test_grant_again_renews(
    service: GrantService, store: GrantStore, log_stream: io.StringIO
) -> None:
    now = utcnow()
    first = service.grant("staff", V4, "alice", ttl=600, now=now)
    second = service.grant("staff", V4, "alice", ttl=7200, now=now + timedelta(seconds=5))
    assert second.created_at == first.created_at
    assert second.expires_at == now + timedelta(seconds=7205)
    assert len(store.active()) == 1
    assert [e["event"] for e in events(log_stream) if e["event"].startswith("grant.")] == [
        "grant.created",
        "grant.renewed",
    ]


def test_grant_with_expires_at(service: GrantService) -> None:
    now = utcnow()
    when = (now + timedelta(hours=2)).replace(microsecond=0)
    grant = service.grant("staff", V4, "alice", expires_at=when, now=now)
    assert grant.expires_at == when


@pytest.mark.parametrize(
    ("acl", "ip", "kw", "reason"),
    [
        ("staff", "not-an-ip", {"ttl": 60}, "invalid_ip"),
        ("staff", "0.0.0.0/0", {"ttl": 60}, "prefix_too_short"),
        ("staff", "::/0", {"ttl": 60}, "prefix_too_short"),
        ("staff", "81.2.69.142/0", {"ttl": 60}, "host_bits_set"),
        ("staff", "80.0.0.0/7", {"ttl": 60}, "prefix_too_short"),
        ("staff", "2a00::/15", {"ttl": 60}, "prefix_too_short"),
        ("staff", "10.0.0.5", {"ttl": 60}, "forbidden_range"),
        ("staff", "127.0.0.1", {"ttl": 60}, "forbidden_range"),
        ("staff", "fe80::1%eth0", {"ttl": 60}, "zone_id"),
        ("staff", V4, {"ttl": -5}, "invalid_ttl"),
        ("staff", V4, {"ttl": 0}, "invalid_ttl"),
        ("staff", V4, {"ttl": "soon"}, "invalid_ttl"),
        ("staff", V4, {"ttl": 86401}, "ttl_too_long"),
        ("staff", V4, {"ttl": "2d"}, "ttl_too_long"),
        ("staff", V4, {}, "invalid_ttl"),
        ("staff", V4, {"ttl": 60, "expires_at": datetime(2099, 1, 1, tzinfo=UTC)}, "invalid_ttl"),
        ("staff", V4, {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}, "invalid_ttl"),
        ("staff", V4, {"expires_at": datetime(2099, 1, 1)}, "invalid_ttl"),
        ("staff", V4, {"expires_at": utcnow() + timedelta(days=30)}, "ttl_too_long"),
        ("nope", V4, {"ttl": 60}, "unknown_acl"),
        ("", V4, {"ttl": 60}, "invalid_acl"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    service: GrantService, store: GrantStore, acl: str, ip: str, kw: dict[str, Any], reason: str
) -> None:
    service.grant("staff", V4_OTHER, "carol", ttl=60)
    before = snapshot(store)
    calls: list[int] = []
    service.on_change = lambda: calls.append(1)
    with pytest.raises(InvalidGrant) as info:
        service.grant(acl, ip, "alice", **kw)
    assert info.value.reason == reason
    assert info.value.message
    assert snapshot(store) == before
    assert calls == []


def test_empty_user_is_refused(service: GrantService, store: GrantStore) -> None:
    with pytest.raises(InvalidGrant) as info:
        service.grant("staff", V4, "  ", ttl=60)
    assert info.value.reason == "invalid_user"
    assert store.active() == []


def test_unknown_acl_names_the_known_ones(service: GrantService) -> None:
    with pytest.raises(UnknownAcl) as info:
        service.list("nope")
    assert info.value.reason == "unknown_acl"
    assert "staff" in info.value.message
    assert info.value.to_dict() == {"code": "unknown_acl", "message": info.value.message}


def test_full_acl_refuses_new_ranges_with_entra007(tmp_path: Path, store: GrantStore) -> None:
    service = GrantService(make_config(tmp_path, max_ranges=2, max_locations=1), store)
    service.grant("staff", V4, "alice", ttl=60)
    service.grant("staff", V6, "bob", ttl=60)
    before = snapshot(store)
    with pytest.raises(RequestRejected) as info:
        service.grant("staff", V4_OTHER, "carol", ttl=60)
    assert info.value.code == "ENTRA007"
    assert snapshot(store) == before
    # a range already present costs nothing: another holder and a renewal still fit
    service.grant("staff", V4, "carol", ttl=60)
    service.grant("staff", V4, "alice", ttl=120)
    assert len(store.active()) == 3


def test_capacity_callback_gets_the_acl_and_its_cidrs(tmp_path: Path, store: GrantStore) -> None:
    seen: list[tuple[str, list[str]]] = []

    def capacity(acl: str, cidrs: list[str]) -> None:
        seen.append((acl, cidrs))
        if len(cidrs) > 1:
            raise RequestRejected("full", operation="grant")

    service = GrantService(make_config(tmp_path), store, capacity=capacity)
    service.grant("staff", V4, "alice", ttl=60)
    with pytest.raises(RequestRejected):
        service.grant("staff", V6, "bob", ttl=60)
    assert seen[0] == ("staff", ["81.2.69.142/32"])
    assert sorted(seen[1][1]) == sorted(["81.2.69.142/32", "2a00:1450:4001:80b::200e/128"])
    assert [g.user for g in store.active()] == ["alice"]


def test_revoke_one_holder_or_all(
    service: GrantService, store: GrantStore, log_stream: io.StringIO
) -> None:
    calls: list[int] = []
    service.on_change = lambda: calls.append(1)
    for user in ("alice", "bob", "carol"):
        service.grant("staff", V4, user, ttl=60)
    assert service.revoke("staff", V4, "alice") == 1
    assert sorted(g.user for g in store.active()) == ["bob", "carol"]
    assert service.revoke("staff", "81.2.69.142/32") == 2
    assert store.active() == []
    assert service.revoke("staff", V4) == 0  # idempotent
    assert len(calls) == 5  # 3 grants + 2 revokes that ended something
    revoked = [e for e in events(log_stream) if e["event"] == "grant.revoked"]
    assert sorted(e["user"] for e in revoked) == ["alice", "bob", "carol"]


def test_revoke_refuses_garbage_and_unknown_acl(service: GrantService) -> None:
    with pytest.raises(InvalidGrant) as info:
        service.revoke("staff", "garbage")
    assert info.value.reason == "invalid_ip"
    with pytest.raises(InvalidGrant) as info:
        service.revoke("nope", V4)
    assert info.value.reason == "unknown_acl"


def test_flush_and_list(service: GrantService, store: GrantStore) -> None:
    service.grant("staff", V4, "alice", ttl=60)
    service.grant("staff", V6, "bob", ttl=60)
    assert [g.cidr for g in service.list("staff")] == [g.cidr for g in store.active("staff")]
    assert len(service.list()) == 2
    assert service.flush("staff") == 2
    assert service.list() == []
    assert service.flush("staff") == 0
