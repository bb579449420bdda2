"""Microsoft's 2025-2026 roots and ``entragate doctor --chain``, with the real public
certificates of ``tests/data/certs`` (their sources are in its README).

The captured microsoft.com chain is judged at its capture time (its leaf has since
expired); the Zscaler-signed chain is generated here, never stored.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from entragate.cli import main
from entragate.doctor.offline import (
    ChainFileError,
    ChainReport,
    analyse_chain,
    fingerprint,
    read_chain,
)
from entragate.doctor.osfix import read_os_release
from entragate.doctor.truststore import inspect_trust
from entragate.emulator.pki import CA

CERTS = Path(__file__).parent / "data" / "certs"
OS_RELEASE = Path(__file__).parent / "data" / "os-release"
CAPTURED = CERTS / "microsoft-com-showcerts.txt"
CAPTURED_AT = dt.datetime(2026, 5, 1, 21, 15, tzinfo=dt.UTC)
RSA_G2 = "Microsoft TLS RSA Root G2"
HOST = "login.microsoftonline.com"


def captured_chain() -> list[x509.Certificate]:
    """leaf microsoft.com, Microsoft TLS G2 RSA CA OCSP 02, the cross certificate, DigiCert G2."""
    return read_chain(CAPTURED.read_bytes(), str(CAPTURED))


def bundle(tmp_path: Path, *files: str) -> Path:
    path = tmp_path / "store.pem"
    path.write_bytes(b"".join((CERTS / f).read_bytes() for f in files))
    return path


def analyse(tmp_path: Path, certs: list[x509.Certificate], *store: str, origin: str = "ca_bundle",
            os_name: str = "debian-12", host: str | None = None) -> ChainReport:
    trust = inspect_trust(str(bundle(tmp_path, *store)), None, origin)
    return analyse_chain(certs, trust=trust, env={}, os_info=read_os_release(str(OS_RELEASE / os_name)),
                         host=host, now=CAPTURED_AT, source="chain.pem")


# ----------------------------------------------------------------------------- reading


def test_read_chain_any_order_with_text_between_blocks() -> None:
    certs = captured_chain()
    assert [c.subject.rfc4514_string().split(",")[0] for c in certs] == [
        "CN=microsoft.com", "CN=Microsoft TLS G2 RSA CA OCSP 02", f"CN={RSA_G2}", "CN=DigiCert Global Root G2",
    ]
    blocks = [c.public_bytes(serialization.Encoding.PEM) for c in certs]
    shuffled = blocks[:]
    random.Random(7).shuffle(shuffled)
    text = b"exported by a browser\n" + b"\nsome words between\n".join(shuffled + [blocks[1]]) + b"trailer\n"
    assert read_chain(text, "x") == certs  # leaf first, issuers after, duplicates dropped


@pytest.mark.parametrize(
    ("text", "why"),
    [(b"no certificate here\n", "holds no PEM certificate"),
     (b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "malformed")],
)
def test_read_chain_refuses_files_without_a_certificate(text: bytes, why: str) -> None:
    with pytest.raises(ChainFileError, match=why):
        read_chain(text, "chain.pem")


# ----------------------------------------------------------------------------- the G2 hierarchy


def test_g2_chain_without_cross_is_a_store_lacking_the_g2_root(tmp_path: Path) -> None:
    """leaf -> OCSP 02 -> (no cross certificate) against a store with DigiCert G2 only."""
    report = analyse(tmp_path, captured_chain()[:2], "digicert-global-root-g2.pem")
    tls = report.check("tls")
    assert tls.status == "fail" and tls.code == "ENTRA003"
    assert [c.id for c in tls.causes] == ["ca_bundle_lacks_root"]
    cause = tls.causes[0]
    assert cause.issuer == RSA_G2 and RSA_G2 in cause.summary and "cross certificate" in cause.summary
    assert cause.details["store_outdated"] is True
    assert any(RSA_G2.lower().replace(" ", "-") in line for line in tls.fix)
    assert any("4b03c9966c863b2c008a95a5ed9254070448c7b219d283102f6a6c5b6e8e2acd" in line for line in tls.fix)
    assert report.check("truststore").status == "fail"


@pytest.mark.parametrize(("os_name", "command"), [("debian-12", "update-ca-certificates"),
                                                  ("rhel-9", "update-ca-trust"),
                                                  ("alpine-3.20", "update-ca-certificates")])
def test_g2_root_missing_from_system_store_gives_this_os_fix(tmp_path: Path, os_name: str, command: str) -> None:
    report = analyse(tmp_path, captured_chain()[:2], "digicert-global-root-g2.pem",
                     "microsoft-rsa-root-ca-2017.pem", origin="system", os_name=os_name)
    tls = report.check("tls")
    assert tls.causes[0].id == "ca_bundle_lacks_root" and tls.causes[0].issuer == RSA_G2
    assert "tls_interception" not in [c.id for c in tls.causes]
    assert any(command in line for line in tls.fix), tls.fix


def test_g2_chain_with_cross_and_digicert_g2_passes(tmp_path: Path) -> None:
    report = analyse(tmp_path, captured_chain(), "digicert-global-root-g2.pem", host="microsoft.com")
    assert report.check("tls").status == "pass", report.check("tls").summary
    assert report.ok
    store = report.check("truststore")  # verifies today, but would not without the cross certificate
    assert store.status == "warn" and store.causes[0].id == "ca_bundle_outdated"
    assert store.causes[0].details["missing_roots"] == [RSA_G2]


def test_store_holding_the_g2_root_verifies_without_the_cross(tmp_path: Path) -> None:
    report = analyse(tmp_path, captured_chain()[:2], "microsoft-tls-rsa-root-g2.pem")
    assert report.check("tls").status == "pass"


def test_g2_chain_for_another_host_is_a_name_mismatch(tmp_path: Path) -> None:
    report = analyse(tmp_path, captured_chain(), "digicert-global-root-g2.pem", host=HOST)
    assert [c.id for c in report.check("tls").causes] == ["hostname_mismatch"]


def test_store_with_only_g1_is_outdated(tmp_path: Path) -> None:
    trust = inspect_trust(str(bundle(tmp_path, "digicert-global-root-ca.pem", "baltimore-cybertrust-root.pem")),
                          None, "REQUESTS_CA_BUNDLE")
    assert trust.legacy_roots == ["DigiCert Global Root CA", "Baltimore CyberTrust Root"]
    assert "legacy DigiCert Global Root CA (G1) but not DigiCert Global Root G2" in (trust.outdated_reason() or "")
    report = analyse(tmp_path, captured_chain(), "digicert-global-root-ca.pem")
    tls, store = report.check("tls"), report.check("truststore")
    assert tls.causes[0].id == "ca_bundle_lacks_root" and "DigiCert Global Root G2" in tls.causes[0].summary
    assert store.status == "fail" and "ca_bundle_outdated" in [c.id for c in store.causes]
    assert "DigiCert Global Root G2" in store.summary


def test_store_with_current_roots_is_not_outdated(tmp_path: Path) -> None:
    trust = inspect_trust(str(bundle(tmp_path, "digicert-global-root-g2.pem", "microsoft-tls-rsa-root-g2.pem")),
                          None, "ca_bundle")
    assert RSA_G2 not in trust.missing_roots
    assert trust.outdated_reason() is None
    emulator_root = CA.new("Emulated Publisher Root CA", "Emulated Publisher")
    own = tmp_path / "own.pem"
    own.write_bytes(emulator_root.cert_pem)
    private = inspect_trust(str(own), None, "ca_bundle", expected_roots=[emulator_root.cert])
    assert private.holds_expected and private.outdated_reason() is None  # not Microsoft's endpoints


# ----------------------------------------------------------------------------- the command


def run_doctor_chain(tmp_path: Path, chain: Path, *args: str, store: Path | None = None) -> Result:
    config = tmp_path / "entragate.toml"
    config.write_text(f'ca_bundle = "{store or bundle(tmp_path, "digicert-global-root-g2.pem")}"\n')
    return CliRunner().invoke(
        main, ["doctor", "--config", str(config), "--chain", str(chain),
               "--os-release", str(OS_RELEASE / "debian-12"), *args],
        env={"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "", "HTTPS_PROXY": ""},
    )


def test_cli_chain_json_has_the_doctor_shape_and_fingerprints(tmp_path: Path) -> None:
    result = run_doctor_chain(tmp_path, CAPTURED, "--json", "--at", "2026-05-01T21:15:00Z", "--host", "microsoft.com")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["code"] is None
    assert [c["id"] for c in data["checks"]] == ["tls", "truststore"]
    for check in data["checks"]:
        assert {"id", "status", "code", "summary", "causes", "fix"} <= set(check)
    assert [c["sha256"] for c in data["chain"]] == [fingerprint(c) for c in captured_chain()]
    assert data["chain"][2]["publisher_root"] == RSA_G2


def test_cli_chain_without_cross(tmp_path: Path) -> None:
    partial = tmp_path / "partial.pem"
    partial.write_text("".join(CAPTURED.read_text().partition(" 2 s:")[0]))
    result = run_doctor_chain(tmp_path, partial, "--json", "--at", "2026-05-01T21:15:00Z")
    assert result.exit_code == 1, result.output
    tls = json.loads(result.stdout)["checks"][0]
    assert tls["code"] == "ENTRA003" and tls["causes"][0]["id"] == "ca_bundle_lacks_root"
    assert tls["causes"][0]["issuer"] == RSA_G2


def test_cli_zscaler_chain_is_interception_and_exports_its_root(tmp_path: Path) -> None:
    root = CA.new("Zscaler Root CA", "Zscaler Inc.")
    inter = root.intermediate("Zscaler Intermediate Root CA (zscalertwo.net)", "Zscaler Inc.")
    leaf = inter.issue(HOST)
    chain = tmp_path / "zscaler.txt"
    chain.write_bytes(b"depth=2 ...\n" + leaf.cert_pem + b"---\n" + root.cert_pem + b"\n 1 s:\n" + inter.cert_pem)
    out = tmp_path / "proxy-root.pem"
    result = run_doctor_chain(tmp_path, chain, "--json", "--host", HOST, "--export-root", str(out))
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    cause = data["checks"][0]["causes"][0]
    assert cause["id"] == "tls_interception" and cause["vendor"] == "Zscaler"
    assert "Zscaler Root CA" in cause["issuer"] and cause["sha256"] == fingerprint(root.cert)
    assert out.read_bytes() == root.cert_pem
    assert data["export_root"]["sha256"] == fingerprint(root.cert)
    assert fingerprint(root.cert) in result.stderr and "out of band" in result.stderr
    human = run_doctor_chain(tmp_path, chain, "--export-root", str(tmp_path / "again.pem"))
    assert human.exit_code == 1
    assert "tls_interception" in human.stdout and "Zscaler" in human.stdout
    assert fingerprint(root.cert) in human.stdout and "ca_bundle" in human.stdout


def test_cli_export_root_writes_nothing_when_not_intercepted(tmp_path: Path) -> None:
    out = tmp_path / "root.pem"
    result = run_doctor_chain(tmp_path, CAPTURED, "--export-root", str(out), "--at", "2026-05-01T21:15:00Z")
    assert result.exit_code == 0 and not out.exists()
    assert "nothing written" in result.output


def test_cli_chain_file_problems_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing\n")
    assert run_doctor_chain(tmp_path, empty).exit_code == 2
    assert run_doctor_chain(tmp_path, tmp_path / "absent.pem").exit_code == 2
    bad_time = run_doctor_chain(tmp_path, CAPTURED, "--at", "yesterday")
    assert bad_time.exit_code == 2 and "--at" in bad_time.output
    lone = CliRunner().invoke(main, ["doctor", "--host", HOST])
    assert lone.exit_code == 2 and "--chain" in lone.output
