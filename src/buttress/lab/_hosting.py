"""Hosted services: a scenario may put a service of its own between the load and the
client (a worker pool, a consumer), built per arm, so that what is compared is how that
service is run — for example supervised or not — and not only the client's pipeline.

A :data:`Host` is called once per arm with a :class:`HostContext` and returns an async
context manager yielding a :class:`Service`. While the arm runs, every logical request
goes through ``service.serve(call)``, where ``call()`` is the arm's usual request (a
plain GET for the naked arm, the same GET through ``protect``'s pipeline for the
protected one). When the arm ends, the context manager is exited and
``service.notes()`` is recorded in :attr:`ArmResult.notes` and printed in the report.
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._driver import PhaseSpan

__all__ = ["Host", "HostContext", "Service"]


@dataclass(frozen=True, slots=True)
class HostContext:
    """What a :data:`Host` gets to build one arm's service.

    Attributes:
        arm: ``"naked"`` or ``"protected"``.
        random: seeded from the lab's seed and the scenario's name, and the same for both
            arms, so both services face the same luck (the same crash draws...).
        duration: seconds of load of the arm.
        redis_url: the ``--redis`` URL for scenarios that need one, else ``None``.
        spans: the phases as they will run (start and end seconds after the arm starts,
            which is within milliseconds of the host being entered), for services that
            change their own faults by phase.
    """

    arm: str
    random: _random.Random
    duration: float
    redis_url: str | None = None
    spans: tuple[PhaseSpan, ...] = ()


class Service(Protocol):
    """A service hosted for one arm."""

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Handle one logical request whose work is ``call()``; return its answer or
        raise (an exception counts as a failed request)."""
        ...

    def notes(self) -> Mapping[str, float]:
        """Numbers to report for the arm (restarts, crashes...), read once it ended."""
        ...


Host = Callable[[HostContext], AbstractAsyncContextManager[Service]]
"""Builds one arm's service; see the module docs."""
