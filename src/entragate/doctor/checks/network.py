"""The ``proxy``, ``dns`` and ``tcp`` checks, built from the host probes."""

from __future__ import annotations

from collections.abc import Sequence

from entragate.doctor import osfix
from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import FAIL, PASS, SKIP, CheckResult
from entragate.doctor.checks.probe import HostProbe, failure_code, mask_url
from entragate.errors import Code


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
            code = failure_code(p)
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
            code = failure_code(p)
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
            code = failure_code(p)
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
