"""The agent: grant store + pacing writer + expiry + local HTTP API, wired together."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from entragate.agent_client import AgentError
from entragate.api.server import ApiServer
from entragate.api.token import load_or_create_api_token
from entragate.config import Config, ConfigError
from entragate.grants import open_store
from entragate.grants.lease import WriterLease
from entragate.grants.store import GrantStore
from entragate.graph.client import GraphClient
from entragate.logs import configure_logging, get_logger, store_label
from entragate.metrics import Metrics
from entragate.private_files import config_file_exposure
from entragate.service import GrantService
from entragate.sessions import session_revoker
from entragate.sync.engine import SyncEngine
from entragate.sync.pacer import Pacer
from entragate.transport import new_session


def build_graph(config: Config, pacer: Pacer, metrics: Metrics | None, env: Mapping[str, str] | None = None) -> GraphClient:
    return GraphClient(
        config,
        new_session(config, env),
        before_request=pacer.acquire,
        on_response=metrics.graph_response if metrics is not None else None,
    )


class Agent:
    """Everything ``entragate run`` starts; tests start it in-process."""

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        store: GrantStore | None = None,
        parked_retry: float = 60.0,
        backoff_cap: float = 32.0,
        listen_port: int | None = None,
        lease: WriterLease | None = None,
        standby_retry: float = 1.0,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store = store or open_store(config.agent.store)
        self.pacer = Pacer(config.agent.rate)
        self.graph = build_graph(config, self.pacer, self.metrics, env)
        # One writer per tenant among the agents sharing this store (docs/design.md#lease).
        self.lease = lease or self.store.writer_lease(config.tenant_id)
        self.engine = SyncEngine(
            config, self.store, self.graph, self.pacer, metrics=self.metrics,
            parked_retry=parked_retry,
            backoff_cap=backoff_cap,
            lease=self.lease,
            standby_retry=standby_retry,
        )
        self.service = GrantService(config, self.store, on_change=self.engine.notify)
        # Ended grants → revoked sessions, on a thread and pacer of its own (docs/design.md#sessions).
        self.sessions = session_revoker(config, self.store, self.graph)
        self.token = load_or_create_api_token(config)
        self.api = ApiServer(
            config,
            self.service,
            token=self.token,
            status=self.status,
            ready=self.engine.ready,
            not_ready_reason=self.engine.not_ready_reason,
            alive=self.engine.alive,
            metrics=self.metrics,
            port=listen_port,
        )
        self.log = get_logger(component="agent")

    @property
    def api_url(self) -> str:
        return str(self.api.url)

    def status(self) -> dict[str, Any]:
        result = self.engine.status()
        if self.sessions is not None:
            result["sessions"] = self.sessions.status()
        return result

    def start(self) -> Agent:
        if self.sessions is not None:
            self.sessions.start()
        self.api.start()
        self.engine.start()
        self.log.info("agent.started", listen=self.api_url, acls=sorted(self.config.acls), store=store_label(self.config.agent.store))
        return self

    def stop(self) -> None:
        self.api.stop()
        self.engine.stop()
        if self.sessions is not None:
            self.sessions.stop()
        self.store.close()
        self.log.info("agent.stopped")

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_agent(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """``entragate run``: serve until SIGTERM or Ctrl-C; SIGHUP reloads the configuration.

    ``reload`` reads the configuration again (raising ConfigError when it is invalid):
    a valid one replaces the running agent (its grants are in the store, so nothing is
    lost; requests in that moment may be answered 503), an invalid one is logged,
    problem by problem, and the agent goes on with the old one.
    """
    configure_logging()
    exposure = config_file_exposure(Path(config.source)) if config.source else None
    if exposure:
        get_logger(component="agent").warning("config_not_private", path=config.source, message=exposure)
    agent = Agent(config)
    stopped = threading.Event()
    reload_wanted = threading.Event()
    log = get_logger(component="agent")

    def on_signal(signum: int, _frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if reload is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_wanted.set())
    agent.start()
    try:
        while not stopped.wait(0.25):
            if reload is None or not reload_wanted.is_set():
                continue
            reload_wanted.clear()
            try:
                new_config = reload()
            except ConfigError as exc:
                log.error("config.reload_failed", source=exc.source, problems=exc.problems,
                          note="kept the running configuration")
                continue
            agent.stop()
            try:
                agent = Agent(new_config).start()
            except Exception as exc:  # noqa: BLE001 - e.g. the new listen address is taken
                log.error("config.reload_failed", source=new_config.source, error=f"{type(exc).__name__}: {exc}",
                          note="went back to the previous configuration")
                agent = Agent(config).start()
                continue
            config = new_config
            log.info("config.reloaded", source=new_config.source)
    finally:
        agent.stop()
    return 0


def sync_once(config: Config, *, dry_run: bool = False, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``entragate sync --once``: read Entra, then write (or only show) what differs.

    Writing takes the tenant's writer lease like an agent does; while a running
    agent holds it, nothing is written (that agent reconciles continuously).
    """
    pacer = Pacer(config.agent.rate)
    store = open_store(config.agent.store)
    lease = None if dry_run else store.writer_lease(config.tenant_id)
    try:
        graph = build_graph(config, pacer, None, env)
        sessions = None if dry_run else session_revoker(config, store, graph)
        engine = SyncEngine(config, store, graph, pacer, parked_retry=3600.0, lease=lease)
        if lease is not None and not engine.acquire_writer():
            raise AgentError(
                "writer_busy",
                f"another agent is the writer for this tenant ({lease.why_not()}); "
                "it keeps Entra in sync: nothing was written (try --dry-run to see the plan)",
            )
        if not dry_run:
            # A dry run changes nothing, not even the store: active() already leaves
            # expired grants out of the plan.
            engine.expire_due()
            if sessions is not None:  # this process ends, so it revokes now (docs/design.md#sessions)
                sessions.drain(timeout=30.0)
                sessions.stop()
        if not engine.refresh_remote():
            _raise_first_error(engine)
        plan = engine.plan()
        result: dict[str, Any] = {"dry_run": dry_run, "plan": plan}
        if not dry_run:
            result["writes"] = engine.write_pending(limit=100)
            result["status"] = engine.status()
            _raise_first_error(engine)
        return result
    finally:
        if lease is not None:
            lease.release()
        pacer.stop()
        store.close()


def _raise_first_error(engine: SyncEngine) -> None:
    for states in engine.shards.values():
        for state in states:
            if state.last_error is not None:
                raise state.last_error
