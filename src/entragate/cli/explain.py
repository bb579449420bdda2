"""``explain``: print an error code's page."""

from __future__ import annotations

import click

from entragate.cli.base import fail


@click.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain an error code: what it means, common causes, how to fix it.

    Example:

    \b
      entragate explain ENTRA003
    """
    from entragate.errors.codes import Code, explain_text

    text = explain_text(code)
    if text is None:
        known = "\n".join(f"  {c}  {c.title}" for c in Code)
        fail(2, f"entragate: unknown error code {code!r}; the known codes are:\n{known}")
    click.echo(text.rstrip("\n"))
