"""The stand-alone emulator's control endpoint (``--control HOST:PORT``), plain HTTP on
loopback, for switching faults and TLS scenarios while an agent runs against it:

- ``GET /faults``, ``POST /faults`` ``{"fault": "status=503,host=graph"}``, ``DELETE /faults``
- ``PUT /tls`` ``{"scenario": "intercepted"}`` (``null``: the good chain again)
- ``POST /policies`` ``{"tenant_id", "display_name", ...}``: add a Conditional Access policy
- ``GET /state``: tenants, apps, locations, policies and request counters

docs/emulator.md shows each with ``curl``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .faults import parse_fault
from .tls import TLS_SCENARIOS

if TYPE_CHECKING:
    from ._emulator import Emulator


def _summary(emu: Emulator) -> dict[str, Any]:
    with emu.lock:
        tenants = [
            {
                "id": t.id,
                "domain": t.domain,
                "cloud": t.cloud,
                "apps": sorted(t.apps),
                "locations": [
                    {"id": loc["id"], "displayName": loc.get("displayName"),
                     "ranges": [r["cidrAddress"] for r in loc.get("ipRanges", [])]}
                    for loc in t.locations.values()
                ],
                "policies": [
                    {"id": p["id"], "displayName": p["displayName"], "state": p["state"]}
                    for p in t.policies.values()
                ],
            }
            for t in emu.all_tenants()
        ]
    return {"tenants": tenants, "tls_scenario": emu.tls_scenario, "counters": dict(emu.counters)}


class ControlServer:
    def __init__(self, emu: Emulator, host: str, port: int) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the control endpoint serves loopback only, not {host}")
        outer = self
        self.emu = emu

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body, indent=1).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                value = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(value, dict):
                    raise ValueError("the body must be a JSON object")
                return value

            def _handle(self, method: str) -> None:
                try:
                    status, body = outer.route(method, self.path.rstrip("/"), self._body)
                except (ValueError, TypeError, KeyError) as exc:
                    status, body = 400, {"error": str(exc)}
                self._answer(status, body)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                self._handle("DELETE")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator-control", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}" if isinstance(host, str) else f"http://{host.decode()}:{port}"

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        emu = self.emu
        if path == "/faults":
            if method == "GET":
                return 200, {"faults": emu.faults()}
            if method == "POST":
                emu.set_fault(parse_fault(str(body()["fault"])))
                return 201, {"faults": emu.faults()}
            if method == "DELETE":
                emu.clear_faults()
                return 200, {"faults": []}
        if path == "/tls" and method == "PUT":
            scenario = body().get("scenario")
            if scenario is not None and scenario not in TLS_SCENARIOS:
                raise ValueError(f"scenario must be one of {', '.join(TLS_SCENARIOS)} or null")
            emu.set_tls_scenario(scenario)
            return 200, {"scenario": scenario}
        if path == "/policies" and method == "POST":
            fields = dict(body())
            policy_id = emu.add_policy(str(fields.pop("tenant_id")), str(fields.pop("display_name")), **fields)
            return 201, {"id": policy_id}
        if path == "/state" and method == "GET":
            return 200, _summary(emu)
        return 404, {"error": f"no route {method} {path}"}

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
