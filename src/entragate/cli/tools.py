"""``emulator`` and ``demo``: the emulated tenant, for people and for the demo."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from entragate.cli.base import fail, import_command


def _address(option: str, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        fail(2, f"entragate: {option} {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port_text)


@click.command(
    epilog="Faults (--fault, repeatable; also switchable at run time through --control): "
    "status=CODE, latency=SECONDS, hang=SECONDS, reset, throttle; each may add ,host=graph|login|NAME, "
    ",method=M, ,count=N, ,path=SUBSTRING. See docs/emulator.md."
)
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to serve on."
)
@click.option(
    "--state",
    "--state-dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the root CA and the tenants (apps, locations, policies) in DIR across restarts "
    "(default: only the root CA, in the user's entragate app directory).",
)
@click.option(
    "--rate",
    type=float,
    default=1.0,
    show_default=True,
    help="Requests per second per tenant (0: off).",
)
@click.option("--fault", "faults", multiple=True, metavar="KIND[=ARGS]", help="A fault in force from the start.")
@click.option(
    "--certificate",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Serve this PEM (certificate chain and private key) for every host instead of the "
    "emulator's own chain.",
)
@click.option(
    "--control",
    default=None,
    metavar="HOST:PORT",
    help="Serve the control endpoint (faults, TLS scenarios, policies, state) on this loopback address.",
)
def emulator(
    listen: str,
    state_dir: Path | None,
    rate: float,
    faults: tuple[str, ...],
    certificate: Path | None,
    control: str | None,
) -> None:
    """Run the emulated Entra tenant (token endpoint + Graph named locations) in the foreground.

    Prints the tenant, app credentials, CA bundle and a configuration to point the
    agent at it.

    Example:

    \b
      entragate emulator --state ./emulator-state --control 127.0.0.1:8444
      entragate emulator --fault status=503,host=graph,count=3
    """
    host, port = _address("--listen", listen)
    control_address = _address("--control", control) if control else None
    persist = state_dir is not None
    state = state_dir or Path(click.get_app_dir("entragate")) / "emulator"
    state.mkdir(parents=True, exist_ok=True)
    parse_fault = import_command("entragate.emulator", "parse_fault", "emulator")
    try:
        armed = [parse_fault(spec) for spec in faults]
    except ValueError as exc:
        fail(2, f"entragate: --fault: {exc}")
    serve_forever = import_command("entragate.emulator", "serve_forever", "emulator")
    try:
        serve_forever(
            host, port, state, rate if rate > 0 else None, click.echo,
            persist=persist, faults=armed, certificate=certificate, control=control_address,
        )
    except ValueError as exc:
        fail(2, f"entragate: {exc}")
    except OSError as exc:
        fail(1, f"entragate: cannot serve the emulator on {listen}: {exc.strerror or exc}")


@click.command()
def demo() -> None:
    """Show entragate end to end against the emulator (no Microsoft tenant needed).

    Starts the emulator and an agent on a temporary store, grants and expires a few
    addresses, shows the named location change, then shows `doctor` diagnosing an
    emulated TLS-inspection proxy.

    Example:

    \b
      entragate demo
    """
    run_demo: Callable[[], int | None] = import_command("entragate.demo", "run_demo", "demo")
    sys.exit(int(run_demo() or 0))
