"""``why``: did the user's grant work for the sign-in it was meant for, and if not, why."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from entragate.cli.base import (
    UsageFailure,
    json_option,
    json_wanted,
    load_cli_config,
    operation_errors,
    print_json,
)

if TYPE_CHECKING:
    from entragate.why.analysis import Explanation

EPILOG = (
    "Reads the user's newest sign-ins from Microsoft Graph (auditLogs/signIns: needs the "
    "application permission AuditLog.Read.All and an Entra ID P1/P2 licence; Policy.Read.All "
    "shows which policy applied), compares each address and time with the user's grants, and "
    "ends with one verdict and its next step (docs/why.md lists them). Sign-in logs can lag by "
    "minutes. Exit 0 when it could explain, 1 when Graph could not be read, 2 for bad input."
)


@click.command(epilog=EPILOG)
@click.argument("user")
@click.option("--acl", default=None, help="Only this access list (default: every ACL).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 100),
              help="How many of the newest sign-ins to read.")
@json_option
@click.pass_context
def why(ctx: click.Context, user: str, acl: str | None, top: int, json_flag: bool) -> None:
    """Explain why USER (a UPN or object id) can or cannot sign in through a grant.

    Example:

    \b
      entragate why alice@contoso.com --acl staff
    """
    config = load_cli_config(ctx, require_credentials=True)
    with operation_errors():
        from entragate.cli.backend import open_backend
        from entragate.grants.model import Grant
        from entragate.graph.directory import is_directory_user
        from entragate.why.gather import gather

        if not is_directory_user(user):
            raise UsageFailure(
                f"invalid_user: {user!r} is neither a user principal name (alice@contoso.com) nor an "
                "object id: Graph finds sign-ins only by those"
            )
        if acl is not None and acl not in config.acls:
            raise UsageFailure(f"unknown_acl: acl {acl!r} is not configured (known: {', '.join(sorted(config.acls))})")
        with open_backend(config) as backend:
            grants = [Grant.from_json(g) for g in backend.list(None)]
        explanation = gather(config, user, grants, acl, top=top)
    if json_wanted(ctx, json_flag):
        print_json(explanation.to_json())
        return
    render(explanation)


def render(explanation: Explanation, echo: Callable[[str], Any] = click.echo) -> None:
    """The human form: the grants, one line per sign-in, the verdict and the next step."""
    from entragate.grants.model import rfc3339
    from entragate.logs import printable

    e = explanation
    echo(printable(f"why {e.user} (acl {', '.join(e.acls) or '-'})"))
    if e.grants:
        echo("grants:")
        for g in e.grants:
            echo(printable(f"  {g.cidr}  in {g.acl}  stored {rfc3339(g.created_at)}  until {rfc3339(g.expires_at)}"))
    else:
        echo("grants: none active")
    echo("sign-ins, newest first:" if e.findings else "sign-ins: none logged")
    for f in e.findings:
        s = f.sign_in
        result = "ok" if s.succeeded else f"failed {s.error_code}"
        policies = "; ".join(f"{p.display_name} ({p.result})" for p in s.policies if p.result != "notApplied")
        echo(printable(
            f"  {rfc3339(s.created)}  {s.ip_address}  {s.app or '-'}  {result}  CA {s.ca_status or '-'}"
            f"  {f.coverage.replace('_', ' ')}" + (f"  [{policies}]" if policies else "")
        ))
    echo(printable(f"verdict: {e.verdict.id}: {e.verdict.summary}"))
    echo(printable(f"next: {e.verdict.next_step}"))
    for note in e.notes:
        echo(printable(f"note: {note}"))
