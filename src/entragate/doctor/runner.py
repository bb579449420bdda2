"""Run every doctor check with the agent's exact configuration (docs/design.md#doctor).

Independent work runs concurrently: one probe per Microsoft host (proxy, DNS,
TCP, verified TLS, Date), the trust-store inspection and the token request.
The Graph read follows the token.  Every network operation is bounded by the
configured ``timeout`` and the whole run by ``timeout`` plus a small margin:
work still running at the deadline is reported as ENTRA004 and abandoned on
daemon threads (they end by themselves at their own socket timeouts).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from entragate.config import Config
from entragate.doctor.causes import Cause
from entragate.doctor.checks import (
    CHECK_IDS,
    FAIL,
    SKIP,
    CheckResult,
    HostProbe,
    check_clock,
    check_config,
    check_dns,
    check_locations,
    check_permissions,
    check_policies,
    check_proxy,
    check_tcp,
    check_throttling,
    check_tls,
    check_truststore,
    graph_error_result,
    load_expected_roots,
    probe_host,
    token_result,
)
from entragate.doctor.checks.identity import decode_jwt_payload
from entragate.doctor.osfix import OsInfo, read_os_release
from entragate.doctor.truststore import TrustStoreReport, inspect_trust
from entragate.errors import Code, EntraError, Throttled, classify_exception

if TYPE_CHECKING:
    from entragate.transport import EntraSession

T = TypeVar("T")

#: How far past ``timeout`` the whole run may go (thread start-up, rendering).
DEADLINE_MARGIN = 1.5


@dataclass
class Report:
    checks: list[CheckResult]
    os_info: OsInfo | None = None
    config_source: str | None = None
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    @property
    def first_failure(self) -> CheckResult | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    @property
    def code(self) -> str | None:
        first = self.first_failure
        if first is None:
            return None
        if first.code is not None:
            return first.code
        return next((c.code for c in self.checks if c.status == FAIL and c.code), None)

    def check(self, check_id: str) -> CheckResult:
        return next(c for c in self.checks if c.id == check_id)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "checks": [c.to_json() for c in self.checks]}


class _DaemonPool:
    """``submit`` → ``Future`` on a daemon thread: like a ThreadPoolExecutor whose stuck
    workers never delay the process's exit (a hung endpoint is abandoned, not joined)."""

    def submit(self, fn: Callable[[], T], name: str) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                future.set_exception(exc)

        threading.Thread(target=work, name=f"doctor-{name}", daemon=True).start()
        return future


def _wait(future: Future[Any], deadline: float) -> tuple[Any, BaseException | None, bool]:
    """(value, error, timed_out) waiting at most until ``deadline`` (monotonic)."""
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic())), None, False
    except FutureTimeout:
        return None, None, True
    except BaseException as exc:  # noqa: BLE001
        return None, exc, False


def _skip(check_id: str, why: str) -> CheckResult:
    return CheckResult(check_id, SKIP, why)


#: The checks of the path to a host; the first that failed explains a later skip.
_PATH_CHECKS = ("proxy", "dns", "tcp", "tls")


def _failed_path_check(results: Mapping[str, CheckResult]) -> str | None:
    return next((c for c in _PATH_CHECKS if results[c].status == FAIL), None)


def config_error_report(problems: list[str], source: str | None) -> Report:
    """A report for a configuration that cannot even be loaded."""
    cause_list = [Cause("config_invalid", p) for p in problems]
    first = CheckResult(
        "config",
        FAIL,
        f"the configuration{' in ' + source if source else ''} is invalid: {problems[0] if problems else ''}",
        code=None,
        causes=cause_list,
        fix=[f"fix: {p}" for p in problems],
    )
    rest = [_skip(cid, "not run: the configuration is invalid") for cid in CHECK_IDS[1:]]
    return Report([first, *rest], config_source=source)


def run_doctor(
    config: Config,
    env: Mapping[str, str] | None = None,
    os_release_path: str = "/etc/os-release",
    *,
    now: Callable[[], datetime] | None = None,
) -> Report:
    """Every check, in the order of CHECK_IDS, bounded by ``config.timeout`` + a small margin."""
    from entragate.transport import new_session

    started = time.monotonic()
    clock = now or (lambda: datetime.now(UTC))
    env_map = dict(os.environ if env is None else env)
    timeout = float(config.timeout)
    deadline = started + timeout + DEADLINE_MARGIN
    os_info = read_os_release(os_release_path)
    expected_roots, expected_error = load_expected_roots(config)
    hosts = list(dict.fromkeys([config.login_host, config.graph_host]))

    results: dict[str, CheckResult] = {}
    results["config"] = check_config(config, now=clock(), expected_roots_error=expected_error)

    session = new_session(config, env_map)
    trust_source = session.trust
    pool = _DaemonPool()

    # --- independent work, concurrently
    probe_futures = {
        host: pool.submit(
            lambda h=host: probe_host(config, env_map, h, session.ssl_context, timeout=timeout),  # type: ignore[misc]
            f"probe-{host}",
        )
        for host in hosts
    }
    trust_future: Future[TrustStoreReport] = pool.submit(
        lambda: inspect_trust(
            trust_source.cafile, trust_source.capath, trust_source.origin, expected_roots=expected_roots
        ),
        "truststore",
    )
    graph: dict[str, Any] = {}
    graph_future = _start_graph(config, session, pool, graph, deadline)

    # --- probes
    probes = [_probe_result(host, fut, deadline) for host, fut in probe_futures.items()]
    trust_value, trust_error, _ = _wait(trust_future, deadline)
    trust = trust_value or inspect_trust(None, None, "system", expected_roots=expected_roots)
    if trust_error is not None:  # pragma: no cover - inspect_trust does not raise
        trust.problem = f"inspection failed: {trust_error}"

    results["proxy"] = check_proxy(probes, hosts)
    results["dns"] = check_dns(probes)
    results["tcp"] = check_tcp(probes)
    results["tls"] = check_tls(
        probes, trust=trust, expected_roots=expected_roots, os_info=os_info, hosts=hosts, now=clock()
    )
    results["clock"] = check_clock(probes, os_info=os_info, tls=results["tls"])
    results["truststore"] = check_truststore(trust, env=env_map, os_info=os_info, tls=results["tls"])

    # --- token
    if graph_future is not None:
        _wait(graph_future, deadline)
    graph = dict(graph)  # a snapshot: an abandoned job may still write to the original
    login_probe = next((p for p in probes if p.host == config.login_host), None)
    login_ok = login_probe is not None and login_probe.verified
    results["token"] = _token_check(
        config, graph, attempted=graph_future is not None, login_ok=login_ok, results=results, os_info=os_info
    )

    # --- permissions, locations, throttling
    results.update(_graph_checks(config, graph, results))

    report = Report(
        [results[cid] for cid in CHECK_IDS],
        os_info=os_info,
        config_source=config.source,
        elapsed=time.monotonic() - started,
    )
    report.extra["trust"] = trust.to_json()
    report.extra["hosts"] = hosts
    return report


def _start_graph(
    config: Config, session: EntraSession, pool: _DaemonPool, graph: dict[str, Any], deadline: float
) -> Future[None] | None:
    """Token, then one Graph read, on their own thread, writing what happened into ``graph``;
    None when the configuration lacks what a token request needs.

    The token only ever goes to the token endpoint over the agent's verified TLS.
    """
    has_credential = bool(config.tenant_id and config.client_id) and (
        config.client_secret is not None or config.client_certificate is not None
    )
    if not has_credential:
        return None
    from entragate.graph.client import GraphClient
    from entragate.graph.identity import TokenProvider

    tokens = TokenProvider(config, session)
    client = GraphClient(config, session, tokens)

    def read_once_more_if_throttled(key: str, read: Callable[[], object], margin: float) -> bool:
        """``graph[key] = read()``; a 429 is tried once more after 1.5 s while ``margin``
        seconds remain. The tenant's ~1 request/s is shared by every app: one 429 is
        ordinary, so the doctor reports throttling only when it persists."""
        for attempt in range(2):
            try:
                graph[key] = read()
                graph.pop(f"{key}_error", None)
                return True
            except Throttled as exc:
                graph[f"{key}_error"] = exc
                if attempt == 0 and deadline - time.monotonic() > margin:
                    time.sleep(1.5)
                    continue
                return False
            except BaseException as exc:  # noqa: BLE001 - reported by its check
                graph[f"{key}_error"] = exc
                return False
        return False

    def graph_job() -> None:
        try:
            graph["token"] = tokens.access_token()
        except BaseException as exc:  # noqa: BLE001 - reported by the token check
            graph["token_error"] = exc
            return
        graph["list_started"] = True
        if not read_once_more_if_throttled("locations", client.list_locations, 2.0):
            return
        # The policies check: do the policies make the grants matter?
        read_once_more_if_throttled("policies", client.list_policies, 2.5)

    return pool.submit(graph_job, "graph")


def _probe_result(host: str, future: Future[HostProbe], deadline: float) -> HostProbe:
    """The probe of ``host``, or a failed one when it raised or outran the deadline."""
    probe, error, timed_out = _wait(future, deadline)
    if probe is not None:
        return probe
    p = HostProbe(host=host, stage="tcp", timed_out=timed_out, error=error or TimeoutError("doctor deadline"))
    p.entra = classify_exception(p.error or TimeoutError(), host=host, operation="doctor probe")
    return p


def _token_check(
    config: Config,
    graph: Mapping[str, Any],
    *,
    attempted: bool,
    login_ok: bool,
    results: Mapping[str, CheckResult],
    os_info: OsInfo,
) -> CheckResult:
    timeout = float(config.timeout)
    if not attempted:
        return _skip("token", "not attempted: tenant_id, client_id or a credential is missing (see config)")
    if graph.get("token") is not None:
        return token_result(None, host=config.login_host, timed_out=False, timeout=timeout, os_info=os_info)
    if not login_ok:
        failed = _failed_path_check(results) or "tls"
        return _skip("token", f"not attempted: {config.login_host} is unreachable (see {failed})")
    if "token_error" in graph:
        error = graph["token_error"]
        err = error if isinstance(error, EntraError) else classify_exception(
            error, host=config.login_host, operation="token request"
        )
        return token_result(err, host=config.login_host, timed_out=False, timeout=timeout, os_info=os_info)
    return token_result(None, host=config.login_host, timed_out=True, timeout=timeout, os_info=os_info)


def _graph_checks(
    config: Config, graph: Mapping[str, Any], results: Mapping[str, CheckResult]
) -> dict[str, CheckResult]:
    """The permissions, locations and throttling results, from the token and the Graph read."""
    access_token: str | None = graph.get("token")
    if access_token is None:
        return {
            "permissions": _skip("permissions", "no access token (see token)"),
            "locations": _skip("locations", "no access token (see token)"),
            "policies": _skip("policies", "no access token (see token)"),
            "throttling": _skip("throttling", "no Graph request was made (see token)"),
        }
    revoke = any(acl.revoke_sessions for acl in config.acls.values())
    out = {"permissions": check_permissions(access_token, revoke_sessions=revoke)}
    graph_error: EntraError | None = None
    if "locations" in graph:
        out["locations"] = check_locations(config, graph["locations"])
        out["policies"] = _policies_check(config, graph, access_token)
    else:
        out["policies"] = _skip("policies", "the named locations could not be read (see locations)")
        if "locations_error" in graph:
            error = graph["locations_error"]
            graph_error = error if isinstance(error, EntraError) else classify_exception(
                error, host=config.graph_host, operation="list named locations"
            )
        else:
            graph_error = classify_exception(
                TimeoutError("doctor deadline"), host=config.graph_host, operation="list named locations"
            )
        failed = _failed_path_check(results)
        if graph_error.code == Code.ENTRA002:
            if out["permissions"].status != FAIL:
                out["permissions"] = graph_error_result("permissions", graph_error, host=config.graph_host)
            out["locations"] = _skip("locations", "Graph refused the read (see permissions)")
        elif graph_error.code == Code.ENTRA005:
            out["locations"] = _skip("locations", "Graph throttled the read (see throttling)")
        elif graph_error.code in (Code.ENTRA000, Code.ENTRA003, Code.ENTRA009) and failed is not None:
            out["locations"] = _skip("locations", f"{config.graph_host} is unreachable (see {failed})")
        else:
            out["locations"] = graph_error_result("locations", graph_error, host=config.graph_host)
    out["throttling"] = check_throttling(config, graph_error, 1)
    if graph_error is not None and graph_error.code != Code.ENTRA005:
        out["throttling"] = _skip("throttling", "the Graph read failed (see locations)")
    return out


def _policies_check(config: Config, graph: Mapping[str, Any], access_token: str) -> CheckResult:
    if "policies" in graph:
        policies: list[dict[str, Any]] | EntraError = graph["policies"]
    elif "policies_error" in graph:
        error = graph["policies_error"]
        policies = error if isinstance(error, EntraError) else classify_exception(
            error, host=config.graph_host, operation="list Conditional Access policies"
        )
    else:
        return _skip("policies", "the doctor's deadline passed before the policies were read")
    oid = decode_jwt_payload(access_token).get("oid")
    return check_policies(config, graph["locations"], policies, oid if isinstance(oid, str) else None)
