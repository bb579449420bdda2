"""``status``: the agent's sync state, or the stored grants without an agent."""

from __future__ import annotations

import builtins
import json
from typing import Any

import click

from entragate.cli.backend import open_backend
from entragate.cli.base import (
    json_option,
    json_wanted,
    load_cli_config,
    operation_errors,
    print_json,
)
from entragate.config import Config
from entragate.logs import printable


@click.command(
    epilog="Through the agent it shows, per ACL and named location, the ranges desired "
    "and applied, the last sync, the last error code and any throttling, and exits 1 "
    "while any location is failing or not in sync, or the grant store is down (0 otherwise), so a monitor can run it. "
    "Without a running agent it shows the stored grants only."
)
@json_option
@click.pass_context
def status(ctx: click.Context, json_flag: bool) -> None:
    """Show the agent's sync state (or, without an agent, the stored grants).

    Example:

    \b
      entragate status --json
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        if backend.mode == "agent":
            data: dict[str, Any] = {
                "mode": "agent",
                "agent": backend.where,
                **backend.client.status(),
            }
        else:
            grants = backend.list(None)
            data = {
                "mode": "direct",
                "store": backend.where,
                "note": "no running agent answered at "
                + _agent_where(config)
                + "; showing stored grants only",
                "acls": {
                    name: {
                        "location": acl.location,
                        "grants": [g for g in grants if g["acl"] == name],
                    }
                    for name, acl in config.acls.items()
                },
            }
    unsettled = _unsettled(data)
    if json_wanted(ctx, json_flag):
        print_json(data)
        if unsettled:
            ctx.exit(1)
        return
    if data["mode"] == "direct":
        click.echo(data["note"])
        for name, entry in data["acls"].items():
            click.echo(f"{name} ({entry['location']}): {len(entry['grants'])} active grant(s)")
            for g in entry["grants"]:
                click.echo(printable(f"  {g['cidr']}  {g['user']}  until {g['expires_at']}"))
        if not data["acls"]:
            click.echo("no ACLs configured")
        return
    click.echo(f"agent at {data['agent']}")
    _print_tree({k: v for k, v in data.items() if k not in ("mode", "agent")}, 0)
    if unsettled:
        click.echo(f"entragate: {len(unsettled)} location(s) failing or not in sync: "
                   + ", ".join(unsettled), err=True)
        ctx.exit(1)


def _unsettled(data: dict[str, Any]) -> list[str]:
    """The locations (of the agent's status) that fail or differ from the grants. A standby
    cannot tell (``in_sync`` null): only the writer reads Entra."""
    if data.get("mode") != "agent":
        return []
    found = []
    if data.get("store_unavailable"):
        found.append("the grant store (store_unavailable)")
    for acl in (data.get("acls") or {}).values():
        for location in acl.get("locations") or []:
            error = location.get("last_error")
            if error or location.get("in_sync") is False:
                found.append(f"{location.get('name')} ({error['code'] if error else 'pending'})")
    return found


def _agent_where(config: Config) -> str:
    from entragate.agent_client import agent_url

    return agent_url(config)


def _print_tree(value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | builtins.list) and item:
                click.echo(f"{pad}{printable(str(key))}:")
                _print_tree(item, depth + 1)
            else:
                click.echo(f"{pad}{printable(str(key))}: {_scalar(item)}")
    elif isinstance(value, builtins.list):
        for item in value:
            if isinstance(item, dict):
                first = True
                for key, sub in item.items():
                    lead = "- " if first else "  "
                    first = False
                    if isinstance(sub, dict | builtins.list) and sub:
                        click.echo(f"{pad}{lead}{key}:")
                        _print_tree(sub, depth + 2)
                    else:
                        click.echo(f"{pad}{lead}{key}: {_scalar(sub)}")
            else:
                click.echo(f"{pad}- {_scalar(item)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | builtins.list):
        return "none" if not value else json.dumps(value)
    return printable(str(value))
