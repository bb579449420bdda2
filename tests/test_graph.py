"""The Graph client and identity against the emulated tenant over real TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from entragate.config import CLOUDS, Secret
from entragate.emulator import Emulator, EmulatorFault
from entragate.errors import EntraError, LocationProblem
from entragate.graph import GraphClient, TokenProvider
from entragate.graph.client import IP_LOCATION, LOCATIONS_PATH
from entragate.transport import new_session
from tests.helpers.config import SECRET, make_config
from tests.helpers.credentials import self_signed_credential


def client(emu: Emulator, app: object, **overrides: object) -> GraphClient:
    return GraphClient(make_config(emu, app, **overrides))  # type: ignore[arg-type]


def test_token_is_cached_for_its_lifetime(emu: Emulator, app: object) -> None:
    config = make_config(emu, app)  # type: ignore[arg-type]
    tokens = TokenProvider(config, new_session(config))
    emu.reset_counters()
    first = tokens.access_token()
    second = tokens.access_token()
    assert first == second
    assert emu.counters.get("token", 0) == 1


def test_certificate_credentials_pem_and_pfx(emu: Emulator, tmp_path: Path) -> None:
    cert_pem, pem_path, pfx_path = self_signed_credential(tmp_path)
    tenant = emu.add_tenant()
    registration = emu.add_app(tenant, certificate_pem=cert_pem)
    for path, password in ((pem_path, None), (pfx_path, Secret("pfx-pass"))):
        graph = client(
            emu,
            registration,
            client_secret=None,
            client_certificate=path,
            client_certificate_password=password,
        )
        assert graph.list_locations() == []


def test_certificate_not_registered_is_entra001_700027(emu: Emulator, tmp_path: Path) -> None:
    registered, _, _ = self_signed_credential(tmp_path, "registered")
    _, other_pem, _ = self_signed_credential(tmp_path, "other")
    tenant = emu.add_tenant()
    registration = emu.add_app(tenant, certificate_pem=registered)
    graph = client(emu, registration, client_secret=None, client_certificate=other_pem)
    with pytest.raises(EntraError) as caught:
        graph.list_locations()
    assert caught.value.code == "ENTRA001"
    assert caught.value.aadsts == 700027  # type: ignore[attr-defined]


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_national_clouds_use_their_own_hosts(emu: Emulator, cloud: str) -> None:
    tenant = emu.add_tenant(cloud=cloud)
    registration = emu.add_app(tenant, secret=SECRET)
    config = make_config(
        emu,
        registration,
        cloud=cloud,
        login_host=CLOUDS[cloud].login_host,
        graph_host=CLOUDS[cloud].graph_host,
    )
    graph = GraphClient(config)
    graph.create_location("Cloud check", ["81.2.69.142/32"])
    hosts = {r.host for r in emu.requests if r.tenant == tenant}
    assert hosts == {CLOUDS[cloud].login_host, CLOUDS[cloud].graph_host}


def test_tenant_in_another_cloud_is_entra001_90002(emu: Emulator) -> None:
    tenant = emu.add_tenant(cloud="global")
    registration = emu.add_app(tenant, secret=SECRET)
    graph = client(
        emu,
        registration,
        cloud="usgov",
        login_host=CLOUDS["usgov"].login_host,
        graph_host=CLOUDS["usgov"].graph_host,
    )
    with pytest.raises(EntraError) as caught:
        graph.list_locations()
    assert caught.value.code == "ENTRA001"
    assert caught.value.aadsts == 90002  # type: ignore[attr-defined]
    assert "cloud" in caught.value.hint


def test_paging_follows_next_link(emu: Emulator, app: object) -> None:
    for i in range(150):
        emu.create_location(app.tenant_id, f"Branch {i:03d}", [f"81.2.{i}.0/24"])  # type: ignore[attr-defined]
    graph = client(emu, app)
    graph.tokens.access_token()
    before = sum(1 for r in emu.requests if r.method == "GET" and r.tenant == app.tenant_id)  # type: ignore[attr-defined]
    found = graph.list_locations(page_size=40)
    after = sum(1 for r in emu.requests if r.method == "GET" and r.tenant == app.tenant_id)  # type: ignore[attr-defined]
    assert len(found) == 150
    assert len({loc.id for loc in found}) == 150
    assert after - before == 4  # 40 + 40 + 40 + 30


def test_patch_replaces_the_whole_list_with_odata_types(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    location = graph.create_location("Entragate staff", ["81.2.69.142/32", "2a00:1450:4001:80b::200e/128"])
    graph.replace_ranges(location, ["81.2.69.143/32", "2a00:1450:4001:80b::/64"])
    stored = next(loc for loc in emu.locations(app.tenant_id) if loc["id"] == location.id)  # type: ignore[attr-defined]
    assert stored["@odata.type"] == IP_LOCATION
    assert sorted((r["@odata.type"], r["cidrAddress"]) for r in stored["ipRanges"]) == [
        ("#microsoft.graph.iPv4CidrRange", "81.2.69.143/32"),
        ("#microsoft.graph.iPv6CidrRange", "2a00:1450:4001:80b::/64"),
    ]
    assert graph.get_location(location.id).cidrs == ("81.2.69.143/32", "2a00:1450:4001:80b::/64")


def test_find_location_by_name_id_and_its_failures(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    created = graph.create_location("Entragate staff", ["81.2.69.142/32"])
    assert graph.find_location("Entragate staff") == created
    assert graph.find_location(created.id) == created
    with pytest.raises(LocationProblem, match="no named location"):
        graph.find_location("Nobody made this")
    graph.create_location("Twice", ["81.2.69.1/32"])
    graph.create_location("Twice", ["81.2.69.2/32"])
    with pytest.raises(LocationProblem, match="2 named locations"):
        graph.find_location("Twice")
    graph.request(
        "POST",
        LOCATIONS_PATH,
        operation="create country location",
        json={
            "@odata.type": "#microsoft.graph.countryNamedLocation",
            "displayName": "Countries",
            "countriesAndRegions": ["NL"],
            "includeUnknownCountriesAndRegions": False,
        },
    )
    with pytest.raises(LocationProblem, match="not an IP ranges location"):
        graph.find_location("Countries")


def test_delete_untrusts_a_trusted_location_first(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    location = graph.create_location("Trusted one", ["81.2.69.142/32"], trusted=True)
    graph.delete_location(location)
    assert all(loc["id"] != location.id for loc in emu.locations(app.tenant_id))  # type: ignore[attr-defined]


def test_every_request_carries_a_client_request_id(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    graph.create_location("Ids", ["81.2.69.142/32"])
    writes = emu.writes(app.tenant_id)  # type: ignore[attr-defined]
    assert writes and all(w.client_request_id for w in writes)


@pytest.mark.parametrize(
    ("fault", "code"),
    [(EmulatorFault("status", host="login", status=503, path="token", count=1), "ENTRA008"),
     (EmulatorFault("throttle", host="login", path="token", count=1), "ENTRA005")],
)
def test_token_endpoint_failure_keeps_its_code_while_msal_answers_from_cache(
    emu: Emulator, app: object, fault: EmulatorFault, code: str
) -> None:
    """msal caches a 5xx/429 answer for seconds: the repeated acquisitions that it answers
    itself (no request reaches the token endpoint) report what Microsoft said."""
    config = make_config(emu, app)  # type: ignore[arg-type]
    tokens = TokenProvider(config, new_session(config))
    emu.set_fault(fault)
    emu.reset_counters()
    for _ in range(4):
        with pytest.raises(EntraError) as info:
            tokens.access_token()
        assert info.value.code == code, info.value
    assert emu.counters.get("token", 0) == 1  # the first only: msal answered the rest


def test_token_endpoint_is_never_regional(emu: Emulator, app: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSAL_FORCE_REGION", "westus2")
    config = make_config(emu, app)  # type: ignore[arg-type]
    emu.reset_counters()
    assert TokenProvider(config, new_session(config)).access_token()
    assert emu.counters.get("token", 0) == 1  # served by login.microsoftonline.com itself


def test_workload_identity_policy_block_is_entra001_53003(emu: Emulator, app: object) -> None:
    config = make_config(emu, app)  # type: ignore[arg-type]
    emu.block_workload_identity(app.tenant_id, app.client_id)  # type: ignore[attr-defined]
    with pytest.raises(EntraError) as info:
        TokenProvider(config, new_session(config)).access_token()
    assert info.value.code == "ENTRA001" and getattr(info.value, "aadsts", None) == 53003
    assert "Conditional Access" in info.value.message


def test_other_location_types_are_listed_and_never_managed(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    tid = app.tenant_id  # type: ignore[attr-defined]
    emu.create_country_location(tid, "Countries", ["NL"])
    emu.create_compliant_network_location(tid, "All Compliant Network locations")
    ip = graph.create_location("Entragate staff", ["81.2.69.142/32"])
    kinds = {loc.display_name: loc.odata_type for loc in graph.list_locations()}
    assert kinds["All Compliant Network locations"] == "#microsoft.graph.compliantNetworkNamedLocation"
    assert graph.find_location("entragate STAFF") == ip
    with pytest.raises(LocationProblem, match="compliantNetworkNamedLocation location, not an IP"):
        graph.find_location("All Compliant Network locations")


def test_missing_location_id_is_graphs_404_and_entra006(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    with pytest.raises(LocationProblem) as info:
        graph.get_location("0b7a6f10-9f6e-4a55-8d1e-3c0c61d2a9f4")
    assert info.value.status == 404 and info.value.graph_code == "ResourceNotFound"


def test_emulated_read_after_write_lag(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    tid = app.tenant_id  # type: ignore[attr-defined]
    location = graph.create_location("Lagging", ["81.2.69.1/32"])
    emu.read_lag_seconds = 60.0
    try:
        graph.replace_ranges(location, ["81.2.69.2/32"])
        assert graph.get_location(location.id).cidrs == ("81.2.69.1/32",)  # the previous version
        assert [loc.cidrs for loc in graph.list_locations()] == [("81.2.69.1/32",)]
        assert emu.locations(tid)[0]["ipRanges"][0]["cidrAddress"] == "81.2.69.2/32"  # what Graph holds
        fresh = graph.create_location("Fresh", ["81.2.69.3/32"])
        assert fresh.id not in {loc.id for loc in graph.list_locations()}  # not listed yet
    finally:
        emu.read_lag_seconds = 0.0
    assert [loc.cidrs for loc in graph.list_locations()] == [("81.2.69.2/32",), ("81.2.69.3/32",)]


def test_deleted_location_stays_restorable_and_its_name_is_free(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    tid = app.tenant_id  # type: ignore[attr-defined]
    old = graph.create_location("Entragate staff", ["81.2.69.1/32"])
    graph.delete_location(old)
    assert [d["id"] for d in emu.deleted_locations(tid)] == [old.id]
    new = graph.create_location("Entragate staff", ["81.2.69.2/32"])  # the same name is allowed
    assert new.id != old.id
    emu.restore_location(tid, old.id)
    assert {loc.id for loc in graph.list_locations()} == {old.id, new.id}
    assert graph.get_location(old.id).cidrs == ("81.2.69.1/32",)
    with pytest.raises(LocationProblem, match="2 named locations"):
        graph.find_location("Entragate staff")  # a restore can make a name ambiguous


def test_deleted_items_are_listed_and_restored_through_graph(emu: Emulator, app: object) -> None:
    graph = client(emu, app)
    gone = graph.create_location("Gone", ["81.2.69.9/32"])
    graph.delete_location(gone)
    deleted_path = "/identity/conditionalAccess/deletedItems/namedLocations"
    listed = graph.request("GET", deleted_path, operation="list deleted named locations").json()["value"]
    assert [d["id"] for d in listed] == [gone.id]
    restored = graph.request("POST", f"{deleted_path}/{gone.id}/restore", operation="restore", write=True).json()
    assert restored["id"] == gone.id and graph.get_location(gone.id).cidrs == ("81.2.69.9/32",)
    with pytest.raises(LocationProblem):
        graph.request("POST", f"{deleted_path}/{gone.id}/restore", operation="restore", write=True)


def test_deleted_items_carry_their_deletion_time_and_can_be_read_purged_or_expire(emu: Emulator, app: object) -> None:
    """Graph's deleted items are policyDeletableItem objects: deletedDateTime, GET one, DELETE for good,
    and gone 30 days after the deletion."""
    graph = client(emu, app)
    deleted_path = "/identity/conditionalAccess/deletedItems/namedLocations"
    first = graph.create_location("Purged", ["81.2.69.10/32"])
    second = graph.create_location("Aged", ["81.2.69.11/32"])
    graph.delete_location(first)
    graph.delete_location(second)
    one = graph.request("GET", f"{deleted_path}/{first.id}", operation="get deleted named location").json()
    assert one["id"] == first.id and one["deletedDateTime"].endswith("Z")
    graph.request("DELETE", f"{deleted_path}/{first.id}", operation="permanently delete", write=True)
    with pytest.raises(LocationProblem):
        graph.request("POST", f"{deleted_path}/{first.id}/restore", operation="restore", write=True)
    listed = graph.request("GET", deleted_path, operation="list deleted named locations").json()["value"]
    assert [d["id"] for d in listed] == [second.id]
    emu.date_offset_seconds = 31 * 86400
    try:
        listed = graph.request("GET", deleted_path, operation="list deleted named locations").json()["value"]
    finally:
        emu.date_offset_seconds = 0
    assert listed == []
    fresh = graph.create_location("Aged", ["81.2.69.12/32"])
    assert "deletedDateTime" not in graph.request(
        "GET", f"/identity/conditionalAccess/namedLocations/{fresh.id}", operation="get"
    ).json()
