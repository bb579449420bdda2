"""Blocking store calls from the event loop, on a pool of the API's own threads.

The grants routes wait for a durable commit (docs/design.md#grant-path), so each
request needs a thread while it waits. ``loop.run_in_executor`` on a plain pool costs
about half of what ``starlette.concurrency.run_in_threadpool`` does per call (anyio's
worker dispatch and its async-library detection), measured at 16 concurrent callers;
on the hot path that is a twentieth of a grant's CPU. The pool is as large as anyio's
default, so as many requests can wait on one group commit as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: as many threads as anyio's default limiter: requests that can wait on the store at once
POOL_SIZE = 40

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="entragate-api-store")
        return _pool


async def blocking(call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` on the API's store threads; the event loop goes on meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), call, *args)
