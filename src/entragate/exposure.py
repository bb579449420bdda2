"""Whether the API's listen address reaches beyond this host, and the TLS it then needs.

The API carries the bearer token, so beyond loopback it is served over TLS only:
``agent.listen`` on any other address requires ``agent.tls_cert`` and ``agent.tls_key``
(checked when the configuration loads, and again by the server) (docs/design.md#api).
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entragate.config import AgentConfig


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); wildcards are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_problems(agent: AgentConfig) -> list[str]:
    """The API carries the bearer token: beyond loopback it is served over TLS only."""
    cert, key = agent.tls_cert, agent.tls_key
    if cert is None and key is None:
        if agent.listen.rpartition(":")[1] and not is_loopback(agent.listen_host):
            return [
                f"agent.listen {agent.listen!r} is not a loopback address: set agent.tls_cert "
                "and agent.tls_key to serve the API over TLS there, or listen on 127.0.0.1"
            ]
        return []
    if cert is None or key is None:
        return ["agent.tls_cert and agent.tls_key go together: set both, or neither"]
    problems = []
    for name, path in (("agent.tls_cert", cert), ("agent.tls_key", key)):
        if not os.access(path, os.R_OK) or not path.is_file():
            problems.append(f"{name} {path} does not exist or is not a readable file")
    if problems:
        return problems
    if key.stat().st_mode & 0o004:
        return [f"agent.tls_key {key} is readable by every user; fix: chmod 600 {key}"]
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return [f"agent.tls_cert {cert} with agent.tls_key {key} cannot be used: {exc}"]
    return []
