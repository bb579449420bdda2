"""Switchable faults: latency, an error status, a reset, a hang or a throttle answer.

A test sets an :class:`EmulatorFault`; the emulator asks :meth:`Faults.take` on every
request which ones apply (docs/design.md#emulator).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

from .state import GRAPH_HOSTS, LOGIN_HOSTS

FAULT_KINDS = ("latency", "status", "reset", "hang", "throttle")


@dataclass(frozen=True)
class EmulatorFault:
    """A switchable failure. ``host``: exact name, ``"graph"``, ``"login"`` or None (any).

    ``method``: HTTP method or None (any). ``count``: how many matching requests it
    affects (None: until cleared). ``path``: optional substring of the request path.
    ``tenant``: the tenant id it affects (None: every tenant); a token request's tenant
    is the one its URL names, a Graph request's the one its bearer token was issued in.
    """

    kind: str
    host: str | None = None
    method: str | None = None
    status: int = 503
    seconds: float = 0.0
    count: int | None = None
    path: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be positive or None")

    def matches(self, host: str, method: str, path: str, tenant: str | None = None) -> bool:
        if self.tenant is not None and (tenant is None or self.tenant.lower() != tenant.lower()):
            return False
        if self.host == "graph":
            if host not in GRAPH_HOSTS:
                return False
        elif self.host == "login":
            if host not in LOGIN_HOSTS:
                return False
        elif self.host is not None and self.host.lower() != host:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in path


_VALUE_FIELD = {"status": "status", "latency": "seconds", "hang": "seconds"}


def parse_fault(spec: str) -> EmulatorFault:
    """``KIND[=VALUE][,host=H][,method=M][,count=N][,path=P][,tenant=T]``, as ``--fault`` takes it.

    VALUE is the status of ``status`` (503), the seconds of ``latency`` and ``hang``;
    ``throttle`` and ``reset`` take none. Examples: ``status=503,host=graph``,
    ``latency=2.5``, ``throttle,method=PATCH,count=3``.
    """
    head, *options = [part.strip() for part in spec.split(",") if part.strip()]
    kind, _, value = head.partition("=")
    fields: dict[str, object] = {}
    try:
        if value:
            if kind not in _VALUE_FIELD:
                raise ValueError(f"fault {kind!r} takes no value")
            field_name = _VALUE_FIELD[kind]
            fields[field_name] = int(value) if field_name == "status" else float(value)
        for option in options:
            key, sep, item = option.partition("=")
            if not sep or key not in ("host", "method", "count", "path", "tenant"):
                raise ValueError(f"{option!r} is not host=, method=, count=, path= or tenant=")
            fields[key] = int(item) if key == "count" else item
        return EmulatorFault(kind, **fields)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad fault {spec!r}: {exc}") from None


@dataclass
class _Armed:
    fault: EmulatorFault
    remaining: int | None  # None: until cleared


class Faults:
    """The faults set, in the order they were set, each with what is left of its count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def set(self, fault: EmulatorFault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault, fault.count))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def describe(self) -> list[dict[str, object]]:
        """The faults in force, for the control endpoint: each with what is left of its count."""
        with self._lock:
            return [{**asdict(a.fault), "remaining": a.remaining} for a in self._armed]

    def take(
        self, host: str, method: str, path: str, tenant: str | None = None
    ) -> tuple[float, EmulatorFault | None]:
        """(total latency, the first other matching fault) for one request; uses up counts.

        Every matching latency fault adds its delay; of the other kinds only the first
        that matches applies (later ones keep their counts).
        """
        latency = 0.0
        chosen: EmulatorFault | None = None
        with self._lock:
            for armed in list(self._armed):
                fault = armed.fault
                if not fault.matches(host, method, path, tenant):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                elif chosen is None:
                    chosen = fault
                else:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
        return latency, chosen
