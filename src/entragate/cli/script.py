"""``script``: the Knocknoc Custom Script contract (add, del, flush)."""

from __future__ import annotations

import os

import click

from entragate.cli.backend import open_backend
from entragate.cli.base import MODE_HELP, UsageFailure, cli_state, fail, operation_errors
from entragate.config import ConfigError, load_config
from entragate.grants.model import GrantRequest, RevokeRequest, canonical_user


@click.command(
    epilog="Knocknoc runs a Custom Script as SCRIPT ACTION ACL [IP]; point it at a two-line "
    'wrapper such as:  #!/bin/sh  exec /usr/local/bin/entragate script "$@".  '
    "Grants are held by the user named in $KNOCKNOC_USER (default: knocknoc) with source "
    "'knocknoc'; 'add' uses agent.script_ttl as a safety expiry in case a 'del' never "
    "comes; 'flush' ends that user's grants in the ACL and leaves grants made by others. "
    + MODE_HELP
)
@click.argument("action", type=click.Choice(["add", "del", "flush"]))
@click.argument("acl")
@click.argument("ip", required=False)
@click.pass_context
def script(ctx: click.Context, action: str, acl: str, ip: str | None) -> None:
    """The Knocknoc Custom Script contract: add, del or flush an address in an ACL.

    Idempotent: adding an address already granted renews it, deleting one that is
    not granted succeeds. Exit 0 on success; otherwise non-zero with one line on stderr.

    Example:

    \b
      entragate script add staff 81.2.69.142
      entragate script del staff 81.2.69.142
      entragate script flush staff
    """
    try:
        config = load_config(cli_state(ctx)["config_path"], require_credentials=False)
    except ConfigError as exc:
        fail(2, "; ".join(exc.lines()))
    user = os.environ.get("KNOCKNOC_USER", "").strip() or "knocknoc"
    with operation_errors(one_line=True):
        if action in ("add", "del") and not ip:
            raise UsageFailure(f"script {action} needs an IP address: script {action} ACL IP")
        user = canonical_user(user)  # as stored, so flush finds this user's grants
        ttl = min(config.agent.script_ttl, config.agent.max_ttl)  # a safety expiry
        fields = {"acl": acl, "ip": ip, "user": user}
        with open_backend(config) as backend:
            if action == "add":
                request = GrantRequest.parse({**fields, "ttl": ttl, "source": "knocknoc"})
                result = backend.grant(request)
                click.echo(f"ok: {result['cidr']} granted in {acl} until {result['expires_at']}")
            elif action == "del":
                ended = backend.revoke(RevokeRequest.parse(fields))
                click.echo(f"ok: {ip} removed from {acl} ({ended} grant(s) ended)")
            else:
                ended = 0
                for g in backend.list(acl):
                    if g["user"] == user:
                        ended += backend.revoke(RevokeRequest.parse({**fields, "ip": g["cidr"]}))
                click.echo(f"ok: {acl} flushed ({ended} grant(s) of {user} ended)")
