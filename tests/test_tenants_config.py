"""Several tenants in one file: [tenant.NAME] tables, [acl.X] tenant = NAME, and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from entragate.config import CLOUDS, Config, ConfigError, ConnectTo, load_config

DEFAULT_ID = "4a6f1c2e-8b5d-4e3f-9a1b-2c3d4e5f6a7b"
OTHER_ID = "9b8a7c6d-1e2f-4a3b-8c9d-0e1f2a3b4c5d"
CLIENT = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"

TWO_TENANTS = f"""
tenant_id = "{DEFAULT_ID}"
client_id = "{CLIENT}"
client_secret = "default-secret"
connect_to = ["login.microsoftonline.com:443:127.0.0.1:8443"]

[agent]
rate = 2

[tenant.gov]
tenant_id = "{OTHER_ID}"
client_id = "{CLIENT}"
client_secret = "gov-secret"
cloud = "usgov"
rate = 0.5

[acl.staff]
location = "Entragate staff"

[acl.govstaff]
location = "Entragate staff"
tenant = "gov"
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "entragate.toml"
    path.write_text(text)
    return load_config(path, env={})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def test_tenant_tables_and_views(tmp_path: Path) -> None:
    config = load(tmp_path, TWO_TENANTS)
    assert config.tenant_names() == ["default", "gov"]
    gov = config.tenant("gov")
    assert (gov.tenant_id, gov.cloud, gov.rate) == (OTHER_ID, "usgov", 0.5)
    assert gov.login_host == CLOUDS["usgov"].login_host and gov.graph_host == CLOUDS["usgov"].graph_host
    assert gov.client_secret.reveal() == "gov-secret"
    # network keys come from the top level when the table leaves them out
    assert gov.connect_to == (ConnectTo("login.microsoftonline.com", 443, "127.0.0.1", 8443),)
    assert config.tenant_of("govstaff").name == "gov"
    assert config.tenant_of("staff").tenant_id == DEFAULT_ID
    assert config.tenant("default").rate == 2.0

    view = config.for_tenant("gov")
    assert (view.tenant_id, view.graph_host, view.agent.rate) == (OTHER_ID, "graph.microsoft.us", 0.5)
    assert list(view.acls) == ["govstaff"] and view.tenant_name == "gov"
    assert view.client_secret.reveal() == "gov-secret"
    assert view.tenant_of("govstaff").tenant_id == OTHER_ID
    default = config.for_tenant("default")
    assert list(default.acls) == ["staff"] and default.tenant_id == DEFAULT_ID
    assert config.serving_tenants() == ["default", "gov"]
    with pytest.raises(KeyError, match="configured: default, gov"):
        config.tenant("nope")


def test_single_tenant_file_is_the_default_tenant(tmp_path: Path) -> None:
    config = load(tmp_path, f'tenant_id = "{DEFAULT_ID}"\nclient_id = "{CLIENT}"\nclient_secret = "x"\n'
                  '[acl.staff]\nlocation = "Staff"\n')
    assert config.tenants == {} and config.serving_tenants() == ["default"]
    assert config.for_tenant("default") is config
    assert config.acls["staff"].tenant == "default"


def test_only_named_tenants_need_no_top_level_credentials(tmp_path: Path) -> None:
    text = TWO_TENANTS.replace(f'tenant_id = "{DEFAULT_ID}"\nclient_id = "{CLIENT}"\nclient_secret = "default-secret"\n', "")
    text = text.replace('[acl.staff]\nlocation = "Entragate staff"\n', "")
    config = load(tmp_path, text)
    assert config.serving_tenants() == ["gov"]
    # ...but an ACL of the default tenant does
    found = problems(tmp_path, text + '\n[acl.other]\nlocation = "Other"\n')
    assert any(p.startswith("tenant_id is missing") for p in found), found


def test_unknown_tenant_duplicate_tenant_and_shared_location(tmp_path: Path) -> None:
    text = TWO_TENANTS + f"""
[tenant.twin]
tenant_id = "{OTHER_ID.upper()}"
client_id = "{CLIENT}"
client_secret = "x"
cloud = "usgov"

[acl.lost]
tenant = "nowhere"

[acl.dup]
location = "ENTRAGATE STAFF"
"""
    found = problems(tmp_path, text)
    assert len(found) == 3, found
    assert any(p.startswith("acl.lost.tenant 'nowhere' is not a tenant") and "default, gov, twin" in p
               for p in found), found
    assert any(p.startswith(f"tenant.twin.tenant_id '{OTHER_ID.upper()}' (usgov) is the same tenant as "
                            "tenant.gov.tenant_id") for p in found), found
    assert any(p.startswith("acl.dup.location 'ENTRAGATE STAFF' is already acl.staff's location in tenant "
                            "'default'") for p in found), found


def test_same_tenant_id_in_another_cloud_is_another_tenant(tmp_path: Path) -> None:
    text = TWO_TENANTS.replace(f'tenant_id = "{OTHER_ID}"', f'tenant_id = "{DEFAULT_ID}"')
    config = load(tmp_path, text)
    assert config.tenant("gov").tenant_id == config.tenant_id


def test_tenant_table_problems_name_their_keys(tmp_path: Path) -> None:
    text = TWO_TENANTS + """
[tenant.bad]
tenant_id = "not a guid"
cloud = "mars"
clientid = "x"
rate = 0

[tenant.default]
tenant_id = "x.onmicrosoft.com"
"""
    found = problems(tmp_path, text)
    assert "unknown key tenant.bad.clientid (did you mean 'client_id'?)" in found
    assert "tenant.bad.cloud 'mars' is not one of global, usgov, usgov-dod, china" in found
    assert any(p.startswith("tenant.bad.tenant_id 'not a guid' is neither a GUID") for p in found)
    assert any(p.startswith("tenant.bad.client_id is missing") for p in found)
    assert "no credential in [tenant.bad]: set client_secret, client_secret_file or client_certificate" in found
    assert "tenant.bad.rate must be greater than 0, got 0" in found
    assert any(p.startswith("tenant.default: 'default' is the tenant of the top-level keys") for p in found)


def test_secret_file_of_a_tenant(tmp_path: Path) -> None:
    secret = tmp_path / "gov-secret"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    text = TWO_TENANTS.replace('client_secret = "gov-secret"', f'client_secret_file = "{secret}"')
    config = load(tmp_path, text)
    assert config.tenant("gov").client_secret.reveal() == "from-file"
    assert "from-file" not in repr(config)
