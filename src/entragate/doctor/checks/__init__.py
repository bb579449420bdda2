"""The doctor's checks (docs/design.md#doctor), one module per family, each
returning a :class:`CheckResult`.

Network work is done by *probes* (one per Microsoft host: proxy, DNS, TCP,
verified TLS with the agent's own SSL context, ``Date``), by the token request
and by one Graph read; the checks turn those observations into a status, an
error code, causes and fix lines.  Nothing here prints or logs a secret: the
client secret is only ever handed to the token endpoint (through msal, over
the agent's verified TLS) and the access token only to Graph.

This package re-exports what the runner, the renderer and the tests import.
"""

from entragate.doctor.causes import Cause
from entragate.doctor.checks.base import CHECK_IDS, FAIL, PASS, SKIP, WARN, CheckResult
from entragate.doctor.checks.clock import check_clock
from entragate.doctor.checks.config import check_config, load_expected_roots
from entragate.doctor.checks.identity import check_permissions, token_result
from entragate.doctor.checks.locations import check_locations, check_throttling, graph_error_result
from entragate.doctor.checks.network import check_dns, check_proxy, check_tcp
from entragate.doctor.checks.policies import check_policies
from entragate.doctor.checks.probe import HostProbe, probe_host
from entragate.doctor.checks.tls import check_tls
from entragate.doctor.checks.truststore import check_truststore

__all__ = [
    "CHECK_IDS",
    "FAIL",
    "PASS",
    "SKIP",
    "WARN",
    "Cause",
    "CheckResult",
    "HostProbe",
    "check_clock",
    "check_config",
    "check_dns",
    "check_locations",
    "check_permissions",
    "check_policies",
    "check_proxy",
    "check_tcp",
    "check_throttling",
    "check_tls",
    "check_truststore",
    "graph_error_result",
    "load_expected_roots",
    "probe_host",
    "token_result",
]
