"""Child specifications, the normal-exit signal and the readiness handshake.

**What "normal" means.** A supervisor asks of every exit whether it was *normal* (OTP's
``normal`` / ``shutdown`` / ``{shutdown, Term}``), because a ``transient`` child is
restarted only after an abnormal one. In asyncio terms:

* the child's coroutine **returned** (whatever the value): normal;
* it raised :class:`Shutdown`: normal (a child asking to be left stopped);
* it was **cancelled by its own supervisor** (shutdown, a sibling's restart,
  ``terminate_child``): not an exit of its own at all, never restarted for it;
* it was **cancelled by anyone else** (a task cancelled from outside): abnormal;
* it raised **anything else**: abnormal.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from .. import _validate as v

__all__ = ["ChildSpec", "Kind", "Restart", "Shutdown", "ready"]

Restart = Literal["permanent", "transient", "temporary"]
"""``"permanent"``: always restarted; ``"transient"``: restarted after an abnormal exit
only; ``"temporary"``: never restarted (and forgotten once it ends)."""

Kind = Literal["worker", "supervisor"]

_RESTARTS = ("permanent", "transient", "temporary")
_KINDS = ("worker", "supervisor")

Factory = Callable[[], Awaitable[object]]


class Shutdown(Exception):
    """Raise it in a supervised child to stop *normally* (OTP's ``exit(shutdown)``).

    A ``transient`` child that raises it is not restarted; a ``permanent`` one is (a
    permanent child is restarted whatever the reason). Returning from the child's
    coroutine is the other normal exit. Not a :class:`~buttress.ButtressError`: it is a
    signal, not an error.

    Example::

        async def consumer() -> None:
            async for message in queue:
                if message is STOP:
                    raise Shutdown("end of stream")
                await handle(message)
    """


class _Handshake:
    """The readiness signal of one starting child (made on the supervisor's loop)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def signal(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


_CURRENT: ContextVar[_Handshake | None] = ContextVar("buttress_supervise_child", default=None)


def ready() -> None:
    """Tell the supervisor that is starting the current child that it is ready.

    A child whose spec has ``handshake=True`` counts as *started* only once it calls
    this (or returns): the supervisor waits for it before starting the next child, and
    a child that fails before it is a *start failure* (see :class:`ChildSpec`). Call it
    once the child can do its job: connected, subscribed, listening. Calling it again,
    from a child without a handshake, or outside any supervisor does nothing, so the
    same code runs supervised or not. Tasks the child spawns inherit the signal.

    Example::

        async def consumer() -> None:
            conn = await connect()       # a failure here is a start failure
            ready()
            async for message in conn:   # a failure here is a crash: restarted
                await handle(message)
    """
    handshake = _CURRENT.get()
    if handshake is not None:
        handshake.signal()


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start, restart and stop one supervised child.

    Args:
        id: the child's name, unique within its supervisor (a non-empty ``str``).
        factory: an ``async def`` function (or any callable returning an awaitable)
            taking no argument; each start calls it once and runs the awaitable in a
            task of its own. Use :func:`functools.partial` to pass arguments.
        restart: ``"permanent"`` (default: always restarted), ``"transient"``
            (restarted only after an abnormal exit: see :mod:`buttress.supervise` for
            what is normal) or ``"temporary"`` (never restarted, forgotten when it
            ends; also not restarted when a sibling's failure stops it).
        shutdown: seconds the child gets to finish after being cancelled before it is
            reported (:class:`ChildUnkillable`) and detached. ``> 0``; ``math.inf``
            waits for ever (the right value for a child supervisor, which needs the
            time to stop its own children). Default 5, OTP's default for workers. There
            is no ``brutal_kill``: an asyncio task can only be asked to stop.
        significant: the child's own normal end can shut the supervisor down (see the
            supervisor's ``auto_shutdown``). Only for ``transient`` and ``temporary``
            children. Default ``False``.
        handshake: the child signals readiness with :func:`ready`; until then it is
            *starting*, the supervisor starts nothing else, and an exit is a start
            failure. Default ``False``: started as soon as its task is created.
        start_timeout: with ``handshake``, seconds to wait for :func:`ready` before the
            start fails (the child is cancelled); ``None`` (default) waits for ever, as
            OTP does.
        kind: ``"worker"`` (default) or ``"supervisor"``, for ``count_children()``.
            :meth:`Supervisor.child_spec` builds the spec of a child supervisor.

    Raises:
        ConfigError: a bad argument, e.g. a coroutine object instead of a function, a
            significant permanent child, ``start_timeout`` without ``handshake``.

    Example::

        ChildSpec("consumer", consume, restart="permanent", shutdown=10.0, handshake=True)
        ChildSpec("poller", functools.partial(poll, url, every=5.0), restart="transient")
    """

    id: str
    factory: Factory
    restart: Restart = "permanent"
    shutdown: float = 5.0
    significant: bool = False
    handshake: bool = False
    start_timeout: float | None = None
    kind: Kind = "worker"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise v.fail("id", "a non-empty str", self.id)
        factory = self.factory
        if inspect.isawaitable(factory):
            if inspect.iscoroutine(factory):
                factory.close()  # never awaited: close it so Python does not warn
            raise v.fail(
                "factory",
                "a callable returning an awaitable (pass the function, not its call: "
                "ChildSpec(id, worker), not ChildSpec(id, worker()))",
                factory,
            )
        if not callable(factory):
            raise v.fail("factory", "a callable returning an awaitable", factory)
        if inspect.isasyncgenfunction(factory) or inspect.isgeneratorfunction(factory):
            raise v.fail("factory", "an async def function, not a generator function", factory)
        v.choice("restart", self.restart, _RESTARTS)
        shutdown = self.shutdown
        if isinstance(shutdown, timedelta):
            shutdown = shutdown.total_seconds()
        object.__setattr__(
            self, "shutdown", v.seconds("shutdown", shutdown, allow_zero=False, allow_inf=True)
        )
        if not isinstance(self.significant, bool):
            raise v.fail("significant", "a bool", self.significant)
        if self.significant and self.restart == "permanent":
            raise v.fail(
                "significant",
                "False for a permanent child (only transient and temporary children "
                "can be significant)",
                self.significant,
            )
        if not isinstance(self.handshake, bool):
            raise v.fail("handshake", "a bool", self.handshake)
        timeout = v.optional_seconds("start_timeout", self.start_timeout, allow_zero=False)
        if timeout is not None and not self.handshake:
            raise v.fail("start_timeout", "None unless handshake=True", self.start_timeout)
        object.__setattr__(self, "start_timeout", timeout)
        v.choice("kind", self.kind, _KINDS)

    @property
    def waits_forever(self) -> bool:
        """True when ``shutdown`` is infinite."""
        return math.isinf(self.shutdown)
