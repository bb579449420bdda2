"""``emulator`` and ``demo``: the emulated tenant, for people and for the demo."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from entragate.cli.base import fail, import_command


@click.command()
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to serve on."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the emulator keeps its root CA (default: the user's entragate app directory).",
)
@click.option(
    "--rate",
    type=float,
    default=1.0,
    show_default=True,
    help="Requests per second per tenant (0: off).",
)
def emulator(listen: str, state_dir: Path | None, rate: float) -> None:
    """Run the emulated Entra tenant (token endpoint + Graph named locations) in the foreground.

    Prints the tenant, app credentials, CA bundle and a configuration to point the
    agent at it.

    Example:

    \b
      entragate emulator --listen 127.0.0.1:8443 --state-dir ./emulator-state
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        fail(2, f"entragate: --listen {listen!r} is not HOST:PORT")
    host = host.strip("[]")
    state = state_dir or Path(click.get_app_dir("entragate")) / "emulator"
    state.mkdir(parents=True, exist_ok=True)
    serve_forever = import_command("entragate.emulator", "serve_forever", "emulator")
    try:
        serve_forever(host, int(port_text), state, rate if rate > 0 else None, click.echo)
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
