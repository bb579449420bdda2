"""``entragate config check``: validate the configuration and stop (docs/configuration.md)."""

from __future__ import annotations

import click

from entragate.cli.base import CONTEXT_SETTINGS, cli_state, fail, json_wanted, print_json
from entragate.config import ConfigError, load_config


@click.group("config", context_settings=CONTEXT_SETTINGS)
def config_group() -> None:
    """Check the configuration file.

    Example:

    \b
      entragate --config /etc/entragate/config.toml config check
    """


@config_group.command("check", context_settings=CONTEXT_SETTINGS)
@click.option("--json", "json_flag", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def check(ctx: click.Context, json_flag: bool) -> None:
    """Validate every key, type, range and file of the configuration, and stop.

    Prints every problem at once, one line each naming the file and the key, and
    exits 2; exits 0 when the agent could start with this configuration. Nothing is
    sent to Microsoft (that is `entragate doctor`).

    Example:

    \b
      entragate --config /etc/entragate/config.toml config check
    """
    as_json = json_wanted(ctx, json_flag)
    try:
        config = load_config(cli_state(ctx)["config_path"], require_credentials=True)
    except ConfigError as exc:
        if as_json:
            print_json({"ok": False, "file": exc.source, "problems": exc.problems})
            raise SystemExit(2) from None
        fail(2, *exc.report())
    if as_json:
        print_json({"ok": True, "file": config.source, "problems": [], "acls": sorted(config.acls)})
        return
    acls = ", ".join(sorted(config.acls)) or "none"
    click.echo(f"entragate: {config.source or '(environment)'}: OK (ACLs: {acls})")
