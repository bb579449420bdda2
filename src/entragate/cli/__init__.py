"""The ``entragate`` command line: one module per command group (docs/design.md#cli).

Grant commands talk to a running agent through its API when ``agent.listen`` answers
and its token is readable, and otherwise work on the grant store directly (a running
agent notices the change within a second). ``doctor`` is loaded only when used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from entragate import __version__
from entragate.cli import agent, explain, grants, script, status, token, tools, why
from entragate.cli import config as config_commands
from entragate.cli.base import CONTEXT_SETTINGS, LazyGroup, config_option

__all__ = ["main"]


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@config_option(
    "Configuration file (default: $ENTRAGATE_CONFIG, /etc/entragate/config.toml, "
    "then ./entragate.toml). Every key can be set as ENTRAGATE_<KEY>."
)
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print data as JSON (same as each command's --json).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show informational log events on stderr.")
@click.version_option(__version__, prog_name="entragate")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, json_output: bool, verbose: bool) -> None:
    """Just-in-time IP allowlisting for Microsoft Entra ID named locations.

    Grant an address to a user for a while; entragate keeps the ACL's IP named
    location equal to the granted addresses and removes each when its grant ends.

    Example:

    \b
      entragate --config /etc/entragate/config.toml grant 81.2.69.142 --acl staff --user alice --ttl 8h
    """
    ctx.obj = {"config_path": config_path, "json": json_output, "verbose": verbose}
    from entragate.logs import configure_logging

    configure_logging(level=logging.INFO if verbose else logging.WARNING)


for _command in (
    grants.grant,
    grants.revoke,
    grants.flush,
    grants.list_,
    status.status,
    why.why,
    script.script,
    explain.explain,
    agent.run,
    agent.sync,
    tools.emulator,
    tools.demo,
    token.token,
    config_commands.config_group,
):
    main.add_command(_command)
