"""``grant``, ``revoke``, ``flush`` and ``list``: the grant commands."""

from __future__ import annotations

import builtins
from typing import Any

import click

from entragate.cli.backend import open_backend, via
from entragate.cli.base import (
    MODE_HELP,
    json_option,
    json_wanted,
    load_cli_config,
    operation_errors,
    print_json,
)
from entragate.grants.model import GrantRequest, RevokeRequest
from entragate.logs import printable


@click.command(epilog=MODE_HELP)
@click.argument("ip")
@click.option("--acl", required=True, help="Access list ([acl.NAME] in the configuration).")
@click.option("--user", required=True, help="Who holds the grant.")
@click.option(
    "--ttl",
    required=True,
    help="How long: seconds or a duration such as 90m, 8h, 7d (at most agent.max_ttl).",
)
@click.option("--note", default="", help="Free text stored with the grant.")
@json_option
@click.pass_context
def grant(
    ctx: click.Context, ip: str, acl: str, user: str, ttl: str, note: str, json_flag: bool
) -> None:
    """Grant IP (an address or CIDR) to a user in an ACL for a while.

    Granting the same address to the same user again sets its new expiry.

    Example:

    \b
      entragate grant 81.2.69.142 --acl staff --user alice --ttl 8h --note "on call"
    """
    config = load_cli_config(ctx)
    with operation_errors():
        request = GrantRequest.parse(
            {"acl": acl, "ip": ip, "user": user, "ttl": ttl, "note": note},
            durations=True,
            default_source="cli",
        )
        with open_backend(config) as backend:
            result = backend.grant(request)
    if json_wanted(ctx, json_flag):
        print_json(result)
    else:
        click.echo(
            f"granted {result['cidr']} to {result['user']} in {result['acl']} until "
            f"{result['expires_at']} ({via(backend)})"
        )


@click.command(epilog=MODE_HELP)
@click.argument("ip")
@click.option("--acl", required=True, help="Access list.")
@click.option("--user", default=None, help="End only this user's grant (default: every holder's).")
@json_option
@click.pass_context
def revoke(ctx: click.Context, ip: str, acl: str, user: str | None, json_flag: bool) -> None:
    """End the grants of IP in an ACL (of one user, or of every holder).

    Revoking an address that holds no grant succeeds and ends nothing.

    Example:

    \b
      entragate revoke 81.2.69.142 --acl staff --user alice
    """
    config = load_cli_config(ctx)
    with operation_errors():
        request = RevokeRequest.parse({"acl": acl, "ip": ip, "user": user})
        with open_backend(config) as backend:
            ended = backend.revoke(request)
    if json_wanted(ctx, json_flag):
        print_json({"ended": ended})
    else:
        click.echo(
            f"ended {ended} grant{'s' if ended != 1 else ''} of {ip} in {acl} ({via(backend)})"
        )


@click.command(epilog=MODE_HELP)
@click.option("--acl", required=True, help="Access list to empty.")
@json_option
@click.pass_context
def flush(ctx: click.Context, acl: str, json_flag: bool) -> None:
    """End every grant of an ACL.

    Example:

    \b
      entragate flush --acl staff
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        ended = backend.flush(acl)
    if json_wanted(ctx, json_flag):
        print_json({"ended": ended})
    else:
        click.echo(f"ended {ended} grant{'s' if ended != 1 else ''} in {acl} ({via(backend)})")


@click.command("list", epilog=MODE_HELP)
@click.option("--acl", default=None, help="Only this access list.")
@json_option
@click.pass_context
def list_(ctx: click.Context, acl: str | None, json_flag: bool) -> None:
    """List active grants.

    Example:

    \b
      entragate list --acl staff --json
    """
    config = load_cli_config(ctx)
    with operation_errors(), open_backend(config) as backend:
        grants = backend.list(acl)
    if json_wanted(ctx, json_flag):
        print_json({"grants": grants})
        return
    _print_grants(grants)


def _print_grants(grants: builtins.list[dict[str, Any]]) -> None:
    if not grants:
        click.echo("no active grants")
        return
    headers = ("ACL", "CIDR", "USER", "EXPIRES", "SOURCE", "NOTE")
    rows = [
        tuple(
            printable(str(v))
            for v in (
                g["acl"],
                g["cidr"],
                g["user"],
                g["expires_at"],
                g.get("source", ""),
                g.get("note", ""),
            )
        )
        for g in grants
    ]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, str(row[-1])]).rstrip())
