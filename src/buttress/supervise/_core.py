"""The supervisor's decisions, sans I/O: the restart-intensity window and the strategies.

Nothing here awaits or reads a clock: the engine passes ``now`` in and carries the
answers out, so the rules can be tested (and property-tested) on their own.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Sequence
from typing import Literal

__all__ = ["RestartWindow", "Strategy", "plan"]

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


class RestartWindow:
    """The restarts of the last ``within`` seconds (OTP's intensity and period).

    A restart at time ``t`` counts until ``now - t >= within``: the window is
    ``(now - within, now]``. :meth:`record` adds one and says whether it is allowed:
    at most ``max_restarts`` may fall in the window, so the one that would make
    ``max_restarts + 1`` is refused (and the supervisor gives up).
    """

    __slots__ = ("_times", "max_restarts", "within")

    def __init__(self, max_restarts: int, within: float) -> None:
        self.max_restarts = max_restarts
        self.within = within
        self._times: collections.deque[float] = collections.deque()

    def _prune(self, now: float) -> None:
        times, within = self._times, self.within
        # ``now - t >= within`` rather than ``t <= now - within``: the same in exact
        # arithmetic, but only the first agrees with itself under float rounding.
        while times and now - times[0] >= within:
            times.popleft()

    def count(self, now: float) -> int:
        """Restarts in the window ending at ``now``."""
        self._prune(now)
        return len(self._times)

    def record(self, now: float) -> tuple[bool, int]:
        """Count a restart at ``now``: ``(allowed, restarts in the window with it)``.

        A refused restart is not kept: the supervisor stops, and a later run starts
        with a clear window.
        """
        self._prune(now)
        count = len(self._times) + 1
        if count > self.max_restarts:
            return False, count
        self._times.append(now)
        return True, count

    def clear(self) -> None:
        """Forget every restart (a new run of the supervisor)."""
        self._times.clear()


def plan(
    strategy: Strategy,
    order: Sequence[str],
    failed: str,
    temporary: Collection[str] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a restart of ``failed`` does: ``(stop, start)``, each in the order to do it.

    ``order`` is every child in start order; ``temporary`` names the temporary ones:
    they are stopped with the others but never started again.

    * ``one_for_one``: stop nothing, start ``failed``.
    * ``one_for_all``: stop every other child, last started first; start every
      non-temporary child in order.
    * ``rest_for_one``: stop the children started after ``failed``, last first; start
      ``failed`` and the non-temporary children after it, in order.

    Example::

        plan("rest_for_one", ["db", "cache", "api"], "cache")
        # (("api",), ("cache", "api"))
    """
    if strategy == "one_for_one":
        return (), (failed,)
    index = order.index(failed)
    group = list(order) if strategy == "one_for_all" else list(order[index:])
    stop = tuple(child for child in reversed(group) if child != failed)
    start = tuple(child for child in group if child == failed or child not in temporary)
    return stop, start
