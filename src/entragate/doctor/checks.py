"""The doctor's checks (SPEC section 6), each returning a :class:`CheckResult`.

Network work is done by *probes* (one per Microsoft host: proxy, DNS, TCP,
verified TLS with the agent's own SSL context, ``Date``), by the token request
and by one Graph read; the checks turn those observations into a status, an
error code, causes and fix lines.  Nothing here prints or logs a secret: the
client secret is only ever handed to the token endpoint (through msal, over
the agent's verified TLS) and the access token only to Graph.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from entragate.config import Config, looks_like_secret_id
from entragate.doctor import osfix
from entragate.doctor.osfix import OsInfo
from entragate.doctor.roots import load_pem_certificates
from entragate.doctor.tlsdiag import (
    Cause,
    diagnose,
    display_name,
    human_seconds,
    verify_code_name,
)
from entragate.doctor.tlsprobe import (
    Capture,
    _Deadline,
    _header,
    _read_head,
    _resolve,
    _status,
    capture,
    connect_via_proxy,
    open_tcp,
    parse_http_date,
    proxy_address,
)
from entragate.doctor.truststore import TrustStoreReport
from entragate.errors import Code, EntraError, classify_exception
from entragate.grants.validation import MIN_PREFIX_V4, MIN_PREFIX_V6
from entragate.logs import redact_text

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
CHECK_IDS = (
    "config",
    "proxy",
    "dns",
    "tcp",
    "tls",
    "clock",
    "truststore",
    "token",
    "permissions",
    "locations",
    "throttling",
)
READ_PERMISSION = "Policy.Read.All"
WRITE_PERMISSION = "Policy.ReadWrite.ConditionalAccess"
CLOCK_LIMIT_SECONDS = 60
CERT_WARN_DAYS = 30
BUNDLE_STALE_DAYS = 730
MAX_LOCATIONS_PER_TENANT = 195


@dataclass
class CheckResult:
    """One line of the report."""

    id: str
    status: str
    summary: str
    code: str | None = None
    causes: list[Cause] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "status": self.status,
            "code": self.code,
            "summary": self.summary,
            "causes": [c.to_json() for c in self.causes],
            "fix": list(self.fix),
        }


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def mask_url(url: str | None) -> str | None:
    """A proxy URL without its password (proxy credentials are secrets too)."""
    if not url:
        return url
    return redact_text(url if "://" in url else f"http://{url}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def decode_jwt_payload(token: str) -> dict[str, object]:
    """The claims of a JWT, *without* verifying it (only to read ``roles``)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        data = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (IndexError, ValueError, binascii.Error, UnicodeError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------
# probes
# ------------------------------------------------------------------------------------------


@dataclass
class HostProbe:
    """What happened on the way to one Microsoft host, with the agent's settings."""

    host: str
    port: int = 443
    target: tuple[str, int] = ("", 0)
    proxy: str | None = None
    dial: tuple[str, int] = ("", 0)
    stage: str = "dns"  # the stage that failed, or "done"
    addresses: list[str] = field(default_factory=list)
    error: BaseException | None = None
    entra: EntraError | None = None
    proxy_status: int | None = None
    proxy_error: str | None = None
    verified: bool = False
    verify_code: int | None = None
    tls_version: str | None = None
    server_date: datetime | None = None
    local_date: datetime | None = None
    http_status: int | None = None
    http_error: str | None = None
    capture: Capture | None = None
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def where(self) -> str:
        via = f" via proxy {mask_url(self.proxy)}" if self.proxy else ""
        dial = ""
        if not self.proxy and self.target != (self.host, self.port):
            dial = f" (connect_to {self.target[0]}:{self.target[1]})"
        return f"{self.host}:{self.port}{dial}{via}"


def probe_host(
    config: Config,
    env: Mapping[str, str],
    host: str,
    ssl_context: ssl.SSLContext,
    *,
    timeout: float,
) -> HostProbe:
    """Proxy, DNS, TCP, verified TLS (the agent's context) and ``Date`` for ``host``.

    When verification fails the presented chain is captured without trusting it.
    Everything is bounded by ``timeout``.
    """
    from entragate.transport import connect_target, proxy_for

    started = time.monotonic()
    deadline = _Deadline(timeout)
    port = 443
    probe = HostProbe(host=host, port=port)
    probe.target = connect_target(config, host, port)
    probe.proxy = proxy_for(config, f"https://{host}/", env)
    sock: socket.socket | None = None
    tls: ssl.SSLSocket | None = None
    try:
        if probe.proxy:
            try:
                phost, pport = proxy_address(probe.proxy)
            except OSError as exc:
                probe.stage = "proxy"
                probe.proxy_error = str(exc)
                probe.error = exc
                return probe
            probe.dial = connect_target(config, phost, pport)
        else:
            probe.dial = probe.target
        # DNS for what is actually dialled (the proxy resolves the target itself).
        probe.stage = "dns"
        if _is_ip(probe.dial[0]):
            probe.addresses = [probe.dial[0].strip("[]")]
        else:
            found = _resolve(probe.dial[0], probe.dial[1], deadline.left())
            probe.addresses = list(dict.fromkeys(addr for _, (addr, _p) in found))
        # TCP (and the CONNECT tunnel).
        if probe.proxy:
            probe.stage = "proxy"
            sock, probe.proxy_status, err = connect_via_proxy(
                probe.proxy, host, port, deadline, dial=probe.dial
            )
            if err is not None:
                probe.proxy_error = err
                return probe
        else:
            probe.stage = "tcp"
            sock = open_tcp(probe.dial[0], probe.dial[1], deadline)
        # Verified TLS with the agent's own context.
        probe.stage = "tls"
        sock.settimeout(deadline.left())
        try:
            tls = ssl_context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            sock = None
            probe.error = exc
            probe.verify_code = exc.verify_code
            left = max(0.5, deadline.end - time.monotonic())
            probe.capture = capture(
                host,
                port,
                connect_addr=probe.dial if (probe.proxy or probe.dial != (host, port)) else None,
                proxy_url=probe.proxy,
                timeout=left,
            )
            if probe.capture.server_date is not None:
                probe.server_date = probe.capture.server_date
                probe.local_date = datetime.now(UTC)
            return probe
        sock = None
        probe.verified = True
        probe.tls_version = tls.version()
        # The server's clock: HEAD / (no credentials), read the Date header.
        probe.stage = "http"
        try:
            tls.settimeout(deadline.left())
            tls.sendall(
                (
                    f"HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: entragate-doctor\r\n"
                    "Accept: */*\r\nConnection: close\r\n\r\n"
                ).encode("latin-1")
            )
            head = _read_head(tls, deadline)
            probe.local_date = datetime.now(UTC)
            probe.http_status = _status(head)
            probe.server_date = parse_http_date(_header(head, "Date"))
            if probe.http_status is None:
                probe.http_error = "no HTTP answer to HEAD /"
        except (TimeoutError, OSError) as exc:
            probe.http_error = f"no HTTP answer to HEAD / ({type(exc).__name__})"
        probe.stage = "done"
    except TimeoutError as exc:
        probe.timed_out = True
        probe.error = exc
    except OSError as exc:
        probe.error = exc
    finally:
        for s in (tls, sock):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        probe.elapsed = time.monotonic() - started
        if probe.error is not None and probe.entra is None:
            probe.entra = classify_exception(
                probe.error, host=host, operation=f"doctor {probe.stage} probe"
            )
    return probe


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------


def _load_credential_certificate(path: Path, password: str | None) -> x509.Certificate:
    data = path.read_bytes()
    if path.suffix.lower() in (".pfx", ".p12") or not data.lstrip().startswith(b"-----"):
        _key, cert, _extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None
        )
        if cert is None:
            raise ValueError("no certificate in the PFX file")
        return cert
    certs = load_pem_certificates(data)
    if not certs:
        raise ValueError("no certificate in the PEM file")
    return certs[0]


def check_config(config: Config, *, now: datetime, expected_roots_error: str | None) -> CheckResult:
    causes: list[Cause] = []
    fix: list[str] = []
    warn_causes: list[Cause] = []
    portal = "Entra admin center > App registrations > (your app)"
    if not config.tenant_id:
        causes.append(Cause("missing_value", "tenant_id is not set (the Directory (tenant) ID)."))
        fix.append('tenant_id = "<Directory (tenant) ID from the app\'s Overview page>"')
    if not config.client_id:
        causes.append(Cause("missing_value", "client_id is not set (the Application (client) ID)."))
        fix.append('client_id = "<Application (client) ID from the app\'s Overview page>"')
    if config.client_secret is None and config.client_certificate is None:
        causes.append(
            Cause(
                "missing_value",
                "No credential: set client_secret (or client_secret_file) or client_certificate.",
            )
        )
        fix.append("client_secret_file = \"/etc/entragate/client-secret\"   (or client_certificate = \"...pem\")")
    secret = config.client_secret
    if secret is not None:
        value = secret.reveal()
        if looks_like_secret_id(secret):
            causes.append(
                Cause(
                    "secret_id_not_value",
                    "client_secret is shaped like a GUID: that is the secret's *Secret ID*, not its "
                    "Value. Entra rejects it (AADSTS7000215).",
                )
            )
            fix.extend(
                [
                    f"{portal} > Certificates & secrets > New client secret",
                    "copy the Value column at once (it is shown only once), not the Secret ID",
                    "put it in client_secret_file (or ENTRAGATE_CLIENT_SECRET) and rerun entragate doctor",
                ]
            )
        if value != value.strip() or any(ch in value for ch in "\r\n\t"):
            causes.append(
                Cause(
                    "stray_whitespace",
                    "client_secret has leading/trailing whitespace or a line break (often from "
                    "copy-and-paste or `echo` into the secret file); Entra would reject it.",
                )
            )
            fix.append("rewrite the secret without whitespace, e.g. printf '%s' 'VALUE' > /etc/entragate/client-secret")
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            warn_causes.append(
                Cause(
                    "quoted_secret",
                    "client_secret starts and ends with a quote character: the quotes are probably "
                    "part of the value by mistake (environment files do not strip them).",
                )
            )
    for key in ("tenant_id", "client_id"):
        raw = getattr(config, key)
        if raw and (raw != raw.strip() or " " in raw):
            causes.append(Cause("stray_whitespace", f"{key} contains whitespace."))
    if config.client_certificate is not None:
        password = config.client_certificate_password
        try:
            cert = _load_credential_certificate(
                Path(config.client_certificate), password.reveal() if password else None
            )
        except (OSError, ValueError) as exc:
            causes.append(
                Cause(
                    "certificate_unreadable",
                    f"client_certificate {config.client_certificate} cannot be loaded "
                    f"({type(exc).__name__}); it must be a PEM with its key, or a PFX with "
                    "client_certificate_password.",
                )
            )
        else:
            subject = display_name(cert.subject)
            if now > cert.not_valid_after_utc:
                causes.append(
                    Cause(
                        "certificate_expired",
                        f"The client certificate '{subject}' expired on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d}; Entra refuses assertions signed with it.",
                    )
                )
                fix.extend(
                    [
                        "create a new certificate, e.g. openssl req -x509 -newkey rsa:2048 -nodes -days 365 "
                        "-subj /CN=entragate -keyout key.pem -out cert.pem && cat cert.pem key.pem > entragate.pem",
                        f"upload cert.pem in {portal} > Certificates & secrets > Certificates, "
                        "then point client_certificate at entragate.pem",
                    ]
                )
            elif now < cert.not_valid_before_utc:
                causes.append(
                    Cause(
                        "certificate_not_yet_valid",
                        f"The client certificate '{subject}' is not valid until "
                        f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check this host's clock).",
                    )
                )
            else:
                left = (cert.not_valid_after_utc - now).total_seconds() / 86400
                if left < CERT_WARN_DAYS:
                    warn_causes.append(
                        Cause(
                            "certificate_expiring",
                            f"The client certificate '{subject}' expires in {left:.0f} days "
                            f"({cert.not_valid_after_utc:%Y-%m-%d}); upload its successor to the app "
                            "registration before then.",
                        )
                    )
    if expected_roots_error:
        warn_causes.append(Cause("expected_roots_unreadable", expected_roots_error))
    if causes:
        return CheckResult(
            "config",
            FAIL,
            "; ".join(c.summary for c in causes[:3]),
            code=Code.ENTRA001,
            causes=causes + warn_causes,
            fix=fix,
        )
    credential = "certificate" if config.client_certificate is not None else "client secret"
    acls = ", ".join(config.acls) or "none"
    summary = (
        f"tenant {config.tenant_id}, client {config.client_id}, {credential} credential, "
        f"cloud {config.cloud} ({config.login_host}, {config.graph_host}), acls: {acls}"
    )
    if warn_causes:
        return CheckResult("config", WARN, "; ".join(c.summary for c in warn_causes), causes=warn_causes)
    return CheckResult("config", PASS, summary)


# ------------------------------------------------------------------------------------------
# network checks built from probes
# ------------------------------------------------------------------------------------------


def _code_of(probe: HostProbe, default: str = Code.ENTRA000) -> str:
    if probe.timed_out:
        return Code.ENTRA004
    if probe.entra is not None:
        return probe.entra.code
    return default


def check_proxy(probes: Sequence[HostProbe], hosts: Sequence[str]) -> CheckResult:
    proxied = [p for p in probes if p.proxy]
    parts = []
    for p in probes:
        parts.append(f"{p.host}: {'proxy ' + str(mask_url(p.proxy)) if p.proxy else 'direct'}")
    listing = "; ".join(parts)
    if not proxied:
        return CheckResult("proxy", PASS, f"no proxy applies ({listing})")
    for p in proxied:
        if p.stage == "dns" and p.error is not None:
            return CheckResult("proxy", SKIP, f"{listing}; the proxy's name does not resolve (see dns)")
        if p.stage != "proxy":
            continue
        if p.proxy_status is not None and not 200 <= p.proxy_status < 300:
            status = p.proxy_status
            why = (
                "the proxy requires authentication (407): put credentials in the proxy URL or allow this host"
                if status == 407
                else f"the proxy refused the tunnel by policy ({status})"
            )
            return CheckResult(
                "proxy",
                FAIL,
                f"proxy {mask_url(p.proxy)} answered CONNECT {p.host}:443 with {status}: {why}",
                code=Code.ENTRA009,
                causes=[
                    Cause(
                        "proxy_refused",
                        f"The proxy {mask_url(p.proxy)} refused CONNECT {p.host}:443 with HTTP {status}.",
                        details={"proxy_status": status, "host": p.host},
                    )
                ],
                fix=[
                    f"ask the proxy's administrators to allow CONNECT to {', '.join(hosts)} on port 443 "
                    "for this host",
                    "for a 407: proxy = \"http://USER:PASSWORD@proxy.example:3128\" (or HTTPS_PROXY)",
                    *osfix.proxy_bypass_fix(hosts),
                ],
            )
        if p.proxy_error and p.error is None:
            return CheckResult(
                "proxy",
                FAIL,
                f"proxy {mask_url(p.proxy)}: {p.proxy_error}",
                code=Code.ENTRA000,
                causes=[Cause("proxy_protocol_error", p.proxy_error, details={"host": p.host})],
                fix=[f"check the proxy setting ({mask_url(p.proxy)}): it must be an http:// CONNECT proxy"],
            )
        if p.error is not None:
            code = _code_of(p)
            cause_id = "proxy_timeout" if code == Code.ENTRA004 else "proxy_unreachable"
            return CheckResult(
                "proxy",
                FAIL,
                f"cannot reach the proxy {mask_url(p.proxy)} at {p.dial[0]}:{p.dial[1]}: "
                + ("no answer within the timeout" if code == Code.ENTRA004 else str(p.error)),
                code=code,
                causes=[Cause(cause_id, f"The TCP connection to the proxy {mask_url(p.proxy)} failed.")],
                fix=[
                    f"check that the proxy {mask_url(p.proxy)} is the right one and is running: "
                    f"nc -vz {p.dial[0]} {p.dial[1]}",
                    "check HTTPS_PROXY / https_proxy / the proxy key in the configuration",
                ],
            )
    return CheckResult("proxy", PASS, f"tunnels established ({listing})")


def check_dns(probes: Sequence[HostProbe]) -> CheckResult:
    lines = []
    for p in probes:
        name = p.dial[0]
        if p.stage == "dns" and p.error is not None:
            code = _code_of(p)
            what = "timed out" if code == Code.ENTRA004 else f"failed ({p.error})"
            target = "the proxy " + name if p.proxy else name
            return CheckResult(
                "dns",
                FAIL,
                f"resolving {target} for {p.host} {what}",
                code=code,
                causes=[Cause("dns_failure", f"The name {name} does not resolve ({type(p.error).__name__}).")],
                fix=[
                    f"getent hosts {name}",
                    "check /etc/resolv.conf and /etc/hosts, or the proxy name in HTTPS_PROXY",
                ],
            )
        if p.addresses:
            lines.append(f"{name} -> {', '.join(p.addresses[:3])}")
    if not lines:
        return CheckResult("dns", SKIP, "nothing was resolved (see proxy)")
    return CheckResult("dns", PASS, "; ".join(dict.fromkeys(lines)))


def check_tcp(probes: Sequence[HostProbe]) -> CheckResult:
    ok = []
    for p in probes:
        if p.stage in ("dns",) or (p.stage == "proxy" and p.proxy):
            if p.proxy:
                return CheckResult("tcp", SKIP, f"no tunnel to {p.host} (see proxy)")
            return CheckResult("tcp", SKIP, f"{p.host} did not resolve (see dns)")
        if p.stage == "tcp" and p.error is not None:
            code = _code_of(p)
            cause_id = "connect_timeout" if code == Code.ENTRA004 else "connection_failed"
            if isinstance(p.error, ConnectionRefusedError):
                cause_id = "connection_refused"
            what = "no answer within the timeout" if code == Code.ENTRA004 else str(p.error)
            return CheckResult(
                "tcp",
                FAIL,
                f"cannot connect to {p.where}: {what}",
                code=code,
                causes=[Cause(cause_id, f"TCP to {p.dial[0]}:{p.dial[1]} for {p.host} failed.")],
                fix=[
                    f"nc -vz {p.dial[0]} {p.dial[1]}",
                    "check the firewall / egress rules for port 443, or set a proxy (HTTPS_PROXY)",
                ],
            )
        ok.append(p.where)
    return CheckResult("tcp", PASS, "connected: " + "; ".join(ok))


_SYSTEM_BUNDLE_DIRS = (
    "/etc/ssl/certs/",
    "/etc/pki/ca-trust/extracted/",
    "/etc/pki/tls/certs/",
    "/etc/ssl/ca-bundle.pem",
    "/usr/lib/ssl/",
    "/var/lib/ca-certificates/",
)


def is_system_bundle(trust: TrustStoreReport) -> bool:
    """The store in effect is the distribution's own (regenerated by its tools)."""
    if trust.origin == "system":
        return True
    if not trust.path:
        return False
    real = os.path.realpath(trust.path)
    default = ssl.get_default_verify_paths().openssl_cafile
    if default and os.path.exists(default) and real == os.path.realpath(default):
        return True
    return any(trust.path.startswith(d) or real.startswith(d) for d in _SYSTEM_BUNDLE_DIRS)


def _tls_fixes(
    causes: Sequence[Cause],
    *,
    os_info: OsInfo,
    trust: TrustStoreReport,
    hosts: Sequence[str],
    proxied: bool,
) -> list[str]:
    fix: list[str] = []
    ids = [c.id for c in causes]
    system_bundle = "/etc/ssl/certs/ca-certificates.crt"
    fam = osfix.family(os_info)
    if fam == "rhel":
        system_bundle = "/etc/pki/tls/certs/ca-bundle.crt"
    elif fam == "suse":
        system_bundle = "/etc/ssl/ca-bundle.pem"
    if "clock_skew" in ids:
        fix.append("enable time synchronisation:")
        fix.extend(osfix.ntp_fix(os_info))
    if "tls_interception" in ids or "self_signed" in ids:
        c = next(c for c in causes if c.id in ("tls_interception", "self_signed"))
        who = c.vendor or c.issuer or "the inspecting proxy"
        root_file = "/etc/entragate/proxy-root.pem"
        fix.append(
            f"get the root CA certificate of {who} (PEM) from your network/security team, "
            f"save it as {root_file}, then either:"
        )
        if is_system_bundle(trust):
            fix.append("(a) trust it system-wide:")
            fix.extend(osfix.install_root_fix(os_info, root_file))
        else:
            fix.append(
                f"(a) add it to the bundle in effect ({trust.origin}): cat {root_file} >> {trust.path}"
            )
        fix.append("(b) or trust it for entragate only, with a bundle of the system roots plus it:")
        fix.append(f"cat {system_bundle} {root_file} > /etc/entragate/ca-bundle.pem")
        fix.extend(osfix.ca_bundle_fix("/etc/entragate/ca-bundle.pem"))
        fix.append("(c) or bypass the inspection for Microsoft's hosts:")
        if proxied:
            fix.extend(osfix.proxy_bypass_fix(hosts))
        else:
            fix.append(
                f"ask the administrators of the inspecting device to exempt {', '.join(hosts)} from TLS inspection"
            )
    if "noncompliant_ca" in ids:
        c = next(c for c in causes if c.id == "noncompliant_ca")
        fix.append(
            f"ask the administrators of {c.vendor or c.issuer} to reissue its CA per RFC 5280: "
            "basicConstraints critical, keyUsage keyCertSign+cRLSign, subject and authority key identifiers"
        )
        fix.append(
            "entragate (like Python 3.13+) verifies strictly and has no switch to relax it; until then:"
        )
        fix.extend(osfix.proxy_bypass_fix(hosts) if proxied else [f"exempt {', '.join(hosts)} from TLS inspection"])
    if "incomplete_chain" in ids:
        c = next(c for c in causes if c.id == "incomplete_chain")
        fix.append(
            f"the server path omits the intermediate '{c.issuer}': if a load balancer or proxy serves "
            "this chain, fix its certificate chain; otherwise add that intermediate to a ca_bundle:"
        )
        fix.extend(osfix.ca_bundle_fix("/etc/entragate/ca-bundle.pem"))
    for cid in ("ca_bundle_missing", "ca_bundle_corrupt", "ca_bundle_lacks_root"):
        if cid not in ids:
            continue
        if is_system_bundle(trust):
            fix.append("reinstall and regenerate the system CA bundle:")
            fix.extend(osfix.refresh_bundle_fix(os_info))
        elif trust.origin in ("ca_bundle", "ENTRAGATE_CA_BUNDLE"):
            fix.append(
                f"fix the file named by {trust.origin} ({trust.path}): it must be a PEM bundle that "
                "contains Microsoft's roots, e.g.:"
            )
            fix.append(f"cat {system_bundle} > {trust.path}")
            fix.append("or remove ca_bundle / ENTRAGATE_CA_BUNDLE to use the system store")
        else:
            fix.append(
                f"{trust.origin}={trust.path} overrides the system store for every tool that reads it: "
                f"point it at a valid bundle ({system_bundle}) or unset it: unset {trust.origin}"
            )
            fix.extend(osfix.ca_bundle_fix(system_bundle))
        break
    if "hostname_mismatch" in ids:
        fix.append(
            f"check where {', '.join(hosts)} resolve and connect: getent hosts {hosts[0]}; "
            "look for stale /etc/hosts entries, a wrong connect_to, or a proxy answering for Microsoft"
        )
    if ("cert_expired" in ids or "cert_not_yet_valid" in ids) and "clock_skew" not in ids:
        fix.append(
            "Microsoft does not serve out-of-date certificates: the one presented comes from a device "
            "on the path (renew it there) or this host's clock is wrong:"
        )
        fix.extend(osfix.ntp_fix(os_info))
    return fix


def check_tls(
    probes: Sequence[HostProbe],
    *,
    trust: TrustStoreReport,
    expected_roots: Sequence[x509.Certificate],
    os_info: OsInfo,
    hosts: Sequence[str],
    now: datetime | None = None,
) -> CheckResult:
    reached = [p for p in probes if p.stage in ("tls", "http", "done")]
    if not reached:
        return CheckResult("tls", SKIP, "no TCP connection to check TLS on (see tcp/proxy)")
    causes: list[Cause] = []
    failing: list[HostProbe] = []
    for p in reached:
        if p.verified:
            continue
        failing.append(p)
        if p.verify_code is None:
            continue
        if p.capture is None or not p.capture.certs:
            continue
        for cause in diagnose(
            p.host,
            p.capture,
            verify_code=p.verify_code,
            trust=trust,
            expected_roots=expected_roots,
            now=now or datetime.now(UTC),
        ):
            key = (cause.id, cause.issuer, cause.vendor)
            if all((c.id, c.issuer, c.vendor) != key for c in causes):
                causes.append(cause)
    if not failing:
        versions = ", ".join(sorted({p.tls_version or "?" for p in reached}))
        return CheckResult(
            "tls",
            PASS,
            f"verified {', '.join(p.host for p in reached)} ({versions}) against {trust.origin}"
            + (f" {trust.path}" if trust.path else ""),
        )
    p = failing[0]
    if p.verify_code is None:
        code = _code_of(p)
        what = "timed out" if code == Code.ENTRA004 else f"failed: {p.error}"
        return CheckResult(
            "tls",
            FAIL,
            f"TLS handshake with {p.where} {what}",
            code=code,
            causes=[
                Cause(
                    "tls_timeout" if code == Code.ENTRA004 else "tls_handshake_failed",
                    f"The TLS handshake with {p.host} did not complete ({type(p.error).__name__}).",
                )
            ],
            fix=[
                f"openssl s_client -connect {p.dial[0]}:{p.dial[1]} -servername {p.host} </dev/null",
                "a firewall or proxy on the path may be dropping TLS to Microsoft",
            ],
        )
    proxied = any(q.proxy for q in probes)
    if causes:
        first = causes[0]
        summary = first.summary
    else:
        presented = len(p.capture.certs) if p.capture else 0
        summary = (
            f"verification of {p.host} failed: {verify_code_name(p.verify_code)} "
            f"(verify code {p.verify_code}); {presented} certificate(s) presented"
            + (f"; capture: {p.capture.error}" if p.capture and p.capture.error else "")
        )
    fix = _tls_fixes(causes, os_info=os_info, trust=trust, hosts=hosts, proxied=proxied)
    if not fix:
        fix = [
            f"openssl s_client -connect {p.dial[0]}:{p.dial[1]} -servername {p.host} -showcerts </dev/null",
        ]
    return CheckResult("tls", FAIL, summary, code=Code.ENTRA003, causes=causes, fix=fix)


def check_clock(probes: Sequence[HostProbe], *, os_info: OsInfo, tls: CheckResult) -> CheckResult:
    dated = [p for p in probes if p.server_date is not None and p.local_date is not None]
    if not dated:
        return CheckResult("clock", SKIP, "no server Date header was received (see tls)")
    p = dated[0]
    assert p.server_date is not None and p.local_date is not None
    skew = (p.server_date - p.local_date).total_seconds()
    # Date has a resolution of one second; anything within 60 s passes.
    if abs(skew) > CLOCK_LIMIT_SECONDS:
        direction = "behind" if skew > 0 else "ahead of"
        code = Code.ENTRA003 if any(c.id == "clock_skew" for c in tls.causes) else Code.ENTRA001
        return CheckResult(
            "clock",
            FAIL,
            f"this host's clock is {human_seconds(skew)} {direction} {p.host}'s Date header "
            f"({p.server_date:%Y-%m-%d %H:%M:%S} UTC, local {p.local_date:%Y-%m-%d %H:%M:%S} UTC)",
            code=code,
            causes=[
                Cause(
                    "clock_skew",
                    f"The local clock differs from {p.host}'s by {int(round(skew))} s "
                    f"(more than {CLOCK_LIMIT_SECONDS} s): certificates, tokens and client "
                    "assertions are checked against time.",
                    skew_seconds=int(round(skew)),
                )
            ],
            fix=osfix.ntp_fix(os_info),
        )
    return CheckResult(
        "clock",
        PASS,
        f"local clock within {max(1, int(round(abs(skew))))} s of {p.host}'s Date header",
    )


def check_truststore(
    trust: TrustStoreReport,
    *,
    env: Mapping[str, str],
    os_info: OsInfo,
    tls: CheckResult,
) -> CheckResult:
    ignored = [
        v
        for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
        if env.get(v) and v != trust.origin
    ]
    where = f"{trust.path}" + (f" + {trust.capath}" if trust.capath else "")
    base = f"{trust.origin}: {where}"
    tls_bundle_causes = [c for c in tls.causes if c.id.startswith("ca_bundle_")]
    if not trust.exists or not (trust.readable and trust.parseable):
        cid = "ca_bundle_missing" if not trust.exists else "ca_bundle_corrupt"
        fix = _tls_fixes(
            [Cause(cid, "")], os_info=os_info, trust=trust, hosts=[], proxied=False
        )
        return CheckResult(
            "truststore",
            FAIL,
            f"{base}: {trust.problem or 'unusable'}",
            code=Code.ENTRA003,
            causes=tls_bundle_causes
            or [Cause(cid, f"The trust store selected by {trust.origin} is unusable: {trust.problem}.")],
            fix=fix,
        )
    age = f", {trust.age_days:.0f} days old" if trust.age_days is not None else ""
    roots = ", ".join(trust.publisher_roots[:3]) or "none of the publisher's roots"
    summary = f"{base} ({trust.count} certificates{age}; holds {roots})"
    if ignored:
        summary += f"; overrides {', '.join(ignored)}"
    if not trust.has_publisher_root:
        fix = _tls_fixes(
            [Cause("ca_bundle_lacks_root", "")], os_info=os_info, trust=trust, hosts=[], proxied=False
        )
        status = FAIL if tls_bundle_causes else WARN
        return CheckResult(
            "truststore",
            status,
            f"{base} holds none of Microsoft's roots (nor the expected roots) ({trust.count} certificates)",
            code=Code.ENTRA003 if status == FAIL else None,
            causes=tls_bundle_causes
            or [
                Cause(
                    "ca_bundle_lacks_root",
                    f"The trust store selected by {trust.origin} ({trust.path}) does not contain "
                    "any of Microsoft's roots; genuine connections to Microsoft cannot verify.",
                )
            ],
            fix=fix,
        )
    if trust.age_days is not None and trust.age_days > BUNDLE_STALE_DAYS:
        return CheckResult(
            "truststore",
            WARN,
            summary + f"; not updated for {trust.age_days:.0f} days",
            causes=[Cause("ca_bundle_stale", f"{trust.path} has not changed for {trust.age_days:.0f} days.")],
            fix=osfix.refresh_bundle_fix(os_info),
        )
    return CheckResult("truststore", PASS, summary)


# ------------------------------------------------------------------------------------------
# token, permissions, locations, throttling
# ------------------------------------------------------------------------------------------

AADSTS_FIXES: dict[int, list[str]] = {
    7000215: [
        "Entra admin center > App registrations > (your app) > Certificates & secrets > New client secret",
        "copy the secret's Value (shown once), not its Secret ID (a GUID), into client_secret_file",
    ],
    7000222: [
        "the client secret has expired: Entra admin center > App registrations > (your app) > "
        "Certificates & secrets > New client secret, then update client_secret_file",
    ],
    90002: [
        "check tenant_id (Directory (tenant) ID) and cloud: global, usgov, usgov-dod or china "
        "(a US Gov or China tenant is not found on login.microsoftonline.com)",
    ],
    900023: ["tenant_id must be the Directory (tenant) ID GUID or a verified domain (contoso.onmicrosoft.com)"],
    700016: [
        "the app (client_id) is not registered in this tenant: check client_id and tenant_id "
        "(the Overview page of the app registration shows both)",
    ],
    700024: [
        "the client assertion is outside its valid time: this host's clock is probably wrong",
        "sudo timedatectl set-ntp true",
    ],
    700027: [
        "upload the certificate in client_certificate to the app registration "
        "(Certificates & secrets > Certificates), or point client_certificate at the uploaded one",
    ],
    7000218: ["set client_secret (or client_secret_file) or client_certificate"],
    53003: [
        "a Conditional Access policy blocks this workload identity: exclude it, or allow this host's address",
    ],
}


def _error_detail(err: EntraError) -> str:
    ids = []
    if err.request_id:
        ids.append(f"request-id {err.request_id}")
    if err.correlation_id:
        ids.append(f"correlation_id {err.correlation_id}")
    return err.detail + (f" [{', '.join(ids)}]" if ids else "")


def token_result(
    err: EntraError | None, *, host: str, timed_out: bool, timeout: float, os_info: OsInfo
) -> CheckResult:
    if timed_out:
        return CheckResult(
            "token",
            FAIL,
            f"no token from {host} within {timeout:g}s",
            code=Code.ENTRA004,
            causes=[Cause("token_timeout", f"The token request to {host} did not complete in time.")],
            fix=[f"check the network path and proxy to {host}, or raise `timeout`"],
        )
    if err is None:
        return CheckResult("token", PASS, f"{host} issued an application token")
    aadsts = getattr(err, "aadsts", None)
    causes = []
    fix: list[str] = []
    if err.code == Code.ENTRA001:
        cid = f"aadsts_{aadsts}" if aadsts else "token_rejected"
        causes.append(
            Cause(cid, f"{host} rejected the credentials: {err.hint}", details={"aadsts": aadsts})
        )
        fix = list(AADSTS_FIXES.get(aadsts or 0, [err.hint]))
        if aadsts == 700024:
            fix = [fix[0], *osfix.ntp_fix(os_info)]
    elif err.code == Code.ENTRA005:
        causes.append(Cause("throttled", f"{host} throttled the token request (429)."))
        fix = ["wait and retry; check for other clients hammering the token endpoint"]
    elif err.code == Code.ENTRA004:
        causes.append(Cause("token_timeout", f"The token request to {host} did not complete in time."))
        fix = [f"check the network path and proxy to {host}, or raise `timeout`"]
    elif err.code == Code.ENTRA008:
        causes.append(Cause("service_error", f"{host} answered with a server error."))
        fix = ["Microsoft had a problem; entragate retries. See https://status.cloud.microsoft"]
    else:
        causes.append(Cause("token_request_failed", f"The token request to {host} failed: {err.title}."))
        fix = [err.hint]
    return CheckResult(
        "token",
        FAIL,
        f"token request to {host}: {_error_detail(err)}",
        code=err.code,
        causes=causes,
        fix=fix,
    )


def check_permissions(access_token: str) -> CheckResult:
    claims = decode_jwt_payload(access_token)
    roles_claim = claims.get("roles")
    roles = {str(r) for r in roles_claim} if isinstance(roles_claim, list) else set()
    grant_fix = [
        "Entra admin center > App registrations > (your app) > API permissions > Add a permission > "
        "Microsoft Graph > Application permissions: Policy.Read.All and Policy.ReadWrite.ConditionalAccess",
        "then Grant admin consent for the tenant",
    ]
    if not roles and "scp" in claims:
        return CheckResult(
            "permissions",
            FAIL,
            "the token carries delegated scopes (scp), not application roles",
            code=Code.ENTRA002,
            causes=[Cause("delegated_permissions", "The permissions were added as Delegated, not Application.")],
            fix=grant_fix,
        )
    missing = [p for p in (READ_PERMISSION, WRITE_PERMISSION) if p not in roles]
    have = ", ".join(sorted(roles)) or "no roles"
    if WRITE_PERMISSION in missing:
        return CheckResult(
            "permissions",
            FAIL,
            f"missing {' and '.join(missing)} (the token has {have})",
            code=Code.ENTRA002,
            causes=[
                Cause(
                    "missing_permission",
                    f"The application lacks {', '.join(missing)} (application permission with admin "
                    "consent); entragate needs Policy.ReadWrite.ConditionalAccess to write named locations.",
                    details={"missing": missing},
                )
            ],
            fix=grant_fix,
        )
    if missing:
        return CheckResult(
            "permissions",
            WARN,
            f"missing {READ_PERMISSION} (reads work through {WRITE_PERMISSION})",
            causes=[Cause("missing_permission", f"{READ_PERMISSION} is not granted.", details={"missing": missing})],
            fix=grant_fix,
        )
    return CheckResult("permissions", PASS, f"token roles include {READ_PERMISSION} and {WRITE_PERMISSION}")


def graph_error_result(check_id: str, err: EntraError, *, host: str) -> CheckResult:
    detail = _error_detail(err)
    if err.code == Code.ENTRA002:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph refused to list named locations: {detail}",
            code=Code.ENTRA002,
            causes=[Cause("graph_forbidden", "Graph answered 403: the permission is missing or not consented.")],
            fix=[
                "grant Policy.Read.All and Policy.ReadWrite.ConditionalAccess (Application) with admin consent",
            ],
        )
    if err.code == Code.ENTRA005:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph throttled the read (429, no Retry-After): {detail}",
            code=Code.ENTRA005,
            causes=[
                Cause(
                    "throttled",
                    "The tenant's Conditional Access budget (about 1 request/s, shared by every app in "
                    "the tenant) is exhausted.",
                )
            ],
            fix=[
                "find other apps or scripts calling Conditional Access APIs in this tenant",
                "keep [agent] rate at 1 (or lower) and retry later",
            ],
        )
    if err.code == Code.ENTRA008:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph server error: {detail}",
            code=Code.ENTRA008,
            causes=[Cause("service_error", f"{host} answered with a 5xx status.")],
            fix=["Microsoft had a problem; entragate retries. See https://status.cloud.microsoft"],
        )
    if err.code == Code.ENTRA004:
        return CheckResult(
            check_id,
            FAIL,
            f"Graph did not answer: {detail}",
            code=Code.ENTRA004,
            causes=[Cause("graph_timeout", f"{host} did not answer within the timeout.")],
            fix=[f"check the network path to {host}, or raise `timeout`"],
        )
    return CheckResult(
        check_id,
        FAIL,
        f"listing named locations failed: {detail}",
        code=err.code,
        causes=[Cause("graph_request_failed", err.title)],
        fix=[err.hint],
    )


def _static_problems(config: Config) -> list[str]:
    problems = []
    for acl in config.acls.values():
        for cidr in acl.static:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                problems.append(f"acl.{acl.name}.static {cidr!r} is not an address or CIDR")
                continue
            if "/" not in cidr:
                continue
            minimum = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
            if net.prefixlen < minimum:
                problems.append(f"acl.{acl.name}.static {cidr} is shorter than /{minimum}: Graph rejects it")
        if len(acl.static) > acl.max_ranges:
            problems.append(f"acl.{acl.name} has {len(acl.static)} static ranges, over max_ranges {acl.max_ranges}")
    return problems


def check_locations(config: Config, locations: Sequence[object]) -> CheckResult:
    from entragate.graph.client import NamedLocation

    locs = [loc for loc in locations if isinstance(loc, NamedLocation)]
    problems = _static_problems(config)
    if problems:
        return CheckResult(
            "locations",
            FAIL,
            problems[0],
            code=Code.ENTRA007,
            causes=[Cause("invalid_static_range", p) for p in problems],
            fix=["fix the static ranges: CIDR form, at least /9 (IPv4) or /16 (IPv6), at most 2000 per location"],
        )
    if not config.acls:
        return CheckResult(
            "locations",
            WARN,
            f"{len(locs)} named location(s) readable, but no [acl.NAME] is configured",
            causes=[Cause("no_acls", "No access list is configured.")],
            fix=['[acl.staff]\nlocation = "entragate staff"'],
        )
    parts: list[str] = []
    warns: list[Cause] = []
    for acl in config.acls.values():
        matches = [loc for loc in locs if loc.id == acl.location or loc.display_name == acl.location]
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: {len(matches)} named locations are called {acl.location!r} ({ids})",
                code=Code.ENTRA006,
                causes=[Cause("location_ambiguous", f"Several named locations match {acl.location!r}.")],
                fix=[f"rename the duplicates in the portal or set acl.{acl.name}.location to one of: {ids}"],
            )
        if not matches:
            if acl.create:
                if len(locs) >= MAX_LOCATIONS_PER_TENANT:
                    return CheckResult(
                        "locations",
                        FAIL,
                        f"acl {acl.name}: {acl.location!r} does not exist and cannot be created: the tenant "
                        f"already has {len(locs)} named locations (limit {MAX_LOCATIONS_PER_TENANT})",
                        code=Code.ENTRA007,
                        causes=[Cause("location_limit", "The tenant is at Microsoft's 195 named locations limit.")],
                        fix=["delete unused named locations in the portal, or point the acl at an existing one"],
                    )
                warns.append(
                    Cause("location_will_be_created", f"{acl.location!r} does not exist yet; the agent will create it.")
                )
                parts.append(f"{acl.name} -> (will be created)")
                continue
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: no named location is called {acl.location!r}",
                code=Code.ENTRA006,
                causes=[Cause("location_missing", f"No named location matches {acl.location!r}.")],
                fix=[
                    f"create an IP ranges location named {acl.location!r} in the portal "
                    "(Protection > Conditional Access > Named locations), or",
                    f"set acl.{acl.name}.create = true, or set location to the location's id",
                ],
            )
        loc = matches[0]
        if not loc.is_ip:
            return CheckResult(
                "locations",
                FAIL,
                f"acl {acl.name}: {acl.location!r} is a {loc.odata_type or 'non-IP'} location, not IP ranges",
                code=Code.ENTRA006,
                causes=[Cause("location_not_ip", f"{acl.location!r} is not an IP named location.")],
                fix=[f"point acl.{acl.name}.location at an IP ranges location"],
            )
        if loc.is_trusted != acl.trusted:
            warns.append(
                Cause(
                    "location_trust_differs",
                    f"{acl.location!r} is {'trusted' if loc.is_trusted else 'not trusted'} in Entra but "
                    f"acl.{acl.name}.trusted = {str(acl.trusted).lower()}.",
                )
            )
        parts.append(f"{acl.name} -> {loc.display_name} ({len(loc.cidrs)} ranges)")
    summary = f"{len(locs)} named location(s); " + "; ".join(parts)
    if warns:
        return CheckResult("locations", WARN, summary, causes=warns)
    return CheckResult("locations", PASS, summary)


def check_throttling(config: Config, graph_error: EntraError | None, reads: int) -> CheckResult:
    if graph_error is not None and graph_error.code == Code.ENTRA005:
        result = graph_error_result("throttling", graph_error, host=config.graph_host)
        return result
    rate = config.agent.rate
    if rate > 1.0:
        return CheckResult(
            "throttling",
            WARN,
            f"[agent] rate = {rate:g}/s exceeds Conditional Access's ~1 request/s per tenant",
            causes=[Cause("rate_too_high", "The configured rate invites 429s (they carry no Retry-After).")],
            fix=["[agent]\nrate = 1"],
        )
    return CheckResult(
        "throttling",
        PASS,
        f"no 429 on {reads} Graph read(s); agent paces writes at {rate:g}/s per tenant",
    )


# ------------------------------------------------------------------------------------------
# small utilities used by the runner
# ------------------------------------------------------------------------------------------


def load_expected_roots(config: Config) -> tuple[list[x509.Certificate], str | None]:
    if config.expected_roots is None:
        return [], None
    path = Path(config.expected_roots)
    try:
        certs = load_pem_certificates(path.read_bytes())
    except OSError as exc:
        return [], f"expected_roots {path} cannot be read: {exc.strerror or exc}"
    except ValueError:
        return [], f"expected_roots {path} is not a PEM bundle of certificates"
    return certs, None


def env_snapshot(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)
