"""os-release parsing and the per-distribution fix builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from entragate.doctor.osfix import (
    ca_bundle_fix,
    family,
    install_root_fix,
    ntp_fix,
    proxy_bypass_fix,
    read_os_release,
    refresh_bundle_fix,
)

DATA = Path(__file__).parent / "data" / "os-release"

CASES = {
    "debian-12": ("debian", "debian", "Debian GNU/Linux 12 (bookworm)"),
    "ubuntu-24.04": ("ubuntu", "debian", "Ubuntu 24.04.1 LTS"),
    "rhel-9": ("rhel", "rhel", "Red Hat Enterprise Linux 9.4 (Plow)"),
    "fedora-41": ("fedora", "rhel", "Fedora Linux 41 (Server Edition)"),
    "rocky-9": ("rocky", "rhel", "Rocky Linux 9.4 (Blue Onyx)"),
    "alma-9": ("almalinux", "rhel", "AlmaLinux 9.4 (Seafoam Ocelot)"),
    "alpine-3.20": ("alpine", "alpine", "Alpine Linux v3.20"),
    "opensuse-leap-15.6": ("opensuse-leap", "suse", "openSUSE Leap 15.6"),
    "sles-15": ("sles", "suse", "SUSE Linux Enterprise Server 15 SP6"),
    "unknown": ("plan9", "unknown", "Plan 9 Fourth Edition"),
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_read_and_family(sample: str) -> None:
    os_id, fam, pretty = CASES[sample]
    info = read_os_release(str(DATA / sample))
    assert (info.id, family(info), info.pretty_name) == (os_id, fam, pretty)


def test_missing_file_is_unknown(tmp_path: Path) -> None:
    info = read_os_release(str(tmp_path / "nope"))
    assert family(info) == "unknown"


EXPECT_INSTALL = {
    "debian": ["/usr/local/share/ca-certificates/zscaler-root.crt", "update-ca-certificates"],
    "rhel": ["/etc/pki/ca-trust/source/anchors/zscaler-root.crt", "update-ca-trust extract"],
    "alpine": ["apk add ca-certificates", "/usr/local/share/ca-certificates/zscaler-root.crt", "update-ca-certificates"],
    "suse": ["/etc/pki/trust/anchors/zscaler-root.crt", "update-ca-certificates"],
    "unknown": ["ca_bundle"],
}
EXPECT_REFRESH = {
    "debian": "apt-get install --reinstall ca-certificates",
    "rhel": "dnf reinstall ca-certificates",
    "alpine": "apk fix ca-certificates",
    "suse": "zypper in -f ca-certificates",
    "unknown": "ca-certificates",
}
EXPECT_NTP = {
    "debian": ["timedatectl set-ntp true", "chrony"],
    "rhel": ["timedatectl set-ntp true", "chronyd"],
    "alpine": ["apk add chrony", "chronyd"],
    "suse": ["timedatectl set-ntp true", "zypper in chrony"],
    "unknown": ["timedatectl set-ntp true"],
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_fixes_per_distribution(sample: str) -> None:
    info = read_os_release(str(DATA / sample))
    fam = CASES[sample][1]
    install = "\n".join(install_root_fix(info, "/tmp/zscaler-root.pem"))
    for needle in EXPECT_INSTALL[fam]:
        assert needle in install, (sample, install)
    if fam == "alpine":
        assert install.index("apk add ca-certificates") < install.index("update-ca-certificates")
    assert EXPECT_REFRESH[fam] in "\n".join(refresh_bundle_fix(info))
    ntp = "\n".join(ntp_fix(info))
    for needle in EXPECT_NTP[fam]:
        assert needle in ntp


def test_ca_bundle_and_proxy_fix() -> None:
    lines = ca_bundle_fix('/etc/ssl/corp "root".pem')
    assert lines[0] == 'in the configuration file: ca_bundle = "/etc/ssl/corp \\"root\\".pem"'
    assert "ENTRAGATE_CA_BUNDLE=" in lines[1]
    bypass = proxy_bypass_fix(["login.microsoftonline.com", "graph.microsoft.com", "login.microsoftonline.com"])
    assert bypass[0].startswith("export NO_PROXY=login.microsoftonline.com,graph.microsoft.com ")
