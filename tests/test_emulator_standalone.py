"""``entragate emulator`` for people: state kept across restarts, faults at start and at
run time through the control endpoint, a chain of one's own (docs/emulator.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from entragate.cli import main
from entragate.emulator import ALL_HOSTS, EmulatorFault, parse_fault, pki, serve_forever
from tests.helpers.emulator import MappedAdapter, client_context, tls_handshake, verify_code
from tests.helpers.servers import free_port
from tests.helpers.sync import wait_for

GRAPH = "https://graph.microsoft.com/v1.0/identity/conditionalAccess/namedLocations"


@dataclass
class Running:
    port: int
    control: str
    lines: list[str]
    state: Path
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def value(self, label: str) -> str:
        return next(line.split()[1] for line in self.lines if line.startswith(label))

    def session(self, ca: Path | None = None) -> requests.Session:
        session = requests.Session()
        mapping = {(h, 443): ("127.0.0.1", self.port) for h in ALL_HOSTS}
        session.mount("https://", MappedAdapter(mapping, ca or self.state / "ca-bundle.pem"))
        return session

    def token(self, session: requests.Session) -> str:
        answer = session.post(
            f"https://login.microsoftonline.com/{self.value('tenant_id')}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": self.value("client_id"),
                  "client_secret": self.value("client_secret"),
                  "scope": "https://graph.microsoft.com/.default"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def graph(self, session: requests.Session, method: str = "GET", **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(session)}"}
        return session.request(method, GRAPH, headers=headers, timeout=10, **kw)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    running: list[Running] = []

    def start_one(state: Path | None = None, **options: Any) -> Running:
        port, control = free_port(), free_port()
        run = Running(port, f"http://127.0.0.1:{control}", [], state or tmp_path / "state")
        run.state.mkdir(exist_ok=True)
        run.thread = threading.Thread(
            target=serve_forever,
            args=("127.0.0.1", port, run.state, None, run.lines.append),
            kwargs={"stop_event": run.stop, "control": ("127.0.0.1", control), **options},
            daemon=True,
        )
        run.thread.start()
        assert wait_for(lambda: any(line.startswith("Press Ctrl-C") for line in run.lines), 30), run.lines
        running.append(run)
        return run

    def stop(run: Running) -> None:
        run.stop.set()
        assert run.thread is not None
        run.thread.join(15)

    start_one.stop = stop  # type: ignore[attr-defined]
    yield start_one
    for run in running:
        stop(run)


def test_state_survives_a_restart(start: Any, tmp_path: Path) -> None:
    first = start(persist=True)
    session = first.session()
    created = first.graph(session, "POST", json={
        "@odata.type": "#microsoft.graph.ipNamedLocation", "displayName": "Entragate staff",
        "isTrusted": False, "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange",
                                          "cidrAddress": "81.2.69.142/32"}]})
    assert created.status_code == 201, created.text
    tenant = first.value("tenant_id")
    policy = requests.post(f"{first.control}/policies", json={
        "tenant_id": tenant, "display_name": "block unless granted",
        "exclude_locations": [created.json()["id"]]}, timeout=10)
    assert policy.status_code == 201
    start.stop(first)
    assert (first.state / "tenants.json").stat().st_mode & 0o077 == 0  # it holds secrets

    second = start(state=first.state, persist=True)
    assert second.value("tenant_id") == tenant and "(restored from" in " ".join(second.lines)
    assert second.value("client_secret") == first.value("client_secret")
    listed = second.graph(second.session()).json()["value"]
    assert [(loc["displayName"], loc["ipRanges"][0]["cidrAddress"]) for loc in listed] == [
        ("Entragate staff", "81.2.69.142/32")
    ]
    state = requests.get(f"{second.control}/state", timeout=10).json()
    assert state["tenants"][0]["policies"][0]["displayName"] == "block unless granted"


def test_without_state_the_tenant_is_new_each_time(start: Any) -> None:
    first = start()
    tenant = first.value("tenant_id")
    start.stop(first)
    assert not (first.state / "tenants.json").exists()
    assert start(state=first.state).value("tenant_id") != tenant


def test_faults_from_the_start_and_switched_at_run_time(start: Any) -> None:
    run = start(faults=[parse_fault("status=503,host=graph")])
    session = run.session()
    assert run.graph(session).status_code == 503
    listed = requests.get(f"{run.control}/faults", timeout=10).json()["faults"]
    assert [(f["kind"], f["status"], f["host"]) for f in listed] == [("status", 503, "graph")]

    assert requests.delete(f"{run.control}/faults", timeout=10).json() == {"faults": []}
    assert run.graph(session).status_code == 200

    added = requests.post(f"{run.control}/faults", json={"fault": "throttle,host=graph,count=1"}, timeout=10)
    assert added.status_code == 201
    assert run.graph(session).status_code == 429
    assert run.graph(session).status_code == 200  # count=1: used up

    refused = requests.post(f"{run.control}/faults", json={"fault": "bogus"}, timeout=10)
    assert refused.status_code == 400 and "bogus" in refused.json()["error"]


def test_tls_scenario_switched_at_run_time(start: Any) -> None:
    run = start()
    trusting = client_context(run.state / "ca-bundle.pem")
    assert verify_code(run.port, "graph.microsoft.com", trusting) == 0
    assert requests.put(f"{run.control}/tls", json={"scenario": "self_signed"}, timeout=10).status_code == 200
    assert verify_code(run.port, "graph.microsoft.com", trusting) != 0
    requests.put(f"{run.control}/tls", json={"scenario": None}, timeout=10)
    assert verify_code(run.port, "graph.microsoft.com", trusting) == 0


def test_a_certificate_of_ones_own_is_served_for_every_host(start: Any, tmp_path: Path) -> None:
    root = pki.CA.new("Operator Test Root", "Example Corp")
    issuing = root.intermediate("Operator Test Issuing CA", "Example Corp")
    leaf = issuing.issue(*ALL_HOSTS)
    cert_path, key_path = leaf.write(tmp_path, "served", [issuing])
    chain = tmp_path / "chain-and-key.pem"
    chain.write_bytes(cert_path.read_bytes() + key_path.read_bytes())
    (tmp_path / "root.pem").write_bytes(root.cert_pem)

    run = start(certificate=chain)
    own = client_context(tmp_path / "root.pem")
    for host in ("graph.microsoft.com", "login.microsoftonline.us"):
        tls_handshake(run.port, host, own).close()
    assert verify_code(run.port, "graph.microsoft.com", client_context(run.state / "ca-bundle.pem")) != 0
    assert run.graph(run.session(tmp_path / "root.pem")).status_code == 200


def test_fault_specs() -> None:
    assert parse_fault("latency=2.5,host=login") == EmulatorFault("latency", host="login", seconds=2.5)
    assert parse_fault("throttle,method=PATCH,count=3") == EmulatorFault("throttle", method="PATCH", count=3)
    assert parse_fault("reset,path=/namedLocations") == EmulatorFault("reset", path="/namedLocations")
    for bad in ("reset=1", "status=abc", "nonsense", "status=503,colour=red"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_the_command_refuses_a_bad_fault_before_serving() -> None:
    result = CliRunner().invoke(main, ["emulator", "--fault", "status=soon", "--listen", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "--fault" in result.stderr and "status=soon" in result.stderr
