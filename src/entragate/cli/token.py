"""``token new``: a bearer token strong enough for the agent's API."""

from __future__ import annotations

import click


@click.group()
def token() -> None:
    """API tokens for the agent (agent.api_token / agent.api_token_file).

    Example:

    \b
      entragate token new
    """


@token.command("new")
def new() -> None:
    """Print a new random API token (32 random bytes, URL-safe base64: 256 bits).

    The agent refuses a token shorter than 32 characters or with less than 128 bits
    of randomness. Keep the token in a file only the agent's user can read.

    Example:

    \b
      (umask 077; entragate token new > /etc/entragate/api-token)
      # then, in the configuration: [agent] api_token_file = "/etc/entragate/api-token"
    """
    from entragate.api.token import new_api_token

    click.echo(new_api_token())
