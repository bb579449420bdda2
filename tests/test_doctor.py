"""``entragate doctor`` end to end: real TLS on loopback against the emulated tenant.

Every cause id the doctor names (docs/design.md#doctor) and every non-TLS error
code is produced by a real fault (emulator TLS scenario, emulator fault, proxy,
broken bundle or configuration) and the report is checked for its top-level
code, cause ids, vendor and a fix.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from entragate.config import Config, load_config
from entragate.doctor.checks import CHECK_IDS
from entragate.doctor.command import doctor_command
from entragate.doctor.render import render_text
from entragate.doctor.runner import Report, run_doctor
from entragate.emulator import ConnectProxy, Emulator, EmulatorFault

OS_RELEASE = str(Path(__file__).parent / "data" / "os-release" / "debian-12")
LOCATION = "entragate staff"
LOGIN = "login.microsoftonline.com"
GRAPH = "graph.microsoft.com"


def clean_env(**extra: str) -> dict[str, str]:
    """The real environment (SSL_CERT_FILE & co. included) minus any proxy variables."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("ENTRAGATE_")}
    env.update(extra)
    return env


BREAK_GLASS_GROUP = "5d3f8a1e-0c4b-4e7a-9f2d-6b1c0e9a7d3f"


@dataclass
class Tenant:
    emu: Emulator
    tmp: Path
    tenant_id: str
    client_id: str
    secret: str
    secret_id: str

    def config(
        self,
        *,
        secret: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        ca_bundle: str | None | bool = True,
        expected_roots: bool = True,
        timeout: float = 3.0,
        proxy: str | None = None,
        connect_to: list[str] | None = None,
        acl: dict[str, Any] | None = None,
        extra: str = "",
        env: dict[str, str] | None = None,
    ) -> Config:
        lines = [
            f'tenant_id = "{tenant_id or self.tenant_id}"',
            f'client_id = "{client_id or self.client_id}"',
            f"client_secret = {json.dumps(self.secret if secret is None else secret)}",
            f"timeout = {timeout}",
            f"connect_to = {json.dumps(self.emu.connect_to() if connect_to is None else connect_to)}",
        ]
        if ca_bundle is True:
            lines.append(f'ca_bundle = "{self.emu.ca_bundle_path}"')
        elif isinstance(ca_bundle, str):
            lines.append(f"ca_bundle = {json.dumps(ca_bundle)}")
        if expected_roots:
            lines.append(f'expected_roots = "{self.emu.ca_bundle_path}"')
        if proxy:
            lines.append(f'proxy = "{proxy}"')
        lines.append(extra)
        acl = acl if acl is not None else {"location": LOCATION}
        lines.append("[acl.staff]")
        for key, value in acl.items():
            lines.append(f"{key} = {json.dumps(value)}")
        path = self.tmp / f"config-{time.monotonic_ns()}.toml"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)  # it holds the client secret: a healthy setup keeps it private
        return load_config(path, env if env is not None else clean_env(), require_credentials=False)

    def run(self, config: Config | None = None, env: dict[str, str] | None = None) -> Report:
        report = run_doctor(config or self.config(), env if env is not None else clean_env(), OS_RELEASE)
        self.assert_no_secret(report)
        return report

    def assert_no_secret(self, report: Report) -> None:
        blob = json.dumps(report.to_json()) + render_text(report)
        assert self.secret not in blob


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    emu = Emulator(state_dir=tmp_path / "emu").start()
    try:
        tid = emu.add_tenant()
        app = emu.add_app(tid)
        location_id = emu.create_location(tid, LOCATION, ["81.2.69.142/32"])
        # A healthy tenant: an enabled policy uses the location and excludes break-glass.
        emu.add_policy(tid, "entragate: block unless granted", exclude_locations=[location_id],
                       exclude_groups=[BREAK_GLASS_GROUP])
        assert app.secret is not None and app.secret_id is not None
        yield Tenant(emu, tmp_path, tid, app.client_id, app.secret, app.secret_id)
    finally:
        emu.stop()


def statuses(report: Report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


def cause_ids(report: Report, check: str) -> list[str]:
    return [c.id for c in report.check(check).causes]


def assert_failure(report: Report, code: str, check: str, causes: list[str] | None = None) -> None:
    data = report.to_json()
    assert data["ok"] is False
    assert data["code"] == code, json.dumps(data, indent=1)
    first = report.first_failure
    assert first is not None and first.id == check, json.dumps(data, indent=1)
    assert first.code == code
    assert first.fix, f"no fix printed for {check}"
    if causes is not None:
        assert cause_ids(report, check)[: len(causes)] == causes, json.dumps(data, indent=1)
    text = render_text(report)
    assert f"docs/errors/{code}.md" in text and "fix:" in text


# ----------------------------------------------------------------------------- healthy


def test_healthy_run_passes_and_json_shape(tenant: Tenant) -> None:
    started = time.monotonic()
    report = tenant.run()
    took = time.monotonic() - started
    data = report.to_json()
    assert data["ok"] is True and data["code"] is None, json.dumps(data, indent=1)
    assert [c["id"] for c in data["checks"]] == list(CHECK_IDS)
    for check in data["checks"]:
        assert set(check) == {"id", "status", "code", "summary", "causes", "fix"}
        assert check["status"] == "pass", check
    assert took < 3.0
    assert "✓" in render_text(report)
    trust = report.check("truststore").summary
    assert "ca_bundle" in trust and "SSL_CERT_FILE" in trust  # the machine's SSL_CERT_FILE is overridden


# ----------------------------------------------------------------------------- TLS causes


@pytest.mark.parametrize(
    ("cn", "o", "vendor"),
    [
        ("Zscaler Intermediate Root CA (zscalertwo.net)", "Zscaler Inc.", "Zscaler"),
        ("ca.contoso.goskope.com", "Netskope Inc", "Netskope"),
        ("FortiGate CA", "Fortinet", "Fortinet"),
        ("Cisco Umbrella Secondary SubCA ams-SG", "Cisco", "Cisco Umbrella"),
        ("mitmproxy", "mitmproxy", "mitmproxy"),
        ("Contoso Corp Issuing CA", "Contoso Corp", None),
    ],
)
def test_interception_direct(tenant: Tenant, cn: str, o: str, vendor: str | None) -> None:
    tenant.emu.set_tls_scenario("intercepted", issuer_cn=cn, issuer_o=o)
    report = tenant.run()
    assert_failure(report, "ENTRA003", "tls", ["tls_interception"])
    cause = report.check("tls").to_json()["causes"][0]
    assert cause["vendor"] == vendor and cn in cause["issuer"]
    assert statuses(report)["token"] == "skip"
    fix = "\n".join(report.check("tls").fix)
    assert "cat /etc/entragate/proxy-root.pem" in fix and "ca_bundle =" in fix


def test_interception_through_intercepting_proxy(tenant: Tenant) -> None:
    emu = tenant.emu
    mapping = {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}
    with ConnectProxy("intercept", connect_to=mapping, upstream_ca=emu.ca_bundle_path) as proxy:
        report = tenant.run(tenant.config(proxy=proxy.url, connect_to=[]))
    assert_failure(report, "ENTRA003", "tls", ["tls_interception"])
    cause = report.check("tls").causes[0]
    assert cause.vendor == "Netskope"
    assert "proxy" in report.check("proxy").summary
    assert any("NO_PROXY" in line for line in report.check("tls").fix)


def test_tunnel_proxy_is_healthy(tenant: Tenant) -> None:
    emu = tenant.emu
    mapping = {(h, 443): ("127.0.0.1", emu.port) for h in emu.hosts}
    with ConnectProxy("tunnel", connect_to=mapping) as proxy:
        report = tenant.run(tenant.config(proxy=proxy.url, connect_to=[]))
    assert report.ok, json.dumps(report.to_json(), indent=1)
    assert "tunnels established" in report.check("proxy").summary


def test_clock_skew_breaks_tls(tenant: Tenant) -> None:
    tenant.emu.date_offset_seconds = 3 * 3600
    tenant.emu.set_tls_scenario("not_yet_valid")
    report = tenant.run()
    assert_failure(report, "ENTRA003", "tls", ["clock_skew"])
    skew = report.check("tls").causes[0].skew_seconds
    assert skew is not None and abs(skew - 3 * 3600) < 30
    assert report.check("clock").status == "fail"
    assert any("timedatectl set-ntp true" in line for line in report.check("tls").fix)


def test_clock_check_fails_even_when_tls_succeeds(tenant: Tenant) -> None:
    tenant.emu.date_offset_seconds = -300
    report = tenant.run()
    assert statuses(report)["tls"] == "pass"
    assert_failure(report, "ENTRA001", "clock", ["clock_skew"])
    skew = report.check("clock").causes[0].skew_seconds
    assert skew is not None and abs(skew + 300) < 5


@pytest.mark.parametrize(
    ("scenario", "cause"),
    [
        ("expired", "cert_expired"),
        ("not_yet_valid", "cert_not_yet_valid"),
        ("wrong_host", "hostname_mismatch"),
        ("self_signed", "self_signed"),
        ("missing_intermediate", "incomplete_chain"),
    ],
)
def test_tls_scenarios(tenant: Tenant, scenario: str, cause: str) -> None:
    tenant.emu.set_tls_scenario(scenario)
    report = tenant.run()
    assert_failure(report, "ENTRA003", "tls", [cause])
    assert "tls_interception" not in cause_ids(report, "tls")


def test_noncompliant_ca(tenant: Tenant) -> None:
    emu = tenant.emu
    emu.set_tls_scenario("noncompliant_ca", issuer_cn="Palo Alto Networks Forward Trust CA", issuer_o="Palo Alto Networks")
    assert emu.scenario_ca_path is not None
    bundle = tenant.tmp / "with-proxy-ca.pem"
    bundle.write_bytes(emu.ca_bundle_path.read_bytes() + emu.scenario_ca_path.read_bytes())
    report = tenant.run(tenant.config(ca_bundle=str(bundle)))
    assert_failure(report, "ENTRA003", "tls", ["noncompliant_ca"])
    cause = report.check("tls").causes[0]
    assert cause.vendor == "Palo Alto Networks" and "Forward Trust" in (cause.issuer or "")


def test_ca_bundle_missing(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(ca_bundle=str(tenant.tmp / "absent.pem")))
    assert_failure(report, "ENTRA003", "tls", ["ca_bundle_missing"])
    assert report.check("truststore").status == "fail"


def test_ca_bundle_missing_from_environment(tenant: Tenant) -> None:
    env = clean_env(REQUESTS_CA_BUNDLE=str(tenant.tmp / "gone.pem"))
    report = tenant.run(tenant.config(ca_bundle=None, env=env), env=env)
    assert_failure(report, "ENTRA003", "tls", ["ca_bundle_missing"])
    assert report.check("truststore").summary.startswith("REQUESTS_CA_BUNDLE")
    assert any("unset REQUESTS_CA_BUNDLE" in line for line in report.check("tls").fix)


def test_ca_bundle_corrupt(tenant: Tenant) -> None:
    bad = tenant.tmp / "corrupt.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nthis is not base64\n-----END CERTIFICATE-----\n")
    report = tenant.run(tenant.config(ca_bundle=str(bad)))
    assert_failure(report, "ENTRA003", "tls", ["ca_bundle_corrupt"])


def test_ca_bundle_lacks_root(tenant: Tenant) -> None:
    other = Emulator(state_dir=tenant.tmp / "other")  # a different root, never started
    report = tenant.run(tenant.config(ca_bundle=str(other.ca_bundle_path)))
    assert_failure(report, "ENTRA003", "tls", ["ca_bundle_lacks_root"])


# ----------------------------------------------------------------------------- other codes


def test_entra000_connection_refused(tenant: Tenant) -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mapping = [f"{h}:443:127.0.0.1:{port}" for h in (LOGIN, GRAPH)]
    report = tenant.run(tenant.config(connect_to=mapping))
    assert_failure(report, "ENTRA000", "tcp", ["connection_refused"])
    assert statuses(report)["token"] == "skip"


def test_entra000_dns_failure(tenant: Tenant) -> None:
    mapping = [f"{h}:443:no-such-host.invalid:443" for h in (LOGIN, GRAPH)]
    report = tenant.run(tenant.config(connect_to=mapping))
    assert_failure(report, "ENTRA000", "dns", ["dns_failure"])


def test_entra000_proxy_unreachable(tenant: Tenant) -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    report = tenant.run(tenant.config(proxy=f"http://127.0.0.1:{port}", connect_to=[]))
    assert_failure(report, "ENTRA000", "proxy", ["proxy_unreachable"])


def test_entra001_secret_id_instead_of_value(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(secret=tenant.secret_id))
    assert_failure(report, "ENTRA001", "config", ["secret_id_not_value"])
    assert cause_ids(report, "token") == ["aadsts_7000215"]
    assert any("Value" in line for line in report.check("config").fix)


def test_entra001_wrong_secret(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(secret="not-the-right-secret-value"))
    assert_failure(report, "ENTRA001", "token", ["aadsts_7000215"])
    assert any("Secret ID" in line for line in report.check("token").fix)


def test_entra001_stray_whitespace(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(secret=tenant.secret + " \n"))
    assert_failure(report, "ENTRA001", "config", ["stray_whitespace"])


def test_entra001_expired_secret(tenant: Tenant) -> None:
    tenant.emu.set_secret_expired(tenant.tenant_id, tenant.client_id)
    report = tenant.run()
    assert_failure(report, "ENTRA001", "token", ["aadsts_7000222"])


def test_entra001_blocked_by_a_workload_identity_policy(tenant: Tenant) -> None:
    tenant.emu.block_workload_identity(tenant.tenant_id, tenant.client_id)
    report = tenant.run()
    assert_failure(report, "ENTRA001", "token", ["workload_identity_blocked"])
    token = report.check("token")
    assert token.causes[0].details["aadsts"] == 53003
    assert any("Service principal sign-ins" in line for line in token.fix)
    assert any("exclude this app" in line for line in token.fix)


def test_entra001_wrong_tenant(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(tenant_id="00000000-0000-4000-8000-000000000001"))
    assert_failure(report, "ENTRA001", "token", ["aadsts_90002"])
    assert any("cloud" in line for line in report.check("token").fix)


def test_entra001_app_not_in_tenant(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(client_id="11111111-2222-4333-8444-555555555555"))
    assert_failure(report, "ENTRA001", "token", ["aadsts_700016"])


def test_config_file_with_a_secret_readable_by_others_is_a_warning(tenant: Tenant) -> None:
    config = tenant.config()
    assert config.source is not None
    Path(config.source).chmod(0o644)
    report = tenant.run(config)
    assert report.check("config").status == "warn"
    assert cause_ids(report, "config") == ["config_readable_by_others"]
    cause = report.check("config").causes[0].summary
    assert "client_secret" in cause and "0644" in cause and f"chmod 600 {config.source}" in cause


def test_a_store_others_can_read_is_a_warning(tenant: Tenant) -> None:
    state = tenant.tmp / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "grants.db").write_text("")
    (state / "grants.db").chmod(0o644)
    report = tenant.run(tenant.config(extra=f'[agent]\nstore = "sqlite:///{state}/grants.db"'))
    assert report.check("config").status == "warn"
    assert cause_ids(report, "config") == ["store_not_private", "store_not_private"]
    text = " ".join(c.summary for c in report.check("config").causes)
    assert f"chmod 700 {state}" in text and f"chmod 600 {state / 'grants.db'}" in text


def test_entra001_missing_values() -> None:
    config = Config(tenant_id="", client_id="", timeout=1.0)
    report = run_doctor(config, clean_env(), OS_RELEASE)
    assert report.check("config").status == "fail" and report.code == "ENTRA001"
    assert cause_ids(report, "config").count("missing_value") == 3
    assert report.check("token").status == "skip"


def test_entra002_read_only_permission(tenant: Tenant) -> None:
    tenant.emu.set_roles(tenant.tenant_id, tenant.client_id, ["Policy.Read.All"])
    report = tenant.run()
    assert_failure(report, "ENTRA002", "permissions", ["missing_permission"])
    assert "Policy.ReadWrite.ConditionalAccess" in report.check("permissions").summary
    assert "Policy.Read.All" not in report.check("permissions").summary.split("missing")[1].split("(")[0]


def test_entra002_no_permission(tenant: Tenant) -> None:
    tenant.emu.set_roles(tenant.tenant_id, tenant.client_id, [])
    report = tenant.run()
    assert_failure(report, "ENTRA002", "permissions", ["missing_permission"])
    summary = report.check("permissions").summary
    assert "Policy.Read.All" in summary and "Policy.ReadWrite.ConditionalAccess" in summary


def test_entra004_hanging_graph_is_bounded(tenant: Tenant) -> None:
    tenant.emu.set_fault(EmulatorFault("hang", host="graph"))
    timeout = 1.5
    started = time.monotonic()
    report = tenant.run(tenant.config(timeout=timeout))
    took = time.monotonic() - started
    assert_failure(report, "ENTRA004", "locations", ["graph_timeout"])
    assert took < timeout + 2.0, took


def test_entra004_hanging_login_is_bounded(tenant: Tenant) -> None:
    tenant.emu.set_fault(EmulatorFault("hang", host="login"))
    timeout = 1.5
    started = time.monotonic()
    report = tenant.run(tenant.config(timeout=timeout))
    took = time.monotonic() - started
    assert_failure(report, "ENTRA004", "token", ["token_timeout"])
    assert took < timeout + 2.0, took


def test_entra005_throttled(tenant: Tenant) -> None:
    tenant.emu.set_fault(EmulatorFault("throttle", host="graph"))
    report = tenant.run()
    assert_failure(report, "ENTRA005", "throttling", ["throttled"])
    assert report.check("locations").status == "skip"


def test_entra006_location_missing(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(acl={"location": "no such location", "create": False}))
    assert_failure(report, "ENTRA006", "locations", ["location_missing"])


def test_entra006_location_id_that_does_not_exist(tenant: Tenant) -> None:
    missing = "0b7a6f10-9f6e-4a55-8d1e-3c0c61d2a9f4"
    for create in (False, True):  # an id is never "will be created"
        report = tenant.run(tenant.config(acl={"location": missing, "create": create}))
        assert_failure(report, "ENTRA006", "locations", ["location_missing"])
        assert missing in report.check("locations").summary
        assert any("never created" in line for line in report.check("locations").fix)


def test_location_names_match_case_insensitively_and_typos_get_a_suggestion(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(acl={"location": LOCATION.upper()}))
    assert report.check("locations").status == "pass", report.check("locations").summary
    report = tenant.run(tenant.config(acl={"location": LOCATION + "x"}))
    assert_failure(report, "ENTRA006", "locations", ["location_missing"])
    cause = report.check("locations").causes[0]
    assert f"did you mean {LOCATION!r}" in cause.summary
    assert report.check("locations").fix[0] == f"set acl.staff.location to {LOCATION!r}"


def test_entra006_location_ambiguous(tenant: Tenant) -> None:
    tenant.emu.create_location(tenant.tenant_id, LOCATION, ["81.2.69.143/32"])
    report = tenant.run()
    assert_failure(report, "ENTRA006", "locations", ["location_ambiguous"])
    ids = [loc["id"] for loc in tenant.emu.locations(tenant.tenant_id)]
    assert len(ids) == 2 and all(i in report.check("locations").summary for i in ids)


def test_entra006_location_not_ip(tenant: Tenant) -> None:
    tenant.emu.create_country_location(tenant.tenant_id, "countries", ["NL"])
    report = tenant.run(tenant.config(acl={"location": "countries"}))
    assert_failure(report, "ENTRA006", "locations", ["location_not_ip"])


def test_entra007_invalid_static_range(tenant: Tenant) -> None:
    report = tenant.run(tenant.config(acl={"location": LOCATION, "static": ["16.0.0.0/4"]}))
    assert_failure(report, "ENTRA007", "locations", ["invalid_static_range"])


def test_entra007_location_limit(tenant: Tenant) -> None:
    for i in range(194):
        tenant.emu.create_location(tenant.tenant_id, f"filler {i}", [f"81.2.{i // 250}.{i % 250}/32"])
    report = tenant.run(tenant.config(acl={"location": "new one", "create": True}))
    assert_failure(report, "ENTRA007", "locations", ["location_limit"])


def test_entra008_graph_server_error(tenant: Tenant) -> None:
    tenant.emu.set_fault(EmulatorFault("status", host="graph", status=503))
    report = tenant.run()
    assert_failure(report, "ENTRA008", "locations", ["service_error"])


def test_entra008_token_server_error(tenant: Tenant) -> None:
    tenant.emu.set_fault(EmulatorFault("status", host="login", status=503, path="token"))
    report = tenant.run()
    assert_failure(report, "ENTRA008", "token", ["service_error"])


@pytest.mark.parametrize(("mode", "status"), [("refuse407", 407), ("refuse403", 403)])
def test_entra009_proxy_refused(tenant: Tenant, mode: str, status: int) -> None:
    with ConnectProxy(mode) as proxy:
        report = tenant.run(tenant.config(proxy=proxy.url, connect_to=[]))
    assert_failure(report, "ENTRA009", "proxy", ["proxy_refused"])
    assert report.check("proxy").causes[0].details["proxy_status"] == status


# ----------------------------------------------------------------------------- command


def test_command_json_and_exit_codes(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if "proxy" in key.lower() or key.startswith("ENTRAGATE_"):
            monkeypatch.delenv(key)
    config = tenant.config()
    assert config.source is not None
    runner = CliRunner()
    ok = runner.invoke(doctor_command, ["--config", config.source, "--json", "--os-release", OS_RELEASE])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    tenant.emu.set_tls_scenario("intercepted")
    bad = runner.invoke(doctor_command, ["--config", config.source, "--os-release", OS_RELEASE])
    assert bad.exit_code == 1
    assert "tls_interception" in bad.output and "docs/errors/ENTRA003.md" in bad.output
    assert tenant.secret not in ok.output + bad.output
    broken = tenant.tmp / "broken.toml"
    broken.write_text("this is = = not toml")
    res = runner.invoke(doctor_command, ["--config", str(broken), "--json"])
    assert res.exit_code == 2 and json.loads(res.output)["checks"][0]["status"] == "fail"


def test_command_help_has_example() -> None:
    res = CliRunner().invoke(doctor_command, ["--help"])
    assert res.exit_code == 0 and "entragate doctor --json" in res.output


@pytest.mark.parametrize(
    ("release", "needles"),
    [
        ("debian-12", ["/usr/local/share/ca-certificates/", "update-ca-certificates"]),
        ("rocky-9", ["/etc/pki/ca-trust/source/anchors/", "update-ca-trust extract"]),
        ("alpine-3.20", ["apk add ca-certificates", "update-ca-certificates"]),
    ],
)
def test_interception_with_system_store_prints_os_fix(tenant: Tenant, release: str, needles: list[str]) -> None:
    """No ca_bundle and no CA variables: the store in effect is the system's."""
    tenant.emu.set_tls_scenario("intercepted", issuer_cn="Zscaler Root CA", issuer_o="Zscaler Inc.")
    env = {k: v for k, v in clean_env().items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    config = tenant.config(ca_bundle=None, env=env)
    report = run_doctor(config, env, str(Path(__file__).parent / "data" / "os-release" / release))
    assert_failure(report, "ENTRA003", "tls", ["tls_interception"])
    fix = "\n".join(report.check("tls").fix)
    for needle in needles:
        assert needle in fix, fix
