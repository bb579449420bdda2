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
from entragate.errors import Code, RequestRejected
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
    service.on_change = lambda acl: calls.append(1)
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
    assert info.value.code == Code.ENTRA007
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
    service.on_change = lambda acl: calls.append(1)
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


# --------------------------------------------------------------------------- hardening


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"ttl": "1" + "0" * 5000}, "invalid_ttl"),
        ({"ttl": "9" * 5000 + "h"}, "invalid_ttl"),
        ({"ttl": 10**4000}, "ttl_too_long"),
        ({"ttl": float("nan")}, "invalid_ttl"),
        ({"ttl": float("inf")}, "invalid_ttl"),
        ({"expires_at": datetime.fromisoformat("9999-12-31T23:59:59-23:59")}, "ttl_too_long"),
        ({"expires_at": datetime.fromisoformat("0001-01-01T00:00:00+23:59")}, "invalid_ttl"),
    ],
)
def test_extreme_ttls_and_expiries_are_input_errors(
    service: GrantService, store: GrantStore, kw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidGrant) as info:
        service.grant("staff", V4, "alice", **kw)
    assert info.value.reason == reason and len(info.value.message) < 300
    assert store.active() == []


@pytest.mark.parametrize(
    "user",
    ["\udcff", "ali\ud800ce", "al\u202eice", "al\u200bice", "a\u2028b", "a\x1b[2Jb", "a\x00b"],
)
def test_user_names_that_are_not_plain_text_are_refused(
    service: GrantService, store: GrantStore, user: str
) -> None:
    with pytest.raises(InvalidGrant) as info:
        service.grant("staff", V4, user, ttl=60)
    assert info.value.reason == "invalid_user"
    assert store.active() == []


def test_user_names_are_composed_so_one_person_is_one_user(
    service: GrantService, store: GrantStore
) -> None:
    service.grant("staff", V4, "jose\u0301", ttl=60)  # e + combining acute
    service.grant("staff", V4, "jos\u00e9", ttl=120)  # precomposed: the same user, renewed
    (grant,) = store.active()
    assert grant.user == "jos\u00e9"
    assert service.revoke("staff", V4, "jose\u0301") == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("note", "\x1b]0;title\x07"),
        ("note", "line one\nline two"),
        ("note", "n" * 1025),
        ("note", "\udcff"),
        ("note", "bidi \u202e trick"),
        ("source", "sso\x1b[31m"),
        ("source", "s" * 65),
        ("source", 5),
    ],
)
def test_notes_and_sources_must_be_plain_text(
    service: GrantService, store: GrantStore, field: str, value: Any
) -> None:
    from entragate.service import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        service.grant("staff", V4, "alice", ttl=60, **{field: value})
    assert field in info.value.message and "\x1b" not in info.value.message
    assert store.active() == []


def test_plain_unicode_notes_are_kept_whole(service: GrantService) -> None:
    grant = service.grant("staff", V4, "alice", ttl=60, note="  Zoë's laptop — 東京  ")
    assert grant.note == "Zoë's laptop — 東京"


@pytest.mark.parametrize(
    ("given", "cidr"),
    [
        ("::ffff:81.2.69.142", "81.2.69.142/32"),
        ("::FFFF:5102:458E", "81.2.69.142/32"),
        ("::ffff:81.2.69.142/128", "81.2.69.142/32"),
        ("::ffff:81.2.69.0/120", "81.2.69.0/24"),
    ],
)
def test_ipv4_mapped_forms_are_the_ipv4_address(
    service: GrantService, store: GrantStore, given: str, cidr: str
) -> None:
    assert service.grant("staff", given, "alice", ttl=60).cidr == cidr
    assert service.revoke("staff", given, "alice") == 1
    assert store.active() == []


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("::ffff:10.0.0.1", "forbidden_range"),  # the IPv4 rules apply to the embedded address
        ("::ffff:192.0.2.1", "forbidden_range"),
        ("::ffff:81.2.69.142/100", "host_bits_set"),  # never widened
        ("::ffff:0:0/96", "prefix_too_short"),
        ("::fffe:0:0/95", "forbidden_range"),  # not purely mapped space: left to the IPv6 rules
        ("::ffff:81.2.69.142%eth0", "zone_id"),
        ("8" * 60000, "invalid_ip"),
        ("81.2.69.142/\u00b2", "invalid_ip"),  # superscript two: isdigit() but not int()-able
        ("81.2.69.142/\u0663\u0662", "invalid_ip"),  # Arabic-Indic 32: revoke could not match
        ("\uff18\uff11.2.69.142", "invalid_ip"),
    ],
)
def test_ipv4_mapped_forms_follow_the_ipv4_rules(
    service: GrantService, store: GrantStore, given: str, reason: str
) -> None:
    with pytest.raises(InvalidGrant) as info:
        service.grant("staff", given, "alice", ttl=60)
    assert info.value.reason == reason and len(info.value.message) < 300
    assert store.active() == []


# --------------------------------------------------------------------------- logs


def test_log_values_never_carry_passwords_or_tokens(log_stream: io.StringIO) -> None:
    from entragate.logs import get_logger

    get_logger(component="test").error(
        "store.failed",
        error="cannot connect to postgresql://entragate:s3cr3t@db/entragate?password=p4ss",
        detail="host=db password='p a s s' sslmode=require",
        header="Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
        client_secret="value-of-the-secret",
    )
    text = log_stream.getvalue()
    for secret in ("s3cr3t", "p4ss", "p a s s", "eyJhbGciOiJSUzI1NiJ9", "value-of-the-secret"):
        assert secret not in text, secret
    assert "db/entragate" in text and "sslmode=require" in text


def test_terminal_logs_escape_control_characters() -> None:
    from entragate.logs import get_logger

    stream = io.StringIO()
    configure_logging(json_lines=False, level=logging.INFO, stream=stream)
    try:
        get_logger().info("api.request", path="/\x1b]0;pwned\x07\x1b[2J")
    finally:
        configure_logging(json_lines=True, level=logging.INFO, stream=io.StringIO())
    text = stream.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text
