"""The errors a supervisor raises, under :class:`~buttress.ButtressError`::

ButtressError
└── SupervisorError             a supervisor was used in a state that does not allow it
    ├── ChildStartError         a child failed before it was started (the handshake)
    └── SupervisorGaveUpError   restart intensity exceeded: every child was stopped
"""

from __future__ import annotations

from .._errors import ButtressError

__all__ = ["ChildStartError", "SupervisorError", "SupervisorGaveUpError"]


class SupervisorError(ButtressError):
    """A supervisor could not do what was asked: it is not running, the child is unknown
    or running, it already holds ``max_children`` children...

    ``supervisor`` is the ``name`` of the supervisor.

    Example::

        try:
            await sup.restart_child("db")
        except bt.SupervisorError as exc:
            print(exc)   # supervisor 'app' has no child 'db'
    """

    def __init__(self, message: str = "", *, supervisor: str = "") -> None:
        super().__init__(message)
        self.supervisor = supervisor

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.supervisor))


def _rebuild(cls: type[SupervisorError], message: str, supervisor: str) -> SupervisorError:
    return cls(message, supervisor=supervisor)


class ChildStartError(SupervisorError):
    """A child failed to start: it raised (or was cancelled, or ran out of
    ``start_timeout``) before it signalled :func:`~buttress.supervise.ready`.

    Raised by ``Supervisor.start()`` / ``run()`` / ``async with`` when a child of the
    initial start fails (the children already started are stopped first, in reverse
    order: the supervisor fails to start, as in OTP), and by ``start_child()``. The
    child's own exception is the ``__cause__``.

    Attributes:
        child: the id of the child that failed.
        reason: ``"exception"``, ``"cancelled"``, ``"shutdown"`` or ``"start_timeout"``.
    """

    def __init__(
        self, message: str = "", *, supervisor: str = "", child: str = "", reason: str = ""
    ) -> None:
        super().__init__(message, supervisor=supervisor)
        self.child = child
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_start, (type(self), str(self), self.supervisor, self.child, self.reason))


def _rebuild_start(
    cls: type[ChildStartError], message: str, supervisor: str, child: str, reason: str
) -> ChildStartError:
    return cls(message, supervisor=supervisor, child=child, reason=reason)


class SupervisorGaveUpError(SupervisorError):
    """A supervisor exceeded its restart intensity (more than ``max_restarts`` restarts
    within ``within`` seconds), stopped every child in reverse start order, and stopped.

    It reaches whoever awaits the supervisor: ``await sup.run()``, ``await sup.wait()``,
    the end of ``async with``, or the parent supervisor (for which it is a crash of
    that child). The last child's exception, if any, is the ``__cause__``.

    Attributes:
        child: the id of the child whose exit went over the limit.
        restarts: the restarts counted in the window, the refused one included.
        within: the window, seconds.

    Example::

        try:
            await sup.run()
        except bt.SupervisorGaveUpError as exc:
            log.critical("giving up on %s after %d restarts", exc.child, exc.restarts)
            raise SystemExit(1)
    """

    def __init__(
        self,
        message: str = "",
        *,
        supervisor: str = "",
        child: str = "",
        restarts: int = 0,
        within: float = 0.0,
    ) -> None:
        super().__init__(message, supervisor=supervisor)
        self.child = child
        self.restarts = restarts
        self.within = within

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_gave_up,
            (type(self), str(self), self.supervisor, self.child, self.restarts, self.within),
        )


def _rebuild_gave_up(
    cls: type[SupervisorGaveUpError],
    message: str,
    supervisor: str,
    child: str,
    restarts: int,
    within: float,
) -> SupervisorGaveUpError:
    return cls(message, supervisor=supervisor, child=child, restarts=restarts, within=within)
