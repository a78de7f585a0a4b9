"""Supervisors: "let it crash" for asyncio services, with Erlang/OTP's semantics.

A :class:`Supervisor` starts its children in order, restarts the ones that fail by a
strategy (``one_for_one``, ``one_for_all``, ``rest_for_one``), gives up loudly when
failures repeat faster than its restart intensity allows, and stops everything in
reverse order. A :class:`DynamicSupervisor` holds many children of one kind started on
demand. Supervisors nest: :meth:`Supervisor.child_spec` makes one the child of another.
See ``docs/supervisor.md``.

Example::

    from buttress.supervise import ChildSpec, Supervisor

    async with Supervisor([ChildSpec("poller", poll), ChildSpec("consumer", consume)]):
        await serve_http()
"""

from ._core import RestartWindow, Strategy, plan
from ._engine import AutoShutdown, ChildCounts, ChildInfo, SupervisorStats
from ._errors import ChildStartError, SupervisorError, SupervisorGaveUpError
from ._events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildUnkillable,
    SupervisorGaveUp,
    SupervisorStopped,
)
from ._spec import ChildSpec, Kind, Restart, Shutdown, ready
from ._supervisor import DynamicSupervisor, Supervisor

__all__ = [
    "AutoShutdown",
    "ChildCounts",
    "ChildExited",
    "ChildInfo",
    "ChildRestarted",
    "ChildSpec",
    "ChildStartError",
    "ChildStarted",
    "ChildUnkillable",
    "DynamicSupervisor",
    "Kind",
    "Restart",
    "RestartWindow",
    "Shutdown",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorGaveUp",
    "SupervisorGaveUpError",
    "SupervisorStats",
    "SupervisorStopped",
    "plan",
    "ready",
]
