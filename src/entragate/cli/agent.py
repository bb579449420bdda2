"""``run`` and ``sync``: the agent, and one reconcile."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable
from typing import Any

import click

from entragate.cli.base import (
    cli_state,
    fail,
    import_command,
    json_option,
    json_wanted,
    load_cli_config,
    operation_errors,
    print_json,
)
from entragate.config import Config


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the agent: the local HTTP API, the paced writer and the expiry scheduler.

    Serves until SIGTERM or Ctrl-C. SIGHUP (systemctl reload) reads the configuration
    again: a valid one takes over, an invalid one is logged and the running one kept.

    Example:

    \b
      entragate --config /etc/entragate/config.toml run
    """
    config = load_cli_config(ctx, require_credentials=True)
    run_agent: Callable[..., int | None] = import_command("entragate.agent", "run_agent", "run")
    path = cli_state(ctx)["config_path"]

    def reload() -> Config:
        from entragate.config import load_config

        return load_config(path or config.source, require_credentials=True)

    with operation_errors():
        try:
            code = run_agent(config, reload)
        except OSError as exc:
            fail(1, _os_error_text(exc, config))
    sys.exit(int(code or 0))


def _os_error_text(exc: OSError, config: Config) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (
            f"entragate: cannot listen on {config.agent.listen}: the address is in use; is "
            "another agent already running? (ss -ltnp shows who listens) Stop it, or set "
            "agent.listen to a free port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename is None:
        return (
            f"entragate: cannot listen on {config.agent.listen}: permission denied; use a "
            "port above 1023 in agent.listen"
        )
    where = f" {exc.filename}" if exc.filename else ""
    return f"entragate: cannot start the agent:{where}: {exc.strerror or exc}"


@click.command()
@click.option("--once", is_flag=True, help="Reconcile every ACL now and exit (required).")
@click.option("--dry-run", is_flag=True, help="Only print the plan; write nothing.")
@json_option
@click.pass_context
def sync(ctx: click.Context, once: bool, dry_run: bool, json_flag: bool) -> None:
    """Reconcile every ACL's named locations with the granted ranges once.

    Example:

    \b
      entragate sync --once --dry-run
    """
    if not once:
        fail(2, "entragate: sync runs once (sync --once); `entragate run` keeps syncing")
    config = load_cli_config(ctx, require_credentials=True)
    sync_once: Callable[..., dict[str, Any]] = import_command(
        "entragate.agent", "sync_once", "sync"
    )
    with operation_errors():
        result = sync_once(config, dry_run=dry_run)
    if json_wanted(ctx, json_flag):
        print_json(result)
        return
    _print_plan(result, dry_run)


def _print_plan(result: dict[str, Any], dry_run: bool) -> None:
    plan = result.get("plan", result)
    click.echo("plan (dry run: nothing written):" if dry_run else "plan:")
    if not isinstance(plan, dict) or not plan:
        click.echo("  nothing configured")
    for acl, entries in plan.items() if isinstance(plan, dict) else []:
        click.echo(f"  {acl}:")
        for entry in entries if isinstance(entries, builtins.list) else [entries]:
            if not isinstance(entry, dict):
                click.echo(f"    {entry}")
                continue
            add, remove = entry.get("add") or [], entry.get("remove") or []
            state = "" if entry.get("exists", True) else " (to be created)"
            if not add and not remove and not entry.get("write"):
                click.echo(f"    {entry.get('location')}{state}: in sync")
                continue
            click.echo(f"    {entry.get('location')}{state}: +{len(add)} -{len(remove)}")
            for r in add:
                click.echo(f"      + {r}")
            for r in remove:
                click.echo(f"      - {r}")
    if not dry_run and "writes" in result:
        click.echo(f"writes: {result['writes']}")
