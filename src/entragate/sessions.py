"""End a user's sessions when their access ends (``revoke_sessions = true`` on an ACL).

Conditional Access is evaluated when a token is issued: an ended grant stops new
sign-ins, but refresh tokens and browser sessions issued meanwhile live on. So when a
user's last grant in such an ACL ends (revoke, expiry, flush), the user's sessions are
revoked (``POST /users/{id}/revokeSignInSessions``, ``User.RevokeSessions.All``).

The :class:`SessionRevoker` listens to the store's commits (``store.add_listener``: the
changes carry the removed grants), so it sees every end made by this process whoever
made it (the API, the CLI's direct mode, the writer's expiry). It queues the user; its
own thread checks, just before the call, that no other grant of that user is active in
that ACL (then it does nothing), and calls Graph on the :class:`DirectoryClient`'s pacer,
never the Conditional Access budget. Failures are retried with backoff (Retry-After when
Graph gives one), audited (``session.revoked``, ``session.revoke_failed``,
``session.revoke_skipped``) and shown in ``status`` (docs/design.md#sessions).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from entragate.config import Config
from entragate.errors import EntraError, Throttled
from entragate.grants import GrantStore, StoreError
from entragate.grants.batch import StoreChange
from entragate.graph.client import GraphClient
from entragate.graph.directory import REVOKE_RATE, DirectoryClient
from entragate.logs import get_logger
from entragate.sync.pacer import full_jitter

PARKED_CAP = 900.0  # a failure retrying cannot fix soon (a missing permission) waits at most this


@dataclass
class Pending:
    user: str
    acls: set[str]
    due: float
    attempts: int = 0
    last_error: EntraError | None = None
    ended: list[str] = field(default_factory=list)  # the cidrs whose end queued this

    def to_json(self, now: float) -> dict[str, Any]:
        error = self.last_error
        return {
            "user": self.user,
            "acls": sorted(self.acls),
            "attempts": self.attempts,
            "retry_in": round(max(0.0, self.due - now), 1),
            "last_error": None if error is None else {"code": error.code, "message": error.message,
                                                      "request_id": error.request_id},
        }


class SessionRevoker:
    """Revokes the sessions of users whose last grant in a ``revoke_sessions`` ACL ended."""

    def __init__(
        self,
        config: Config,
        store: GrantStore,
        directory: DirectoryClient,
        *,
        backoff_cap: float = 120.0,
        parked_retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.acls = frozenset(name for name, acl in config.acls.items() if acl.revoke_sessions)
        self.store = store
        self.directory = directory
        self.backoff_cap = backoff_cap
        self.parked_retry = parked_retry
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, Pending] = {}  # by user, case-folded
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.revoked = 0
        self.skipped = 0
        self.last_revoked: dict[str, Any] | None = None
        self.log = get_logger(component="sessions")
        if self.acls:
            store.add_listener(self._on_change)

    # ---------------------------------------------------------------- queue

    def _on_change(self, change: StoreChange) -> None:
        """Called under the store's lock: only queue (docs/design.md#store)."""
        ended = [g for g in change.removed if g.acl in self.acls]
        if not ended:
            return
        with self._cond:
            for grant in ended:
                item = self._pending.setdefault(
                    grant.user.casefold(), Pending(grant.user, set(), self._clock())
                )
                item.acls.add(grant.acl)
                item.ended.append(grant.cidr)
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    # ---------------------------------------------------------------- work

    def start(self) -> SessionRevoker:
        if self.acls:
            self._thread = threading.Thread(target=self._run, name="entragate-sessions", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.directory.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                wait = self._next_due()
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
            try:
                self.run_due()
            except Exception as exc:  # noqa: BLE001 - the thread never dies; the item stays queued
                self.log.error("session.worker_error", error=f"{type(exc).__name__}: {exc}")
                time.sleep(1.0)

    def _next_due(self) -> float | None:
        if not self._pending:
            return None
        return min(p.due for p in self._pending.values()) - self._clock()

    def run_due(self) -> int:
        """Handle every queued user whose time has come; returns how many were handled."""
        with self._cond:
            now = self._clock()
            due = [key for key, item in self._pending.items() if item.due <= now]
        for key in due:
            self._handle(key)
        return len(due)

    def drain(self, timeout: float) -> list[Pending]:
        """Work in the caller's thread until nothing is queued or ``timeout`` passes (the CLI's
        direct mode, which exits afterwards); returns what is still queued."""
        deadline = self._clock() + timeout
        while self.pending and not self._stopped:
            self.run_due()
            with self._cond:
                wait = self._next_due()
                if wait is None:
                    break
                if self._clock() + max(0.0, wait) > deadline:
                    break
                if wait > 0:
                    self._cond.wait(wait)
        with self._cond:
            return list(self._pending.values())

    def _handle(self, key: str) -> None:
        with self._cond:
            item = self._pending.get(key)
            if item is None:
                return
            acls = set(item.acls)
        try:
            held = {acl for acl in acls if any(g.user.casefold() == key for g in self.store.active(acl))}
        except StoreError as exc:
            self._retry_later(key, 5.0)
            self.log.warning("session.store_unavailable", user=item.user, error=str(exc))
            return
        if held:
            self.skipped += 1
            self.log.info("session.revoke_skipped", user=item.user, acls=sorted(held),
                          reason="another grant of the user is active")
        remaining = acls - held
        if not remaining:
            self._done(key, acls)
            return
        try:
            self.directory.revoke_sessions(item.user)
        except EntraError as error:
            self._failed(key, item, error)
            return
        self.revoked += 1
        self.last_revoked = {"user": item.user, "acls": sorted(remaining), "attempts": item.attempts + 1}
        self.log.info("session.revoked", user=item.user, acls=sorted(remaining), attempts=item.attempts + 1,
                      ended=item.ended[-20:])
        self._done(key, acls)

    def _done(self, key: str, acls: set[str]) -> None:
        with self._cond:
            item = self._pending.get(key)
            if item is None:
                return
            item.acls -= acls  # an end queued meanwhile keeps its own entry
            if not item.acls:
                del self._pending[key]

    def _retry_later(self, key: str, delay: float) -> None:
        with self._cond:
            if key in self._pending:
                self._pending[key].due = self._clock() + delay

    def _failed(self, key: str, item: Pending, error: EntraError) -> None:
        with self._cond:
            item.attempts += 1
            item.last_error = error
        if isinstance(error, Throttled) and error.retry_after is not None:
            delay = error.retry_after
        elif error.retryable:
            delay = full_jitter(item.attempts, cap=self.backoff_cap, floor=0.5)
        else:  # e.g. ENTRA002 until User.RevokeSessions.All is granted: retried, slowly
            delay = min(PARKED_CAP, self.parked_retry * 2 ** min(item.attempts - 1, 4))
            self.directory.graph.tokens.invalidate()  # a permission granted later is in a new token
        self._retry_later(key, delay)
        self.log.error("session.revoke_failed", user=item.user, acls=sorted(item.acls), code=error.code,
                       attempt=item.attempts, retry_in=round(delay, 1), request_id=error.request_id,
                       error=error.message)

    # ---------------------------------------------------------------- reporting

    def status(self) -> dict[str, Any]:
        with self._cond:
            now = self._clock()
            pending = [p.to_json(now) for p in self._pending.values()]
        return {
            "acls": sorted(self.acls),
            "revoked": self.revoked,
            "skipped": self.skipped,
            "last_revoked": self.last_revoked,
            "pending": pending,
            "pace": {"rate": self.directory.pacer.rate},
        }


def session_revoker(config: Config, store: GrantStore, graph: GraphClient) -> SessionRevoker | None:
    """The revoker for this process's store, when an ACL asks for it (``revoke_sessions``);
    it shares ``graph``'s session and token cache, not its pacer."""
    if not any(acl.revoke_sessions for acl in config.acls.values()):
        return None
    return SessionRevoker(config, store, DirectoryClient(config, graph, rate=REVOKE_RATE))
