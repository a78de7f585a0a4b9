"""The public supervisors: :class:`Supervisor` (static, ordered) and :class:`DynamicSupervisor`."""

from __future__ import annotations

import random as _random
from collections.abc import Iterable
from datetime import timedelta

from .. import _validate as v
from .._backoff import Backoff
from .._clock import Clock
from .._events import Listener
from ._core import STRATEGIES, Strategy
from ._engine import AutoShutdown, _Engine
from ._errors import SupervisorError
from ._spec import ChildSpec

__all__ = ["DynamicSupervisor", "Supervisor"]


class Supervisor(_Engine):
    """Run children, restart the ones that fail, give up loudly when failures repeat,
    stop them in order: Erlang/OTP's supervisor for asyncio.

    The children start one after the other in the order given (each waits for the
    previous one's :func:`~buttress.supervise.ready` handshake when its spec has one)
    and stop in the reverse order. When a child exits and its ``restart`` type says so
    (see :class:`ChildSpec`), the ``strategy`` decides what restarts:

    * ``"one_for_one"`` (default): only that child;
    * ``"one_for_all"``: every child: the others are stopped (last started first),
      then all start again in order — for children that cannot work without each other;
    * ``"rest_for_one"``: that child and the ones started after it (which depend on
      it), stopped last-first and started again in order.

    Temporary children are never restarted, not even when a sibling's failure stopped
    them. Every restart counts against the **restart intensity**: more than
    ``max_restarts`` restarts within ``within`` seconds and the supervisor stops every
    child in reverse order and raises :class:`SupervisorGaveUpError` — to whoever awaits
    it, or to its parent supervisor, for which that is a crash of the child. A child
    that fails to start while being restarted counts as another restart.

    **Running it.** ``await sup.run()`` supervises in the calling task until stopped;
    ``await sup.start()`` / ``await sup.stop()`` run it in the background; ``async with
    sup:`` starts it, and stops it at the end of the block — and, like a TaskGroup,
    cancels the block if the supervisor gives up, then raises the error. If a child
    fails to start, the ones already started are stopped and :class:`ChildStartError`
    is raised (OTP: the supervisor fails to start). Cancelling the task running
    ``run()`` stops the children in reverse order and lets the ``CancelledError``
    through.

    **Defaults.** ``max_restarts=3, within=5.0``: three restarts are absorbed in any
    five seconds, a fourth gives up. OTP's own default (1 in 5) suits cheap Erlang
    processes; asyncio children are usually network clients whose dependency blips
    make them fail in small bursts, and 3 in 5 rides out such a burst while a child that
    crashes at once on every start is still given up on in milliseconds. Tune it with
    ``docs/supervisor.md``: the intensity must allow the *sustained* failure rate you
    accept, and nested supervisors multiply.

    Args:
        children: the initial :class:`ChildSpec` list, in start order (ids unique).
        strategy: ``"one_for_one"`` | ``"one_for_all"`` | ``"rest_for_one"``.
        max_restarts: restarts allowed within ``within`` seconds, ``>= 0`` (0: never
            restart; the first exit that would restart gives up). Default 3.
        within: the intensity window, seconds ``> 0`` (or a ``timedelta``). Default 5.
        backoff: an optional :class:`~buttress.Backoff` to wait before each restart:
            the n-th restart of a child within the window waits
            ``backoff.compute(n, ...)``; jitter draws from ``random``. Default ``None``
            (restart at once, as OTP). Waiting spreads restarts out, so a slow crash
            loop may never exceed the intensity: see the docs.
        auto_shutdown: ``"never"`` (default), ``"any_significant"`` (stop the
            supervisor when a significant child ends by itself and is not restarted) or
            ``"all_significant"`` (when the last of them does), OTP 24's semantics. A
            child stopped by the supervisor never triggers it. Significant children
            are refused under ``"never"``.
        clock: the clock for the window, backoff and shutdown timeouts. Default: the
            system clock.
        random: the ``random.Random`` for backoff jitter. Default: a private one.
        name: for events, stats and errors. Default ``"supervisor-N"``.
        listeners: event listeners (:class:`ChildStarted`, :class:`ChildExited`,
            :class:`ChildRestarted`, :class:`SupervisorGaveUp`,
            :class:`ChildUnkillable`, :class:`SupervisorStopped`).

    Raises:
        ConfigError: a bad option, a child spec that is not a ChildSpec, duplicate ids,
            a significant child under ``auto_shutdown="never"``.

    Example::

        from buttress.supervise import ChildSpec, Supervisor, ready

        async def consumer() -> None:
            conn = await connect()
            ready()
            async for message in conn:
                await handle(message)

        sup = Supervisor(
            [ChildSpec("db", keep_pool), ChildSpec("consumer", consumer, handshake=True)],
            strategy="rest_for_one", max_restarts=3, within=5.0,
        )
        await sup.run()     # or: async with sup: await serve_http()
    """

    _kind = "supervisor"

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        within: float | timedelta = 5.0,
        backoff: Backoff | None = None,
        auto_shutdown: AutoShutdown = "never",
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        super().__init__(
            children,
            strategy=v.choice("strategy", strategy, STRATEGIES),  # type: ignore[arg-type]
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            auto_shutdown=auto_shutdown,
            clock=clock,
            random=random,
            name=name,
            listeners=listeners,
        )

    async def restart_child(self, child_id: str) -> None:
        """Start again a stopped child (one stopped by :meth:`terminate_child`, or a
        transient child that ended normally). Not counted as a restart.

        Raises:
            SupervisorError: not running, no such child, or the child is running.
            ChildStartError: the child failed to start (it stays stopped).
        """
        await self._call(self._op_restart_child, child_id)

    async def delete_child(self, child_id: str) -> None:
        """Forget the spec of a stopped child.

        Raises:
            SupervisorError: not running, no such child, or the child is running.
        """
        await self._call(self._op_delete_child, child_id)


class DynamicSupervisor(_Engine):
    """A supervisor of many children of one kind, started on demand (OTP's
    ``simple_one_for_one``, Elixir's ``DynamicSupervisor``).

    It starts with no child; :meth:`start_child` adds one. Each is restarted on its own
    (one-for-one) per its ``restart`` type, under the same restart intensity as
    :class:`Supervisor`; children that end for good, and children stopped with
    :meth:`terminate_child`, are forgotten. On shutdown every child is cancelled **at
    once** and waited for in parallel (there is no order among them), each up to its
    ``shutdown``. Typical children: one per connection, per job, per tenant — usually
    ``restart="temporary"`` or ``"transient"``.

    Args:
        max_children: the most children at once, ``>= 1``, or ``None`` (default: no
            limit); :meth:`start_child` beyond it raises :class:`SupervisorError`.
        max_restarts, within, backoff, auto_shutdown, clock, random, listeners: as for
            :class:`Supervisor` (defaults 3 restarts in 5 s, no backoff, ``"never"``).
        name: Default ``"dynamic-supervisor-N"``.

    Raises:
        ConfigError: a bad option.

    Example::

        handlers = DynamicSupervisor(max_children=1000, name="connections")

        async def on_connect(reader, writer) -> None:
            await handlers.start_child(
                ChildSpec(f"conn-{next(ids)}", partial(serve, reader, writer),
                          restart="temporary", shutdown=2.0)
            )

        async with handlers:
            await server.serve_forever()
    """

    _kind = "dynamic-supervisor"
    _parallel = True

    def __init__(
        self,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        within: float | timedelta = 5.0,
        backoff: Backoff | None = None,
        auto_shutdown: AutoShutdown = "never",
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.max_children = (
            None if max_children is None else v.integer("max_children", max_children, minimum=1)
        )
        super().__init__(
            (),
            strategy="one_for_one",
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            auto_shutdown=auto_shutdown,
            clock=clock,
            random=random,
            name=name,
            listeners=listeners,
        )

    def _check_room(self) -> None:
        if self.max_children is not None and len(self._children) >= self.max_children:
            raise SupervisorError(
                f"supervisor {self.name!r} already holds max_children={self.max_children} children",
                supervisor=self.name,
            )
