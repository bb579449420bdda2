"""Users' sign-in logs and the revocation of their sessions, through Microsoft Graph.

Neither is a Conditional Access resource: sign-in logs are "identity and access
reports" (Microsoft allows 5 requests per 10 seconds per app and tenant) and
``revokeSignInSessions`` is a user action. So a :class:`DirectoryClient` has a pacer
of its own and never spends the Conditional Access budget of the writer
(docs/design.md#pacing); it shares the tenant's session and token cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from entragate.config import Config
from entragate.grants.validation import is_directory_user, is_object_id
from entragate.graph.client import GraphClient
from entragate.sync.pacer import Pacer

READ_SIGN_INS = "AuditLog.Read.All"
REVOKE_SESSIONS = "User.RevokeSessions.All"
SIGN_INS_PATH = "/auditLogs/signIns"
#: Identity and access reports: 5 requests per 10 seconds per app and tenant.
REPORTS_RATE = 0.5
#: revokeSignInSessions: a user action, paced well below the directory's limits.
REVOKE_RATE = 2.0

__all__ = ["DirectoryClient", "SignIn", "is_directory_user", "is_object_id"]

@dataclass(frozen=True)
class AppliedPolicy:
    id: str
    display_name: str
    result: str  # success, failure, notApplied, notEnabled, reportOnly…


@dataclass(frozen=True)
class SignIn:
    """The fields of a Graph ``signIn`` that ``entragate why`` reads."""

    id: str
    created: datetime
    user_principal_name: str
    user_id: str
    app: str
    ip_address: str
    ca_status: str  # success, failure, notApplied
    error_code: int
    failure_reason: str
    policies: tuple[AppliedPolicy, ...]

    @property
    def succeeded(self) -> bool:
        return self.error_code == 0

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> SignIn:
        status = item.get("status") or {}
        created = str(item.get("createdDateTime") or "1970-01-01T00:00:00Z")
        return cls(
            id=str(item.get("id", "")),
            created=datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(UTC),
            user_principal_name=str(item.get("userPrincipalName") or ""),
            user_id=str(item.get("userId") or ""),
            app=str(item.get("appDisplayName") or ""),
            ip_address=str(item.get("ipAddress") or ""),
            ca_status=str(item.get("conditionalAccessStatus") or ""),
            error_code=int(status.get("errorCode") or 0),
            failure_reason=str(status.get("failureReason") or ""),
            policies=tuple(
                AppliedPolicy(str(p.get("id", "")), str(p.get("displayName", "")), str(p.get("result", "")))
                for p in item.get("appliedConditionalAccessPolicies") or []
                if isinstance(p, dict)
            ),
        )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DirectoryClient:
    """Sign-in logs and session revocation for one tenant, on a pacer of its own."""

    def __init__(self, config: Config, graph: GraphClient | None = None, *, rate: float) -> None:
        self.pacer = Pacer(rate)
        base = graph or GraphClient(config)
        self.graph = GraphClient(config, base.session, base.tokens, before_request=self.pacer.acquire)

    def close(self) -> None:
        self.pacer.stop()

    def sign_ins(self, user: str, *, top: int = 10) -> list[SignIn]:
        """The user's newest sign-ins, newest first (Graph's order), by UPN or object id."""
        prop = "userId" if is_object_id(user) else "userPrincipalName"
        response = self.graph.request(
            "GET",
            SIGN_INS_PATH,
            params={"$filter": f"{prop} eq {_literal(user.strip())}", "$top": str(top)},
            operation=f"read the sign-in logs of {user}",
            permission=READ_SIGN_INS,
        )
        found = [SignIn.from_graph(i) for i in response.json().get("value", []) if isinstance(i, dict)]
        return sorted(found, key=lambda s: s.created, reverse=True)

    def revoke_sessions(self, user: str) -> None:
        """``POST /users/{id | userPrincipalName}/revokeSignInSessions``."""
        self.graph.request(
            "POST",
            f"/users/{quote(user.strip(), safe='@')}/revokeSignInSessions",
            operation=f"revoke the sign-in sessions of {user}",
            permission=REVOKE_SESSIONS,
            write=False,
        )
