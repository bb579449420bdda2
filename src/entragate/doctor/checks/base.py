"""What every doctor check returns, the check ids in report order, and the
status words (docs/design.md#doctor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from entragate.doctor.causes import Cause
from entragate.errors import EntraError

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
CHECK_IDS = (
    "config",
    "proxy",
    "dns",
    "tcp",
    "tls",
    "clock",
    "truststore",
    "token",
    "permissions",
    "locations",
    "policies",
    "throttling",
)


@dataclass
class CheckResult:
    """One line of the report."""

    id: str
    status: str
    summary: str
    code: str | None = None
    causes: list[Cause] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "status": self.status,
            "code": self.code,
            "summary": self.summary,
            "causes": [c.to_json() for c in self.causes],
            "fix": list(self.fix),
        }


def error_detail(err: EntraError) -> str:
    """The error's detail with the request and correlation ids Microsoft support asks for."""
    ids = []
    if err.request_id:
        ids.append(f"request-id {err.request_id}")
    if err.correlation_id:
        ids.append(f"correlation_id {err.correlation_id}")
    return err.detail + (f" [{', '.join(ids)}]" if ids else "")
