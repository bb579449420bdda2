"""The agent: grant store + pacing writer + expiry + local HTTP API, wired together."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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
from entragate.logs import configure_logging, get_logger, store_label
from entragate.metrics import Metrics
from entragate.private_files import config_file_exposure
from entragate.service import GrantService
from entragate.sessions import session_revoker
from entragate.sync.engine import SyncEngine
from entragate.sync.pacer import Pacer
from entragate.systemd import Notifier
from entragate.tenant_runtime import TenantRuntime, build_graph
from entragate.tenant_status import agent_status

__all__ = ["Agent", "build_graph", "run_agent", "sync_once"]

#: the longest the sync loop is waited for; a Graph request still running then is abandoned
ENGINE_STOP = 6.0
#: after this many seconds of shutdown the process exits whatever still hangs (a frozen store)
EXIT_LIMIT = 9.0


class Agent:
    """Everything ``entragate run`` starts; tests start it in-process.

    One :class:`TenantRuntime` per tenant with ACLs (docs/design.md#tenants): its own
    Graph client and token cache, pacer, writer lease and writer thread. ``engine``,
    ``graph``, ``pacer``, ``lease`` and ``sessions`` are the first tenant's (the default
    one when it has ACLs): all there is in a single-tenant agent. ``lease`` given here
    is that tenant's.
    """

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
        names = config.serving_tenants()
        self.tenants: dict[str, TenantRuntime] = {
            name: TenantRuntime(
                config, name, self.store, self.metrics, env=env, lease=lease if i == 0 else None,
                parked_retry=parked_retry, backoff_cap=backoff_cap, standby_retry=standby_retry,
            )
            for i, name in enumerate(names)
        }
        first = self.tenants[names[0]]
        self.pacer, self.graph, self.lease, self.engine = first.pacer, first.graph, first.lease, first.engine
        self.sessions = first.sessions
        self.service = GrantService(config, self.store, on_change=self.notify)
        self.token = load_or_create_api_token(config)
        self.api = ApiServer(
            config,
            self.service,
            token=self.token,
            status=self.status,
            ready=self.ready,
            not_ready_reason=self.not_ready_reason,
            alive=self.alive,
            metrics=self.metrics,
            port=listen_port,
        )
        self.log = get_logger(component="agent")

    def runtime_of(self, acl: str) -> TenantRuntime | None:
        """The tenant runtime whose writer keeps ``acl``'s location."""
        known = self.config.acls.get(acl)
        return self.tenants.get(known.tenant) if known is not None else None

    def notify(self, acl: str) -> None:
        """A grant of ``acl`` changed: wake its tenant's writer (only it)."""
        runtime = self.runtime_of(acl)
        if runtime is not None:
            runtime.engine.notify()

    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> tuple[str, str] | None:
        """A single tenant: its writer's reason. Several: the store must answer, and each
        tenant's writer must have read its locations, unless its attempt failed (status
        shows why; the other tenants and the API go on: docs/design.md#tenants)."""
        if len(self.tenants) == 1:
            return self.engine.not_ready_reason()
        for name, runtime in self.tenants.items():
            reason = runtime.engine.not_ready_reason()
            if reason is None or (reason[0] == "not_ready" and runtime.failing()):
                continue
            return reason[0], f"tenant {name}: {reason[1]}"
        return None

    def alive(self) -> bool:
        return all(runtime.engine.alive() for runtime in self.tenants.values())

    @property
    def api_url(self) -> str:
        return str(self.api.url)

    def status(self) -> dict[str, Any]:
        return agent_status(self.tenants)

    def start(self) -> Agent:
        self.api.start()
        for runtime in self.tenants.values():
            runtime.start()
        self.log.info("agent.started", listen=self.api_url, acls=sorted(self.config.acls),
                      tenants=sorted(self.tenants), store=store_label(self.config.agent.store))
        return self

    def stop(self) -> None:
        """Shut down in order (docs/design.md#shutdown): the API drains while the sync
        loop ends its current Graph write and gives the lease back; the store closes
        only once no request can be answered any more."""
        self.api.begin_stop()
        stoppers = [
            threading.Thread(target=runtime.stop, kwargs={"timeout": ENGINE_STOP},
                             name=f"entragate-stop-{name}")
            for name, runtime in self.tenants.items()
        ]
        for stopper in stoppers:
            stopper.start()
        self.api.stop()
        for stopper in stoppers:
            stopper.join()
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
    problem by problem, and the agent goes on with the old one. Under systemd
    (``NOTIFY_SOCKET``) it reports readiness, reloads and stopping, and pings the
    watchdog while the sync loop lives (docs/design.md#shutdown).
    """
    configure_logging()
    exposure = config_file_exposure(Path(config.source)) if config.source else None
    if exposure:
        get_logger(component="agent").warning("config_not_private", path=config.source, message=exposure)
    agent = Agent(config)
    stopped = threading.Event()
    reload_wanted = threading.Event()
    log = get_logger(component="agent")
    notifier = Notifier()

    hard_stop: list[threading.Timer] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # Armed here, not after the loop: the main thread may be stuck in a start or a
        # reload that waits on a frozen store, and the process must still exit in time.
        if not stopped.is_set():
            stopped.set()
            hard_stop.append(_exit_in(EXIT_LIMIT))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if reload is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reload_wanted.set())
    agent.start()
    notifier.ready()
    # A lambda, not agent.alive: a reload replaces ``agent``, and the watchdog must follow it.
    notifier.start_watchdog(lambda: agent.alive())
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
            notifier.reloading()
            agent.stop()
            try:
                agent = Agent(new_config).start()
            except Exception as exc:  # noqa: BLE001 - e.g. the new listen address is taken
                log.error("config.reload_failed", source=new_config.source, error=f"{type(exc).__name__}: {exc}",
                          note="went back to the previous configuration")
                agent = Agent(config).start()
                notifier.ready()
                continue
            config = new_config
            notifier.ready()
            log.info("config.reloaded", source=new_config.source)
    finally:
        notifier.stopping()
        log.info("agent.stopping")
        if not hard_stop:  # an exception, not a signal, ended the loop
            hard_stop.append(_exit_in(EXIT_LIMIT))
        agent.stop()
        hard_stop[0].cancel()
        notifier.stop_watchdog()
    return 0


def _exit_in(seconds: float) -> threading.Timer:
    """Exit 0 after ``seconds`` unless cancelled: the orderly stop hangs on a frozen store
    or Graph, and every grant answered 201 is committed already (docs/design.md#shutdown)."""

    def give_up() -> None:
        get_logger(component="agent").warning(
            "agent.stop_abandoned", after_s=seconds,
            note="the store or a Graph request did not answer; exiting anyway, nothing acknowledged is lost",
        )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


def sync_once(config: Config, *, dry_run: bool = False, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``entragate sync --once``: read Entra, then write (or only show) what differs, for
    each tenant with ACLs in turn (docs/design.md#tenants).

    Writing takes the tenant's writer lease like an agent does; while a running
    agent holds it, nothing is written (that agent reconciles continuously).
    """
    names = config.serving_tenants()
    if len(names) == 1:
        return _sync_tenant(config.for_tenant(names[0]), dry_run=dry_run, env=env)
    results = {name: _sync_tenant(config.for_tenant(name), dry_run=dry_run, env=env) for name in names}
    merged: dict[str, Any] = {"dry_run": dry_run, "plan": {}}
    for result in results.values():
        merged["plan"].update(result["plan"])
    if not dry_run:
        merged["writes"] = sum(result["writes"] for result in results.values())
        merged["tenants"] = {name: result["status"] for name, result in results.items()}
    return merged


def _sync_tenant(config: Config, *, dry_run: bool, env: Mapping[str, str] | None) -> dict[str, Any]:
    """:func:`sync_once` of one tenant (``config`` is its single-tenant view)."""
    pacer = Pacer(config.agent.rate)
    store = open_store(config.agent.store)
    lease = None if dry_run else store.writer_lease(
        config.tenant_id, timeout=config.agent.lease_timeout
    )
    try:
        graph = build_graph(config, pacer, None, env)
        sessions = None if dry_run else session_revoker(config, store, graph)
        engine = SyncEngine(config, store, graph, pacer, parked_retry=3600.0, lease=lease)
        if lease is not None and not engine.acquire_writer():
            raise AgentError(
                "writer_busy",
                f"another agent is the writer for tenant {config.tenant_name} ({lease.why_not()}); "
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
