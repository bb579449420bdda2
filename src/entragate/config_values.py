"""The value types of the configuration: clouds, ``connect_to`` entries, secrets, and the
conversions of raw values (``ValueReader``).

``entragate.config`` re-exports them; they live apart so that the loader stays one
readable piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Cloud:
    name: str
    login_host: str
    graph_host: str


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("global", "login.microsoftonline.com", "graph.microsoft.com"),
    "usgov": Cloud("usgov", "login.microsoftonline.us", "graph.microsoft.us"),
    "usgov-dod": Cloud("usgov-dod", "login.microsoftonline.us", "dod-graph.microsoft.us"),
    # China's current login host; the older login.chinacloudapi.cn still answers.
    "china": Cloud("china", "login.partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
}


class Secret:
    """A string that never prints itself: repr, str and format all mask it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class ConnectTo:
    """curl's ``--connect-to HOST1:PORT1:HOST2:PORT2``: dial HOST2:PORT2, keep HOST1 for SNI."""

    host: str
    port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, entry: str) -> ConnectTo:
        # IPv6 literals may be bracketed: [::1]
        match = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):(\w+):(\[[^\]]+\]|[^:\[\]]+):(\w+)", entry.strip())
        if match is None:
            raise ValueError(f"connect_to entry {entry!r} is not HOST1:PORT1:HOST2:PORT2")
        parts = match.groups()
        h1, p1, h2, p2 = (p.strip("[]") for p in parts)
        try:
            port1, port2 = int(p1), int(p2)
        except ValueError:
            raise ValueError(f"connect_to entry {entry!r} has a non-numeric port") from None
        if not h1 or not h2:
            raise ValueError(f"connect_to entry {entry!r} needs both host names")
        return cls(h1.lower(), port1, h2, port2)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.target_host}:{self.target_port}"


class ValueReader:
    """The loader's conversions: each bad value becomes a problem naming its key (and
    the default is used), so one pass reports every mistake. Relative paths are taken
    from the configuration file's directory (``base``)."""

    def __init__(self, problems: list[str], base: Path) -> None:
        self.problems = problems
        self.base = base

    def as_path(self, key: str, value: Any) -> Path | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a path string")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    def as_str(self, key: str, value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a string")
            return ""
        return value

    def as_number(self, key: str, value: Any, default: float, minimum: float = 0.0) -> float:
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problems.append(f"{key} must be a number, got {value!r}")
            return default
        if number <= minimum:
            self.problems.append(f"{key} must be greater than {minimum:g}, got {value!r}")
            return default
        return number

    def as_bool(self, key: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{key} must be true or false, got {value!r}")
        return default
