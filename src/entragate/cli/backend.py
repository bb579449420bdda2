"""Where grant commands go: the running agent through its API, or the store directly."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from entragate.config import Config
from entragate.logs import store_label

if TYPE_CHECKING:
    from entragate.grants.model import GrantRequest, RevokeRequest


@dataclass
class Backend:
    """Where grant commands go: the running agent (``client``) or the store (``service``)."""

    mode: str  # "agent" or "direct"
    where: str
    client: Any = None
    service: Any = None
    store: Any = None
    sessions: Any = None  # direct mode with revoke_sessions ACLs: a SessionRevoker

    def close(self) -> None:
        if self.sessions is not None:
            self._revoke_sessions()
        if self.store is not None:
            self.store.close()
        if self.client is not None:
            self.client.close()

    def _revoke_sessions(self) -> None:
        """Direct mode ends here, so the sessions of users whose access ended are revoked now
        (an agent does it on its own thread); what still fails is told, with its code."""
        import click

        left = self.sessions.drain(timeout=30.0)
        self.sessions.stop()
        for item in left:
            error = item.last_error
            why = f"{error.code}: {error.message}" if error else "not attempted in time"
            click.echo(f"entragate: warning: the grant ended, but the sessions of {item.user} were not "
                       f"revoked ({why})", err=True)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def grant(self, request: GrantRequest) -> dict[str, Any]:
        """The stored grant, as JSON."""
        if self.client is not None:
            result: dict[str, Any] = self.client.grant(request)
            return result
        return dict(self.service.submit_grant(request).to_json())

    def revoke(self, request: RevokeRequest) -> int:
        """How many grants ended."""
        if self.client is not None:
            return int(self.client.revoke(request)["ended"])
        return int(self.service.submit_revoke(request))

    def flush(self, acl: str) -> int:
        if self.client is not None:
            return int(self.client.flush(acl)["ended"])
        return int(self.service.flush(acl))

    def list(self, acl: str | None) -> builtins.list[dict[str, Any]]:
        if self.client is not None:
            return builtins.list(self.client.list(acl)["grants"])
        return [g.to_json() for g in self.service.list(acl)]


def open_backend(config: Config) -> Backend:
    """The agent when it answers and a token is available, else the store directly."""
    from entragate.agent_client import AgentClient, agent_url, agent_verify
    from entragate.api import find_api_token

    token = find_api_token(config)
    url = agent_url(config)
    client = AgentClient(url, token or "", verify=agent_verify(config))
    agent_up = client.reachable()  # /healthz needs no token
    if token and agent_up:
        return Backend("agent", url, client=client)
    client.close()
    from entragate.api import default_token_path
    from entragate.grants import StoreError, open_store
    from entragate.service import GrantService

    try:
        store = open_store(config.agent.store)
    except StoreError as exc:
        if agent_up and not token:
            raise StoreError(
                f"{exc}; the agent at {url} is running but its API token "
                f"({default_token_path(config)}) is not readable by this user, so this command "
                "cannot go through it either"
            ) from exc
        raise
    from entragate.graph.client import GraphClient
    from entragate.sessions import session_revoker

    sessions = (
        session_revoker(config, store, GraphClient(config))
        if any(acl.revoke_sessions for acl in config.acls.values())
        else None
    )
    return Backend(
        "direct", store_label(config.agent.store), service=GrantService(config, store), store=store,
        sessions=sessions,
    )


def via(backend: Backend) -> str:
    if backend.mode == "agent":
        return f"via the agent at {backend.where}"
    return f"stored directly in {backend.where}"
