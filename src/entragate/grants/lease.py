"""Who writes to Entra: one agent per tenant holds the writer lease (docs/design.md#lease).

Several agents may share one grant store; all of them serve the API, but only the
holder of the writer lease talks to Graph for the tenant. The others are standbys:
they retry :meth:`WriterLease.try_acquire` about once a second and take over when
the holder goes away.

The lease belongs to the store it guards: :meth:`GrantStore.writer_lease` hands
out the one that fits the backend, so the writer never names a database.

- ``PostgresWriterLease`` (beside the PostgreSQL backend): a session-level advisory
  lock on a dedicated connection; it ends with the holder's session.
- ``LocalWriterLease`` (beside the SQLite backend): an ``flock`` on a lock file next
  to the database; the kernel drops it when the holder's process dies.

:meth:`WriterLease.held` verifies the lease against its source (a round trip to
PostgreSQL), so a writer calls it before each Graph write and stops writing as
soon as it fails. Graph has no ETag/If-Match, so this cannot fence a write that is
already in flight when the lease is lost; the window is one request.
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


def lease_for(store_url: str, tenant_id: str) -> WriterLease:
    """The writer lease of the grant store named by ``store_url``, without opening the store."""
    url = store_url.strip()
    if store_kind(url) == "postgresql":
        from .postgres import PostgresWriterLease

        return PostgresWriterLease(url, tenant_id)
    from .sqlite import LocalWriterLease, lock_file_for, path_from_url

    return LocalWriterLease(lock_file_for(path_from_url(url)))
