"""The ``clock`` check: this host's clock against the servers' ``Date`` headers."""

from __future__ import annotations

from collections.abc import Sequence

from entragate.doctor import osfix
from entragate.doctor.causes import Cause, human_seconds
from entragate.doctor.checks.base import FAIL, PASS, SKIP, CheckResult
from entragate.doctor.checks.probe import HostProbe
from entragate.doctor.osfix import OsInfo
from entragate.errors import Code

CLOCK_LIMIT_SECONDS = 60


def check_clock(probes: Sequence[HostProbe], *, os_info: OsInfo, tls: CheckResult) -> CheckResult:
    dated = [p for p in probes if p.server_date is not None and p.local_date is not None]
    if not dated:
        return CheckResult("clock", SKIP, "no server Date header was received (see tls)")
    p = dated[0]
    assert p.server_date is not None and p.local_date is not None
    skew = (p.server_date - p.local_date).total_seconds()
    # Date has a resolution of one second; anything within 60 s passes.
    if abs(skew) > CLOCK_LIMIT_SECONDS:
        direction = "behind" if skew > 0 else "ahead of"
        code = Code.ENTRA003 if any(c.id == "clock_skew" for c in tls.causes) else Code.ENTRA001
        return CheckResult(
            "clock",
            FAIL,
            f"this host's clock is {human_seconds(skew)} {direction} {p.host}'s Date header "
            f"({p.server_date:%Y-%m-%d %H:%M:%S} UTC, local {p.local_date:%Y-%m-%d %H:%M:%S} UTC)",
            code=code,
            causes=[
                Cause(
                    "clock_skew",
                    f"The local clock differs from {p.host}'s by {int(round(skew))} s "
                    f"(more than {CLOCK_LIMIT_SECONDS} s): certificates, tokens and client "
                    "assertions are checked against time.",
                    skew_seconds=int(round(skew)),
                )
            ],
            fix=osfix.ntp_fix(os_info),
        )
    return CheckResult(
        "clock",
        PASS,
        f"local clock within {max(1, int(round(abs(skew))))} s of {p.host}'s Date header",
    )
