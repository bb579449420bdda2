"""One probe per Microsoft host: proxy, DNS, TCP, verified TLS with the agent's
own SSL context, and the server's ``Date`` (docs/design.md#doctor).

The network checks turn these observations into results; when verification
fails the presented chain is captured (without trusting it) for the TLS
diagnosis.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from entragate.config import Config
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
from entragate.errors import Code, EntraError, classify_exception
from entragate.logs import redact_text


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


def failure_code(probe: HostProbe, default: str = Code.ENTRA000) -> str:
    """The error code of a failed probe: a timeout is ENTRA004 whatever the stage."""
    if probe.timed_out:
        return Code.ENTRA004
    if probe.entra is not None:
        return probe.entra.code
    return default
