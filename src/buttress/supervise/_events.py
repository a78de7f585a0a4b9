"""The events a supervisor emits (see :mod:`buttress.events` for listeners).

Each is a frozen dataclass subclassing :class:`~buttress.events.Event`; ``policy`` is the
supervisor's ``name``. They go to the supervisor's own listeners and to the global ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = [
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "ChildUnkillable",
    "SupervisorGaveUp",
    "SupervisorStopped",
]

NORMAL_REASONS = frozenset({"return", "shutdown"})


@dataclass(frozen=True, slots=True)
class ChildStarted(Event):
    """Child ``child`` started (after its :func:`~buttress.supervise.ready` handshake
    when it has one); ``restarts`` is how many times it had been restarted before."""

    child: str
    restarts: int


@dataclass(frozen=True, slots=True)
class ChildExited(Event):
    """Child ``child`` ended. ``reason`` is one of:

    * ``"return"`` — its coroutine returned (a normal exit);
    * ``"shutdown"`` — it raised :class:`~buttress.supervise.Shutdown` (a normal exit);
    * ``"exception"`` — it raised anything else (``exception`` holds it);
    * ``"cancelled"`` — it was cancelled by someone other than its supervisor;
    * ``"start_timeout"`` — it did not signal readiness within ``start_timeout``;
    * ``"terminated"`` — its supervisor stopped it (shutdown, a sibling's restart,
      ``terminate_child``); ``exception`` is set if it raised while stopping.

    ``during_start`` is true when it ended before signalling readiness (a start failure).
    """

    child: str
    reason: str
    exception: BaseException | None
    during_start: bool = False

    @property
    def normal(self) -> bool:
        """True for the normal exits (``"return"`` and ``"shutdown"``)."""
        return self.reason in NORMAL_REASONS


@dataclass(frozen=True, slots=True)
class ChildRestarted(Event):
    """The exit of ``child`` is being answered with a restart: the children in
    ``restarting`` (start order) start again after ``delay`` seconds (0 without
    backoff). ``restarts`` is the number of restarts in the intensity window, this one
    included."""

    child: str
    restarting: tuple[str, ...]
    delay: float
    restarts: int


@dataclass(frozen=True, slots=True)
class SupervisorGaveUp(Event):
    """The exit of ``child`` would have been restart number ``restarts`` within
    ``within`` seconds, over ``max_restarts``: the supervisor stops every child and
    raises :class:`~buttress.supervise.SupervisorGaveUpError`."""

    child: str
    restarts: int
    within: float
    exception: BaseException | None


@dataclass(frozen=True, slots=True)
class ChildUnkillable(Event):
    """Child ``child`` was cancelled and was still running ``shutdown`` seconds later;
    the supervisor detached it (it keeps a reference, so the task is not lost) and
    carried on."""

    child: str
    shutdown: float


@dataclass(frozen=True, slots=True)
class SupervisorStopped(Event):
    """The supervisor stopped, with every child stopped. ``reason``: ``"stopped"``
    (``stop()`` or the end of ``async with``), ``"auto_shutdown"`` (significant
    children ended), ``"gave_up"``, ``"start_failed"`` or ``"cancelled"``."""

    reason: str
