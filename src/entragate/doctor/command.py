"""``entragate doctor``: the click command (registered lazily by entragate.cli)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from entragate.config import ConfigError, load_config
from entragate.doctor.runner import Report, config_error_report, run_doctor

_HELP = """Diagnose the path to Microsoft with the agent's exact configuration.

Checks, in order: config, proxy, dns, tcp, tls, clock, truststore, token,
permissions, locations, policies, throttling. `policies` warns when no enabled
Conditional Access policy uses a managed location (grants would change nothing).
When TLS verification fails it captures
the chain the server presented (without trusting it) and names the cause:
a TLS-inspecting proxy (and its product), a skewed clock, an expired or
misnamed certificate, a missing intermediate, or a missing/corrupt CA bundle,
with the fix for this operating system.

Exit status: 0 when no check failed, 1 when one did, 2 when the
configuration cannot be loaded.

Examples:

\b
  entragate doctor --config /etc/entragate/config.toml
  entragate doctor --json | jq '.checks[] | select(.status=="fail")'
"""


def _parent_option(ctx: click.Context, key: str) -> object:
    root = ctx.find_root()
    return root.obj.get(key) if isinstance(root.obj, dict) else None


def emit(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    from rich.console import Console

    from entragate.doctor.render import render

    render(report, Console(highlight=False, soft_wrap=False))


@click.command("doctor", help=_HELP, short_help="Find the root cause of a failure to reach Microsoft.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Configuration file (default: the global --config, $ENTRAGATE_CONFIG, "
    "/etc/entragate/config.toml, then ./entragate.toml).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (ok, code, checks).")
@click.option(
    "--os-release",
    "os_release",
    default="/etc/os-release",
    show_default=True,
    hidden=True,
    help="os-release file used to choose the fix commands.",
)
@click.pass_context
def doctor_command(ctx: click.Context, config_path: Path | None, as_json: bool, os_release: str) -> None:
    path = config_path or _parent_option(ctx, "config_path")
    as_json = as_json or bool(_parent_option(ctx, "json"))
    env = dict(os.environ)
    try:
        config = load_config(path if isinstance(path, str | Path) else None, env, require_credentials=False)
    except ConfigError as exc:
        emit(config_error_report(exc.problems, exc.source), as_json)
        sys.exit(2)
    report = run_doctor(config, env, os_release)
    emit(report, as_json)
    sys.exit(0 if report.ok else 1)
