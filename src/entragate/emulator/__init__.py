"""The emulated tenant: Entra's token endpoint and Graph's named locations, over real TLS
on loopback (docs/design.md#emulator).

Quick use::

    with Emulator(rate_limit=1.0) as emu:          # starts on 127.0.0.1, a free port
        tid = emu.add_tenant()
        app = emu.add_app(tid)                      # generated secret, both Policy roles
        emu.connect_to()                            # ["login.microsoftonline.com:443:127.0.0.1:PORT", ...]
        emu.ca_bundle_path                          # trust this root

See :class:`Emulator`, :class:`EmulatorFault`, :data:`TLS_SCENARIOS`, :class:`ConnectProxy`.
The modules, by concern: ``state`` (tenants, apps, locations, counters, the state
directory), ``token_service`` and ``tokens`` (the login host and its JWTs), ``graph_api``
with ``locations`` and ``odata`` (the named-location routes), ``faults``, ``tls`` (the
certificates per SNI name and the TLS scenarios), ``pki`` (the one certificate builder,
which the tests use too), ``proxy`` (a CONNECT proxy); ``_emulator`` puts them together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ._emulator import Emulator
from .faults import FAULT_KINDS, EmulatorFault
from .proxy import ConnectProxy
from .state import (
    ALL_HOSTS,
    CLOUDS,
    DEFAULT_ROLES,
    GRAPH_HOSTS,
    LOGIN_HOSTS,
    AppRegistration,
    RequestRecord,
    WriteRecord,
)
from .tls import TLS_SCENARIOS

__all__ = [
    "ALL_HOSTS",
    "CLOUDS",
    "DEFAULT_ROLES",
    "FAULT_KINDS",
    "GRAPH_HOSTS",
    "LOGIN_HOSTS",
    "TLS_SCENARIOS",
    "AppRegistration",
    "ConnectProxy",
    "Emulator",
    "EmulatorFault",
    "RequestRecord",
    "WriteRecord",
    "sample_config",
    "serve_forever",
]


def sample_config(emu: Emulator, tenant_id: str, client_id: str, secret: str, cloud: str = "global") -> str:
    """A TOML configuration that points the agent at ``emu`` for that tenant and app."""
    login, graph = CLOUDS[cloud]
    lines = [line for line in emu.connect_to() if line.split(":", 1)[0] in (login, graph)]
    connect_to = ",\n".join(f'    "{line}"' for line in lines)
    return (
        f'tenant_id = "{tenant_id}"\n'
        f'client_id = "{client_id}"\n'
        f'client_secret = "{secret}"\n'
        f'cloud = "{cloud}"\n'
        f'ca_bundle = "{emu.ca_bundle_path}"\n'
        f'expected_roots = "{emu.ca_bundle_path}"\n'
        f"connect_to = [\n{connect_to},\n]\n"
        "\n"
        "[acl.staff]\n"
        'location = "entragate staff"\n'
        "create = true\n"
    )


def serve_forever(
    host: str,
    port: int,
    state_dir: Path,
    rate_limit: float | None,
    echo: Callable[[str], None],
    *,
    stop_event: threading.Event | None = None,
) -> None:
    """Run an emulator with a demo tenant and app until Ctrl-C (or ``stop_event`` is set).

    The root CA persists in ``state_dir`` so clients that trust it keep working across
    restarts; tenants, apps and named locations live in memory.
    """
    emu = Emulator(state_dir=state_dir, rate_limit=rate_limit).start(host, port)
    try:
        tid = emu.add_tenant()
        app = emu.add_app(tid)
        assert app.secret is not None
        echo(f"entragate emulator listening on {emu.listen_host}:{emu.port}")
        echo(f"tenant_id     {tid}")
        echo(f"tenant domain {emu.tenant_domain(tid)}")
        echo(f"client_id     {app.client_id}")
        echo(f"client_secret {app.secret}")
        echo(f"secret id     {app.secret_id}  (the Secret ID: do not use it as the secret)")
        echo(f"CA bundle     {emu.ca_bundle_path}")
        echo(f"rate limit    {rate_limit if rate_limit else 'off'} requests/second per tenant")
        echo("connect_to (curl --connect-to syntax):")
        for line in emu.connect_to():
            echo(f"  {line}")
        echo("")
        echo("Sample configuration (entragate.toml):")
        echo(sample_config(emu, tid, app.client_id, app.secret))
        echo("Press Ctrl-C to stop.")
        waiter = stop_event or threading.Event()
        try:
            while not waiter.wait(0.5):
                pass
        except KeyboardInterrupt:
            echo("stopping")
    finally:
        emu.stop()
