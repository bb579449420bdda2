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
from collections.abc import Callable, Sequence
from pathlib import Path

from ._emulator import Emulator
from .faults import FAULT_KINDS, EmulatorFault, parse_fault
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
    "parse_fault",
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
    persist: bool = False,
    faults: Sequence[EmulatorFault] = (),
    certificate: Path | None = None,
    control: tuple[str, int] | None = None,
) -> None:
    """Run an emulator with a demo tenant and app until Ctrl-C (or ``stop_event`` is set).

    The root CA persists in ``state_dir`` so clients that trust it keep working across
    restarts; with ``persist`` the tenants, apps, locations and policies do too
    (``persist.py``). ``faults`` are in force from the start, ``certificate`` (a PEM
    chain with its key) is served for every host, and ``control`` starts the control
    endpoint (``control.py``) on that loopback address.
    """
    from . import persist as persistence
    from .control import ControlServer

    emu = Emulator(state_dir=state_dir, rate_limit=rate_limit)
    restored = persist and persistence.load(emu, state_dir)
    emu.start(host, port)
    controller: ControlServer | None = None
    try:
        if certificate is not None:
            emu.serve_certificate(certificate)
        for fault in faults:
            emu.set_fault(fault)
        if restored:
            tenant = emu.all_tenants()[0]
            tid = tenant.id
            first = next((a for a in tenant.apps.values() if a.secret), None)
            if first is None or first.secret is None:
                raise ValueError(f"{state_dir}: the saved tenant has no app with a secret")
            client_id, secret, secret_id = first.client_id, first.secret, first.secret_id
        else:
            tid = emu.add_tenant()
            app = emu.add_app(tid)
            assert app.secret is not None
            client_id, secret, secret_id = app.client_id, app.secret, app.secret_id
        if control is not None:
            controller = ControlServer(emu, *control).start()
        echo(f"entragate emulator listening on {emu.listen_host}:{emu.port}")
        echo(f"tenant_id     {tid}" + ("  (restored from " + str(state_dir) + ")" if restored else ""))
        echo(f"tenant domain {emu.tenant_domain(tid)}")
        echo(f"client_id     {client_id}")
        echo(f"client_secret {secret}")
        echo(f"secret id     {secret_id}  (the Secret ID: do not use it as the secret)")
        echo(f"CA bundle     {emu.ca_bundle_path}" + ("  (not the chain served: --certificate)" if certificate else ""))
        echo(f"rate limit    {rate_limit if rate_limit else 'off'} requests/second per tenant")
        echo(f"state         {'kept in ' + str(state_dir) if persist else 'in memory (use --state DIR to keep it)'}")
        for fault in faults:
            echo(f"fault         {fault}")
        if controller is not None:
            echo(f"control       {controller.url}  (GET/POST/DELETE /faults, PUT /tls, POST /policies, GET /state)")
        echo("connect_to (curl --connect-to syntax):")
        for line in emu.connect_to():
            echo(f"  {line}")
        echo("")
        echo("Sample configuration (entragate.toml):")
        echo(sample_config(emu, tid, client_id, secret))
        echo("Press Ctrl-C to stop.")
        waiter = stop_event or threading.Event()
        saved = persistence.snapshot(emu) if persist else None
        try:
            while not waiter.wait(0.5):
                if persist:
                    current = persistence.snapshot(emu)
                    if current != saved:
                        persistence.save(emu, state_dir, current)
                        saved = current
        except KeyboardInterrupt:
            echo("stopping")
    finally:
        if controller is not None:
            controller.stop()
        emu.stop()
        if persist:
            persistence.save(emu, state_dir)
