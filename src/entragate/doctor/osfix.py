"""Operating-system specific fixes, found from ``/etc/os-release``.

Every builder returns plain lines (commands or configuration lines) that the
doctor prints under a failed check.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

Family = str  # "debian" | "rhel" | "alpine" | "suse" | "unknown"

DEBIAN_IDS = frozenset({"debian", "ubuntu", "linuxmint", "raspbian", "pop", "kali", "elementary", "devuan"})
RHEL_IDS = frozenset(
    {"rhel", "fedora", "centos", "rocky", "almalinux", "ol", "amzn", "scientific", "eurolinux", "circle"}
)
SUSE_IDS = frozenset({"sles", "sled", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "opensuse-microos", "sle-micro"})


@dataclass(frozen=True)
class OsInfo:
    id: str
    id_like: tuple[str, ...] = ()
    pretty_name: str = ""
    version_id: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "id_like": list(self.id_like),
            "pretty_name": self.pretty_name,
            "version_id": self.version_id,
            "family": family(self),
        }


UNKNOWN_OS = OsInfo("unknown", (), "unknown operating system", "")


def parse_os_release(text: str) -> OsInfo:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, posix=True)
        except ValueError:
            parts = [value.strip().strip("\"'")]
        values[key.strip()] = " ".join(parts)
    os_id = values.get("ID", "").strip().lower() or "unknown"
    id_like = tuple(values.get("ID_LIKE", "").lower().split())
    pretty = values.get("PRETTY_NAME") or values.get("NAME") or os_id
    return OsInfo(os_id, id_like, pretty, values.get("VERSION_ID", ""))


def read_os_release(path: str = "/etc/os-release") -> OsInfo:
    """Parse os-release; falls back to /usr/lib/os-release, then to an unknown OS."""
    candidates = [path]
    if path == "/etc/os-release":
        candidates.append("/usr/lib/os-release")
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                return parse_os_release(fh.read())
        except OSError:
            continue
    return UNKNOWN_OS


def family(info: OsInfo) -> Family:
    ids = (info.id, *info.id_like)
    if info.id == "alpine" or "alpine" in info.id_like:
        return "alpine"
    if info.id in SUSE_IDS or any(i in ("suse", "opensuse", "sles") for i in ids):
        return "suse"
    if info.id in RHEL_IDS or any(i in ("rhel", "fedora", "centos") for i in info.id_like):
        return "rhel"
    if info.id in DEBIAN_IDS or any(i in ("debian", "ubuntu") for i in info.id_like):
        return "debian"
    return "unknown"


def _crt_name(cert_filename: str) -> str:
    base = os.path.basename(cert_filename) or "proxy-root"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem) or "proxy-root"
    return f"{safe}.crt"


def install_root_fix(info: OsInfo, cert_filename: str) -> list[str]:
    """Install a (proxy's) root certificate, a PEM file, into the system trust store."""
    name = _crt_name(cert_filename)
    src = shlex.quote(cert_filename)
    fam = family(info)
    if fam == "debian":
        return [
            f"sudo cp {src} /usr/local/share/ca-certificates/{name}",
            "sudo update-ca-certificates",
        ]
    if fam == "rhel":
        return [
            f"sudo cp {src} /etc/pki/ca-trust/source/anchors/{name}",
            "sudo update-ca-trust extract",
        ]
    if fam == "alpine":
        return [
            "apk add ca-certificates",
            f"cp {src} /usr/local/share/ca-certificates/{name}",
            "update-ca-certificates",
        ]
    if fam == "suse":
        return [
            f"sudo cp {src} /etc/pki/trust/anchors/{name}",
            "sudo update-ca-certificates",
        ]
    return [
        f"Add {cert_filename} to this system's CA trust store (see your distribution's documentation),",
        "or point entragate at a bundle that contains it with ca_bundle (below).",
    ]


def refresh_bundle_fix(info: OsInfo) -> list[str]:
    """Reinstall and regenerate the system CA bundle."""
    fam = family(info)
    if fam == "debian":
        return ["sudo apt-get install --reinstall ca-certificates", "sudo update-ca-certificates --fresh"]
    if fam == "rhel":
        return ["sudo dnf reinstall ca-certificates", "sudo update-ca-trust extract"]
    if fam == "alpine":
        return ["apk fix ca-certificates", "update-ca-certificates"]
    if fam == "suse":
        return ["sudo zypper in -f ca-certificates", "sudo update-ca-certificates"]
    return ["Reinstall your distribution's ca-certificates package and regenerate the CA bundle."]


def ntp_fix(info: OsInfo) -> list[str]:
    """Turn on time synchronisation."""
    fam = family(info)
    if fam == "debian":
        return [
            "sudo timedatectl set-ntp true",
            "or: sudo apt-get install chrony && sudo systemctl enable --now chrony && sudo chronyc makestep",
        ]
    if fam == "rhel":
        return [
            "sudo timedatectl set-ntp true",
            "or: sudo dnf install chrony && sudo systemctl enable --now chronyd && sudo chronyc makestep",
        ]
    if fam == "alpine":
        return [
            "apk add chrony",
            "rc-update add chronyd default && rc-service chronyd start",
            "chronyc makestep",
        ]
    if fam == "suse":
        return [
            "sudo timedatectl set-ntp true",
            "or: sudo zypper in chrony && sudo systemctl enable --now chronyd && sudo chronyc makestep",
        ]
    return ["sudo timedatectl set-ntp true", "(or enable your system's NTP client, e.g. chrony)"]


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def ca_bundle_fix(path: str) -> list[str]:
    """Point entragate (only) at a PEM bundle."""
    return [
        f"in the configuration file: ca_bundle = {_toml_string(path)}",
        f"or in the environment: ENTRAGATE_CA_BUNDLE={shlex.quote(path)}",
    ]


def proxy_bypass_fix(hosts: Iterable[str]) -> list[str]:
    """Bypass the proxy (or its TLS inspection) for Microsoft's hosts."""
    names = ",".join(dict.fromkeys(h for h in hosts if h))
    return [
        f"export NO_PROXY={names}   (and no_proxy; entragate then connects directly)",
        f"or ask the proxy's administrators to exempt {names} from TLS inspection",
    ]
