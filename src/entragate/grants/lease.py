"""Who writes to Entra: one agent per tenant holds the writer lease (docs/design.md#lease).

Several agents may share one grant store; all of them serve the API, but only the
holder of the writer lease talks to Graph for the tenant. The others are standbys:
they retry :meth:`WriterLease.try_acquire` about once a second and take over when
the holder goes away.

The lease belongs to the store it guards: :meth:`GrantStore.writer_lease` hands
out the one that fits the backend, so the writer never names a database.

- ``PostgresWriterLease`` (``postgres_lease.py``): a session-level advisory lock on a
  dedicated connection, with a heartbeat and a term, so a hung holder is fenced.
- ``LocalWriterLease`` (beside the SQLite backend): an ``flock`` on a lock file next
  to the database; the kernel drops it when the holder's process dies.

:meth:`WriterLease.held` verifies the lease against its source (a round trip to
PostgreSQL), so a writer calls it before each Graph write and stops writing as
soon as it fails. Graph has no ETag/If-Match, so this cannot fence a write that is
already in flight when the lease is lost; the window is one request.

:attr:`WriterLease.reachable` says whether the last attempt reached the lease's
source: a lease lost while its source answers has another holder; one lost while it
does not leaves the writer in doubt (docs/design.md#outages).
"""

from __future__ import annotations

import abc
from typing import Any

from .store import store_kind


class WriterLease(abc.ABC):
    """The right to write one tenant's named locations."""

    kind: str = "lease"
    #: whether the last :meth:`try_acquire` reached the lease's source (a refusal then
    #: means another agent holds it; docs/design.md#outages)
    reachable: bool = True
    #: set by a :meth:`try_acquire` that took the lease from a hung holder: who, and why
    fenced: str | None = None

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; never blocks for long. True when held."""

    @abc.abstractmethod
    def held(self) -> bool:
        """Whether the lease is (still) ours, verified at its source. Never raises."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lease up (idempotent); a standby may take it at once."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the lease is, for ``status`` and logs (no secrets)."""

    def why_not(self) -> str:
        """Why the last :meth:`try_acquire` failed, for the standby's log line."""
        return "another agent holds the writer lease"


def lease_for(store_url: str, tenant_id: str, *, timeout: float = 10.0) -> WriterLease:
    """The writer lease of the grant store named by ``store_url``, without opening the store."""
    url = store_url.strip()
    if store_kind(url) == "postgresql":
        from .postgres_lease import PostgresWriterLease

        return PostgresWriterLease(url, tenant_id, timeout=timeout)
    from .sqlite import LocalWriterLease, lock_file_for, path_from_url

    return LocalWriterLease(lock_file_for(path_from_url(url)))
