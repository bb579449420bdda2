"""One tenant's half of a running agent (docs/design.md#tenants).

A :class:`TenantRuntime` is everything that is per tenant: the tenant's single-tenant
configuration (``Config.for_tenant``), its HTTP session, msal application and token
cache (inside its :class:`GraphClient`), its :class:`Pacer` (its own 1 request/second
and adaptive pace), its writer lease, its :class:`SyncEngine` (its own thread) over its
ACLs only, and its session revoker. The agent holds one per tenant with ACLs; they
share the grant store, the API and the process, and nothing else, so a tenant that
fails (bad secret, broken TLS path, throttled, hanging) only ever waits on its own
pacer and its own thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entragate.config import Config
from entragate.grants.lease import WriterLease
from entragate.grants.store import GrantStore
from entragate.graph.client import GraphClient
from entragate.metrics import Metrics, TenantMetrics
from entragate.sessions import SessionRevoker, session_revoker
from entragate.sync.engine import SyncEngine
from entragate.sync.pacer import Pacer
from entragate.transport import new_session


def build_graph(
    config: Config, pacer: Pacer, metrics: Metrics | TenantMetrics | None, env: Mapping[str, str] | None = None
) -> GraphClient:
    """A Graph client for ``config``'s tenant, paced by ``pacer``."""
    return GraphClient(
        config,
        new_session(config, env),
        before_request=pacer.acquire,
        on_response=metrics.graph_response if metrics is not None else None,
    )


class TenantRuntime:
    def __init__(
        self,
        config: Config,
        name: str,
        store: GrantStore,
        metrics: Metrics,
        *,
        env: Mapping[str, str] | None = None,
        lease: WriterLease | None = None,
        parked_retry: float = 60.0,
        backoff_cap: float = 32.0,
        standby_retry: float = 1.0,
    ) -> None:
        self.name = name
        self.config = config.for_tenant(name)
        self.metrics = metrics.for_tenant(name)
        self.pacer = Pacer(self.config.agent.rate)
        self.graph = build_graph(self.config, self.pacer, self.metrics, env)
        # One writer per tenant among the agents sharing this store (docs/design.md#lease).
        self.lease = lease or store.writer_lease(
            self.config.tenant_id, timeout=self.config.agent.lease_timeout
        )
        self.engine = SyncEngine(
            self.config, store, self.graph, self.pacer, metrics=self.metrics,
            parked_retry=parked_retry, backoff_cap=backoff_cap, lease=self.lease, standby_retry=standby_retry,
        )
        # Ended grants → revoked sessions, on a thread and pacer of its own (docs/design.md#sessions).
        self.sessions: SessionRevoker | None = session_revoker(self.config, store, self.graph)
        self._label_logs()

    def _label_logs(self) -> None:
        """Every event of this tenant's writer names the tenant: each part's bound logger
        gets ``tenant`` (the parts are the engine's, built with the single-tenant view)."""
        engine = self.engine
        parts: list[Any] = [engine, engine.role, engine.expiry, engine.failures, engine.location_writer,
                            engine.narrowing, self.sessions]
        for part in parts:
            if part is not None and hasattr(part, "log"):
                part.log = part.log.bind(tenant=self.name)

    def start(self) -> TenantRuntime:
        if self.sessions is not None:
            self.sessions.start()
        self.engine.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.engine.stop(timeout=timeout)
        if self.sessions is not None:
            self.sessions.stop()

    def failing(self) -> bool:
        """Whether the writer's last attempt at any location failed (status says why)."""
        return any(state.last_error is not None for states in self.engine.shards.values() for state in states)

    def status(self) -> dict[str, Any]:
        """The engine's status of this tenant, with who the tenant is."""
        result = self.engine.status()
        if self.sessions is not None:
            result["sessions"] = self.sessions.status()
        for acl in result.get("acls", {}).values():
            acl["tenant"] = self.name
        return {"tenant": self.name, "tenant_id": self.config.tenant_id, "cloud": self.config.cloud, **result}
