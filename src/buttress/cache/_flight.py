"""In-process single flight for async loads: concurrent callers of one key share one run."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

from .._deadline import get_current, set_current
from .._errors import DeadlineExceededError

__all__ = ["Flights"]


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Every caller may have gone (cancelled); read the outcome so asyncio does not log
    # "exception was never retrieved" for a load nobody waits for any more.
    if not task.cancelled():
        task.exception()


class Flights:
    """One running load per key; each caller waits for it within its own deadline.

    The load runs in a task of its own, outside any caller's deadline (a short deadline
    of the first caller must not fail the others), and each caller awaits it shielded:
    a caller that is cancelled or whose deadline passes leaves, the load goes on and
    still fills the cache for the rest.
    """

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, start: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Join the load of ``key``, or start it with ``start()``."""
        task = self._running.get(key)
        if task is None:
            context = contextvars.copy_context()
            context.run(set_current, None)
            task = asyncio.get_running_loop().create_task(start(), context=context)
            self._running[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        current = get_current()
        if current is None:
            return await asyncio.shield(task)
        left = current[0] - current[1].monotonic()
        if left <= 0:
            raise DeadlineExceededError(f"no time left to wait for the load of {key!r}")
        try:
            return await asyncio.wait_for(asyncio.shield(task), left)
        except TimeoutError:
            if task.done():
                raise  # the load itself timed out: its error, not ours
            raise DeadlineExceededError(
                f"deadline reached while waiting for the load of {key!r}"
            ) from None

    def _done(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        _retrieve(task)
