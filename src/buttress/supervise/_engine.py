"""The supervisor engine shared by :class:`Supervisor` and :class:`DynamicSupervisor`.

One control coroutine (``_main``) owns every child and does one thing at a time, like an
OTP supervisor process reading its mailbox: child exits (posted by the tasks' done
callbacks), backoff timers and API calls (``start_child``...) arrive in one inbox and are
handled in order. While it waits for a child to stop or to signal readiness, later
messages wait their turn; a message about a task that is no longer the child's current
one (it was stopped, or replaced) is stale and ignored.

Every wait takes its time from the injected clock, and no lock exists: the control
coroutine is the only writer of the supervisor's state.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import math
import random as _random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, Self

from .. import _validate as v
from .._backoff import Backoff
from .._clock import Clock, TimerHandle, resolve
from .._errors import ConfigError
from .._errors import TimeoutError as _TimeoutError
from .._events import GLOBAL_LISTENERS, Event, Listener, emit, logger
from .._policy import next_index
from ._core import RestartWindow, Strategy, plan
from ._errors import ChildStartError, SupervisorError, SupervisorGaveUpError
from ._events import (
    NORMAL_REASONS,
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildUnkillable,
    SupervisorGaveUp,
    SupervisorStopped,
)
from ._spec import _CURRENT, ChildSpec, Restart, Shutdown, _Handshake, ready

__all__ = ["AutoShutdown", "ChildCounts", "ChildInfo", "SupervisorStats"]

AutoShutdown = Literal["never", "any_significant", "all_significant"]
_AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")

ChildState = Literal["starting", "running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class SupervisorStats:
    """A snapshot of a supervisor's counters (``stats()``).

    ``children`` counts the child specs it holds and ``active`` the children running
    now; ``restarts`` the restarts it decided since construction and
    ``restarts_in_window`` those still inside the intensity window; ``exits`` the
    children that ended by themselves (not stopped by the supervisor), of which
    ``crashes`` abnormally; ``gave_up`` the runs that ended by exceeding the intensity;
    ``unkillable`` the children detached after outliving their ``shutdown``.
    """

    name: str
    strategy: str
    running: bool
    children: int
    active: int
    restarts: int
    restarts_in_window: int
    exits: int
    crashes: int
    gave_up: int
    unkillable: int


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child as ``which_children()`` sees it.

    ``state`` is ``"starting"`` (waiting for its handshake), ``"running"``,
    ``"restarting"`` (stopped, its restart waiting for a backoff delay) or
    ``"stopped"``; ``restarts`` counts its restarts in this run of the supervisor;
    ``task`` is its current task, or ``None``.
    """

    id: str
    state: ChildState
    restart: str
    kind: str
    restarts: int
    task: asyncio.Task[Any] | None


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """``count_children()``: child ``specs`` held, ``active`` (running) children, and the
    specs of each kind (``supervisors``, ``workers``), as OTP's ``count_children``."""

    specs: int
    active: int
    supervisors: int
    workers: int


class _Child:
    """A child's spec and its per-run state; owned by the control coroutine."""

    __slots__ = ("generation", "previous", "recent", "restarts", "spec", "state", "task")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.task: asyncio.Task[Any] | None = None
        self.state: ChildState = "stopped"
        self.restarts = 0
        self.recent: collections.deque[float] = collections.deque()  # for backoff
        self.previous = 0.0  # the last backoff delay
        self.generation = 0


class _Pending:
    """A restart waiting for its backoff delay."""

    __slots__ = ("children", "handle")

    def __init__(self, children: list[_Child]) -> None:
        self.children = children
        self.handle: TimerHandle | None = None


class _GaveUp(Exception):
    def __init__(self, error: SupervisorGaveUpError) -> None:
        super().__init__(str(error))
        self.error = error


async def _run_child(factory: Callable[[], Awaitable[object]], handshake: _Handshake | None) -> Any:
    # In the child's own task (so in its own copy of the context): set the handshake,
    # which also hides the supervisor's own handshake from the child.
    _CURRENT.set(handshake)
    return await factory()


def _classify(task: asyncio.Task[Any]) -> tuple[str, BaseException | None]:
    """The reason a child task ended by itself, and its exception."""
    if task.cancelled():
        return "cancelled", None
    exc = task.exception()
    if exc is None:
        return "return", None
    if isinstance(exc, Shutdown):
        return "shutdown", exc
    return "exception", exc


Message = tuple[Any, ...]


class _Engine:
    """The shared machinery; see :class:`Supervisor` for the behaviour."""

    _kind = "supervisor"
    _parallel = False  # stop children all at once (dynamic) or one by one, in reverse

    def __init__(
        self,
        children: Iterable[ChildSpec],
        *,
        strategy: Strategy,
        max_restarts: int,
        within: float | timedelta,
        backoff: Backoff | None,
        auto_shutdown: AutoShutdown,
        clock: Clock | None,
        random: _random.Random | None,
        name: str | None,
        listeners: Iterable[Listener],
    ) -> None:
        self.strategy: Strategy = strategy
        self.max_restarts = v.integer("max_restarts", max_restarts, minimum=0)
        self.within = v.seconds("within", within, allow_zero=False)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise v.fail("backoff", "a buttress Backoff or None", backoff)
        self.backoff = backoff
        self.auto_shutdown: AutoShutdown = v.choice(  # type: ignore[assignment]
            "auto_shutdown", auto_shutdown, _AUTO_SHUTDOWN
        )
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, self._kind, lambda: next_index(self._kind))
        self._listeners = v.listeners(listeners)
        if isinstance(children, ChildSpec | str | bytes):
            raise v.fail("children", "an iterable of ChildSpec", children)
        specs = tuple(children)
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            if not isinstance(spec, ChildSpec):
                raise v.fail(f"children[{index}]", "a ChildSpec", spec)
            if spec.id in seen:
                raise ConfigError(
                    f"children[{index}].id must be unique within the supervisor, "
                    f"got {spec.id!r} twice"
                )
            seen.add(spec.id)
            self._check_significant(spec, f"children[{index}].significant")
        self._specs = specs
        self._children: dict[str, _Child] = {spec.id: _Child(spec) for spec in specs}
        self._window = RestartWindow(self.max_restarts, self.within)
        # per run
        self._running = False
        self._task: asyncio.Task[Any] | None = None
        self._inbox: asyncio.Queue[Message] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._finished: asyncio.Event | None = None
        self._outcome: BaseException | None = None
        self._stop_requests = 0
        self._pending: list[_Pending] = []
        self._terminating: dict[asyncio.Task[Any], float] = {}
        self._exit_reason: str | None = None
        self._host: asyncio.Task[Any] | None = None
        self._host_cancelled = False
        # kept for ever: tasks that outlived their shutdown (a reference keeps them alive)
        self._detached: set[asyncio.Task[Any]] = set()
        # counters since construction
        self._restarts = self._exits = self._crashes = self._gave_up = self._unkillable = 0

    def _check_significant(self, spec: ChildSpec, where: str) -> None:
        if spec.significant and self.auto_shutdown == "never":
            raise v.fail(
                where,
                "False when auto_shutdown is 'never' (set auto_shutdown="
                "'any_significant' or 'all_significant' to use significant children)",
                spec.significant,
            )

    # -- observing --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Receive this supervisor's events.

        Raises:
            ConfigError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise v.fail("listener", "a callable taking one event", listener)
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop delivering this supervisor's events to ``listener``.

        Raises:
            ConfigError: ``listener`` was not registered on this supervisor.
        """
        if listener not in self._listeners:
            raise v.fail("listener", "a listener registered on this supervisor", listener)
        items = list(self._listeners)
        items.remove(listener)
        self._listeners = tuple(items)

    def _emit(self, event: Event) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)

    @property
    def running(self) -> bool:
        """True from ``start()``/``run()`` until every child has been stopped."""
        return self._running

    def stats(self) -> SupervisorStats:
        """Counters since construction, and the children now."""
        children = self._children.values()
        return SupervisorStats(
            name=self.name,
            strategy=self.strategy,
            running=self._running,
            children=len(self._children),
            active=sum(1 for c in children if c.task is not None and c.state == "running"),
            restarts=self._restarts,
            restarts_in_window=self._window.count(self.clock.monotonic()),
            exits=self._exits,
            crashes=self._crashes,
            gave_up=self._gave_up,
            unkillable=self._unkillable,
        )

    def which_children(self) -> tuple[ChildInfo, ...]:
        """Every child, in start order (OTP's ``which_children``)."""
        return tuple(
            ChildInfo(c.spec.id, c.state, c.spec.restart, c.spec.kind, c.restarts, c.task)
            for c in self._children.values()
        )

    def count_children(self) -> ChildCounts:
        """How many children, of which kind, running (OTP's ``count_children``)."""
        children = list(self._children.values())
        supervisors = sum(1 for c in children if c.spec.kind == "supervisor")
        return ChildCounts(
            specs=len(children),
            active=sum(1 for c in children if c.task is not None and c.state == "running"),
            supervisors=supervisors,
            workers=len(children) - supervisors,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def _claim(self) -> None:
        if self._running:
            raise SupervisorError(
                f"supervisor {self.name!r} is already running", supervisor=self.name
            )
        self._running = True
        self._finished = asyncio.Event()
        self._outcome = None

    async def run(self) -> None:
        """Start the children and supervise them in the calling task until stopped.

        Returns when the supervisor is stopped (:meth:`stop`, or an ``auto_shutdown``);
        the children are stopped in reverse start order (all at once for a
        :class:`DynamicSupervisor`) before it returns or raises. A supervisor can run
        again after it ended, from its initial children.

        Raises:
            ChildStartError: a child failed to start (the others were stopped).
            SupervisorGaveUpError: the restart intensity was exceeded.
            asyncio.CancelledError: the calling task was cancelled (the children are
                stopped first).
            SupervisorError: it is already running.
        """
        self._claim()
        self._task = asyncio.current_task()
        self._ready = None
        await self._main()

    async def start(self) -> None:
        """Start the children, then supervise them in a background task; returns once
        every initial child has started.

        Stop it with :meth:`stop`; :meth:`wait` waits for it to end and reports how.

        Raises:
            ChildStartError: a child failed to start (the others were stopped).
            SupervisorError: it is already running.
        """
        self._claim()
        loop = asyncio.get_running_loop()
        ready = self._ready = loop.create_future()
        # The background task must not signal the caller's own handshake (if the
        # caller is itself a supervised child): it runs with no handshake in context.
        context = contextvars.copy_context()
        context.run(_CURRENT.set, None)
        task = loop.create_task(self._main(), name=f"supervisor {self.name}", context=context)
        self._task = task
        task.add_done_callback(self._background_done)
        try:
            await asyncio.wait((ready, task), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._stop_task(task)
            raise
        if not ready.done():
            failure = self._outcome
            if failure is not None:
                raise failure
            raise SupervisorError(
                f"supervisor {self.name!r} stopped while starting", supervisor=self.name
            )

    async def stop(self) -> None:
        """Stop every child (reverse start order; all at once for a dynamic supervisor)
        and the supervisor; returns when they have stopped. Does nothing if it is not
        running. Never raises the supervisor's failure: :meth:`wait` does.

        Raises:
            SupervisorError: called from the supervisor's own task.
        """
        task = self._task
        if not self._running or task is None or task.done():
            return
        if task is asyncio.current_task():
            raise SupervisorError(
                f"supervisor {self.name!r} cannot be stopped from its own task",
                supervisor=self.name,
            )
        await self._stop_task(task)

    async def _stop_task(self, task: asyncio.Task[Any]) -> None:
        if not task.done():
            self._stop_requests += 1
            task.cancel()
        finished = self._finished
        if finished is not None:
            await finished.wait()
        elif not task.done():
            await asyncio.wait((task,))

    async def wait(self) -> None:
        """Wait until the supervisor ends; raise what ended it, if it failed.

        Cancelling the waiter does not stop the supervisor.

        Raises:
            SupervisorGaveUpError: it gave up.
            ChildStartError: it failed to start.
            SupervisorError: it was never started.
        """
        finished = self._finished
        if finished is None:
            raise SupervisorError(
                f"supervisor {self.name!r} was never started", supervisor=self.name
            )
        await finished.wait()
        if self._outcome is not None:
            raise self._outcome

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: reported through wait() / async with
        elif self._running and self._inbox is None:
            # Cancelled before its first step: _main never ran, so finish for it.
            self._running = False
            if self._finished is not None:
                self._finished.set()
        host = self._host
        if host is not None and self._outcome is not None and not host.done():
            # Like a TaskGroup: the body of ``async with`` must not carry on as if the
            # supervised service were up.
            self._host_cancelled = True
            host.cancel()

    async def __aenter__(self) -> Self:
        await self.start()
        self._host = asyncio.current_task()
        self._host_cancelled = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        host, self._host = self._host, None
        cancelled_by_us, self._host_cancelled = self._host_cancelled, False
        if cancelled_by_us and host is not None:
            host.uncancel()
        task = self._task
        interrupted = False
        if task is not None:
            # Stop the children even if the host is cancelled meanwhile: nothing may
            # outlive the block.
            while self._running:
                try:
                    await self._stop_task(task)
                except asyncio.CancelledError:
                    interrupted = True
        failure = self._outcome
        if interrupted:
            raise asyncio.CancelledError
        if failure is None:
            return
        if exc_type is None:
            raise failure
        if (
            cancelled_by_us
            and issubclass(exc_type, asyncio.CancelledError)
            and host is not None
            and host.cancelling() == 0
        ):
            raise failure from exc  # the body was cancelled because the supervisor gave up
        if exc is not None:
            exc.add_note(f"meanwhile, {failure}")

    # -- the control coroutine --------------------------------------------------------------

    async def _main(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbox = asyncio.Queue()
        finished = self._finished
        assert finished is not None
        self._exit_reason = None
        self._window.clear()
        self._children = {spec.id: _Child(spec) for spec in self._specs}
        reason = "stopped"
        error: BaseException | None = None
        try:
            try:
                await self._start_initial()
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)
                ready()  # our own handshake, when we are a supervised child
                await self._serve()
                reason = "auto_shutdown"
            except _GaveUp as gave_up:
                reason, error = "gave_up", gave_up.error
            except ChildStartError as exc:
                reason, error = "start_failed", exc
            except asyncio.CancelledError:
                reason = "cancelled"
            except Exception as exc:  # a bug of ours or of a Backoff: still stop children
                reason, error = "error", exc
            finally:
                await self._shutdown()
        finally:
            self._close_inbox()
            stops, self._stop_requests = self._stop_requests, 0
            for _ in range(stops):
                task.uncancel()
            cancelled = task.cancelling() > 0
            if reason == "cancelled" and not cancelled:
                reason = "stopped"
            elif cancelled and reason != "gave_up":
                reason = "cancelled"
            self._outcome = error
            self._running = False
            self._emit(SupervisorStopped(self.name, reason))
            finished.set()
        if cancelled:
            raise asyncio.CancelledError
        if error is not None:
            raise error

    def _close_inbox(self) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is None:
            return
        while not inbox.empty():
            message = inbox.get_nowait()
            if message[0] == "op" and not message[3].done():
                message[3].set_exception(
                    SupervisorError(f"supervisor {self.name!r} stopped", supervisor=self.name)
                )

    async def _serve(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        while self._exit_reason is None:
            message = await inbox.get()
            kind = message[0]
            if kind == "exit":
                _, child, task = message
                if child.task is not task:
                    continue  # stale: stopped by us, or replaced since
                child.task = None
                child.state = "stopped"
                reason, exc = _classify(task)
                self._emit(ChildExited(self.name, child.spec.id, reason, exc))
                await self._after_exit(child, reason, exc)
            elif kind == "failed":
                _, child, generation, reason, exc = message
                if child.generation == generation and child.task is None:
                    await self._after_exit(child, reason, exc)
            elif kind == "restart":
                pending = message[1]
                if pending in self._pending:
                    self._pending.remove(pending)
                    await self._start_group(pending.children)
            else:  # "op"
                _, fn, args, future = message
                if future.done():
                    continue  # the caller gave up before it ran
                try:
                    result = await fn(*args)
                except asyncio.CancelledError:
                    if not future.done():
                        future.set_exception(
                            SupervisorError(
                                f"supervisor {self.name!r} stopped", supervisor=self.name
                            )
                        )
                    raise
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)

    def _post(self, message: Message) -> None:
        inbox = self._inbox
        if inbox is not None:
            inbox.put_nowait(message)

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``fn(*args)`` in the control coroutine, in turn with everything else."""
        if not self._running or self._inbox is None:
            raise SupervisorError(f"supervisor {self.name!r} is not running", supervisor=self.name)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(("op", fn, args, future))
        return await future

    # -- starting ---------------------------------------------------------------------------

    async def _start_initial(self) -> None:
        for child in list(self._children.values()):
            failure = await self._start_one(child, initial=True)
            if failure is not None:
                raise self._start_error(child, *failure)

    def _start_error(
        self, child: _Child, reason: str, exc: BaseException | None
    ) -> ChildStartError:
        detail = f": {exc!r}" if exc is not None else ""
        error = ChildStartError(
            f"supervisor {self.name!r}: child {child.spec.id!r} failed to start ({reason}){detail}",
            supervisor=self.name,
            child=child.spec.id,
            reason=reason,
        )
        error.__cause__ = exc
        return error

    async def _start_one(
        self, child: _Child, *, initial: bool
    ) -> tuple[str, BaseException | None] | None:
        """Start ``child``; ``None`` once started, else ``(reason, exception)``.

        A failure during a restart is posted as a message, so it goes through the
        restart logic (and the intensity) like any crash.
        """
        spec = child.spec
        loop = asyncio.get_running_loop()
        handshake = _Handshake(loop.create_future()) if spec.handshake else None
        child.generation += 1
        generation = child.generation
        task = loop.create_task(_run_child(spec.factory, handshake), name=f"{self.name}/{spec.id}")
        task.add_done_callback(functools.partial(self._child_done, child))
        child.task = task
        child.state = "starting"
        if handshake is not None:
            outcome = await self._until_ready(handshake.future, task, spec.start_timeout)
            failure: tuple[str, BaseException | None] | None = None
            if outcome == "timeout":
                timeout = spec.start_timeout
                failure = (
                    "start_timeout",
                    _TimeoutError(
                        f"child {spec.id!r} did not signal ready within {timeout:g} s",
                        timeout=timeout,
                    ),
                )
                await self._terminate([child], report=False)
            elif outcome == "done":
                reason, exc = _classify(task)
                if reason not in NORMAL_REASONS:
                    failure = (reason, exc)
                    child.task = None
            if failure is not None:
                child.state = "stopped"
                self._emit(ChildExited(self.name, spec.id, *failure, during_start=True))
                if not initial:
                    self._post(("failed", child, generation, *failure))
                return failure
        child.state = "running"
        self._emit(ChildStarted(self.name, spec.id, child.restarts))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: child %r started", self.name, spec.id)
        return None

    async def _until_ready(
        self, ready: asyncio.Future[None], task: asyncio.Task[Any], limit: float | None
    ) -> str:
        """``"ready"``, ``"done"`` (the task ended first) or ``"timeout"``."""
        if ready.done():
            return "ready"
        if task.done():
            return "done"
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def settle(outcome: str, *_: object) -> None:
            if not waiter.done():
                waiter.set_result(outcome)

        on_ready = functools.partial(settle, "ready")
        on_done = functools.partial(settle, "done")
        ready.add_done_callback(on_ready)
        task.add_done_callback(on_done)
        handle = None if limit is None else self.clock.call_later(limit, lambda: settle("timeout"))
        try:
            return await waiter
        finally:
            ready.remove_done_callback(on_ready)
            task.remove_done_callback(on_done)
            if handle is not None:
                handle.cancel()

    def _child_done(self, child: _Child, task: asyncio.Task[Any]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here: the supervisor reports it
        if child.task is task:
            self._post(("exit", child, task))

    async def _start_group(self, children: list[_Child]) -> None:
        for child in children:
            if self._children.get(child.spec.id) is not child or child.task is not None:
                continue  # deleted meanwhile, or already started by another restart
            if await self._start_one(child, initial=False) is not None:
                return  # the failure is posted: the strategy runs again for it

    # -- exits and restarts -----------------------------------------------------------------

    async def _after_exit(self, child: _Child, reason: str, exc: BaseException | None) -> None:
        spec = child.spec
        if self._children.get(spec.id) is not child:
            return  # deleted meanwhile
        normal = reason in NORMAL_REASONS
        self._exits += 1
        if not normal:
            self._crashes += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: child %r exited (%s): %r", self.name, spec.id, reason, exc)
        if spec.restart == "temporary" or (spec.restart == "transient" and normal):
            if spec.significant and self._auto_shutdown_due(child):
                self._exit_reason = "auto_shutdown"
            if spec.restart == "temporary" or self._parallel:
                self._forget(child)
            return
        now = self.clock.monotonic()
        allowed, count = self._window.record(now)
        if not allowed:
            self._gave_up += 1
            self._emit(SupervisorGaveUp(self.name, spec.id, count, self.within, exc))
            error = SupervisorGaveUpError(
                f"supervisor {self.name!r} gave up: restart {count} within {self.within:g} s "
                f"exceeds max_restarts={self.max_restarts}; child {spec.id!r} exited "
                f"({reason}{f': {exc!r}' if exc is not None else ''})",
                supervisor=self.name,
                child=spec.id,
                restarts=count,
                within=self.within,
            )
            error.__cause__ = exc
            logger.warning("%s", error)
            raise _GaveUp(error)
        self._restarts += 1
        order = list(self._children)
        temporary = {cid for cid, c in self._children.items() if c.spec.restart == "temporary"}
        stop_ids, start_ids = plan(self.strategy, order, spec.id, temporary)
        stopping = [self._children[cid] for cid in stop_ids]
        for other in stopping:
            self._unpend(other)
            await self._terminate([other])
            if other.spec.restart == "temporary":
                self._forget(other)
        starting = [self._children[cid] for cid in start_ids if cid in self._children]
        for other in starting:
            self._unpend(other)
            other.state = "restarting"
            other.restarts += 1
        delay = self._delay(child, now)
        self._emit(
            ChildRestarted(self.name, spec.id, tuple(c.spec.id for c in starting), delay, count)
        )
        if delay > 0.0:
            pending = _Pending(starting)
            pending.handle = self.clock.call_later(delay, lambda: self._post(("restart", pending)))
            self._pending.append(pending)
        else:
            await self._start_group(starting)

    def _delay(self, child: _Child, now: float) -> float:
        """The backoff before restarting ``child``: it grows with the child's restarts in
        the intensity window and starts over once they have left it."""
        if self.backoff is None:
            return 0.0
        recent, within = child.recent, self.within
        while recent and now - recent[0] >= within:
            recent.popleft()
        recent.append(now)
        if len(recent) == 1:
            child.previous = 0.0
        delay = self.backoff.compute(len(recent), child.previous, self.random)
        child.previous = delay
        return delay

    def _unpend(self, child: _Child) -> None:
        """Take ``child`` out of any restart waiting for its delay."""
        for pending in self._pending:
            if child in pending.children:
                pending.children.remove(child)
        if child.state == "restarting":
            child.state = "stopped"

    def _forget(self, child: _Child) -> None:
        child.state = "stopped"
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]

    def _auto_shutdown_due(self, child: _Child) -> bool:
        if self.auto_shutdown == "any_significant":
            return True
        return not any(
            other is not child
            and other.spec.significant
            and (other.task is not None or other.state == "restarting")
            for other in self._children.values()
        )

    # -- stopping ---------------------------------------------------------------------------

    async def _terminate(self, children: list[_Child], *, report: bool = True) -> None:
        """Cancel ``children`` at once and wait for them, each up to its ``shutdown``;
        detach the ones still running then. Safe to call again after an interruption:
        a child is cancelled once, and its deadline does not move."""
        now = self.clock.monotonic()
        for child in children:
            task = child.task
            if task is None:
                continue
            if task.done() and task not in self._terminating:
                self._finished_child(child, task, by_us=False, report=report)
            elif task not in self._terminating:
                self._terminating[task] = now + child.spec.shutdown
                task.cancel()
        while True:
            now = self.clock.monotonic()
            live: list[asyncio.Task[Any]] = []
            for child in children:
                task = child.task
                if task is None:
                    continue
                if task.done():
                    self._finished_child(child, task, by_us=True, report=report)
                elif self._terminating[task] <= now:
                    self._detach(child, task)
                else:
                    live.append(task)
            if not live:
                return
            await self._wait_all(live, min(self._terminating[task] for task in live))

    def _finished_child(
        self, child: _Child, task: asyncio.Task[Any], *, by_us: bool, report: bool
    ) -> None:
        self._terminating.pop(task, None)
        during_start = child.state == "starting"
        child.task = None
        child.state = "stopped"
        if not report:
            return
        if by_us:
            reason, exc = "terminated", (None if task.cancelled() else task.exception())
        else:
            reason, exc = _classify(task)
        self._emit(ChildExited(self.name, child.spec.id, reason, exc, during_start))

    def _detach(self, child: _Child, task: asyncio.Task[Any]) -> None:
        self._terminating.pop(task, None)
        child.task = None
        child.state = "stopped"
        self._unkillable += 1
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        logger.warning(
            "%s: child %r still running %g s after being cancelled; detached",
            self.name,
            child.spec.id,
            child.spec.shutdown,
        )
        self._emit(ChildUnkillable(self.name, child.spec.id, child.spec.shutdown))

    async def _wait_all(self, tasks: list[asyncio.Task[Any]], deadline: float) -> None:
        """Until every task is done, or the clock reaches ``deadline``."""
        if math.isinf(deadline):
            await asyncio.wait(tasks)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = [len(tasks)]

        def settle(*_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        def one_done(_: object) -> None:
            left[0] -= 1
            if left[0] == 0:
                settle()

        for task in tasks:
            task.add_done_callback(one_done)
        handle = self.clock.call_later(deadline - self.clock.monotonic(), settle)
        try:
            await waiter
        finally:
            handle.cancel()
            for task in tasks:
                task.remove_done_callback(one_done)

    async def _shutdown(self) -> None:
        """Stop every child: in reverse start order, or all at once when ``_parallel``.

        Cancellation of the control coroutine cannot cut this short (it would leave
        children running): it is absorbed here and re-raised by ``_main``, which sees
        it in ``task.cancelling()``.
        """
        for pending in self._pending:
            if pending.handle is not None:
                pending.handle.cancel()
        self._pending.clear()
        while True:
            try:
                if self._parallel:
                    await self._terminate(list(self._children.values()))
                else:
                    for child in reversed(list(self._children.values())):
                        await self._terminate([child])
                break
            except asyncio.CancelledError:
                continue
        for child in list(self._children.values()):
            if child.spec.restart == "temporary" or self._parallel:
                self._forget(child)
            else:
                child.state = "stopped"

    # -- operations run by the control coroutine --------------------------------------------

    async def _op_start_child(self, spec: ChildSpec) -> None:
        if not isinstance(spec, ChildSpec):
            raise v.fail("spec", "a ChildSpec", spec)
        if spec.id in self._children:
            raise ConfigError(
                f"spec.id must be unique within supervisor {self.name!r}, got {spec.id!r}, "
                "which it already holds"
            )
        self._check_significant(spec, "spec.significant")
        self._check_room()
        child = _Child(spec)
        self._children[spec.id] = child
        failure = await self._start_one(child, initial=True)
        if failure is not None:
            self._forget(child)
            raise self._start_error(child, *failure)

    def _check_room(self) -> None:
        """Raise if no child may be added (a dynamic supervisor's ``max_children``)."""

    def _lookup(self, child_id: str) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise SupervisorError(
                f"supervisor {self.name!r} has no child {child_id!r}", supervisor=self.name
            )
        return child

    async def _op_terminate_child(self, child_id: str) -> None:
        child = self._lookup(child_id)
        self._unpend(child)
        await self._terminate([child])
        if child.spec.restart == "temporary" or self._parallel:
            self._forget(child)

    async def _op_restart_child(self, child_id: str) -> None:
        child = self._lookup(child_id)
        if child.task is not None:
            raise SupervisorError(
                f"supervisor {self.name!r}: child {child_id!r} is running", supervisor=self.name
            )
        self._unpend(child)
        failure = await self._start_one(child, initial=True)
        if failure is not None:
            raise self._start_error(child, *failure)

    async def _op_delete_child(self, child_id: str) -> None:
        child = self._lookup(child_id)
        if child.task is not None:
            raise SupervisorError(
                f"supervisor {self.name!r}: child {child_id!r} is running; "
                "terminate_child() it first",
                supervisor=self.name,
            )
        self._unpend(child)
        self._forget(child)

    # -- the public child operations --------------------------------------------------------

    def child_spec(
        self,
        id: str | None = None,
        *,
        restart: Restart = "permanent",
        significant: bool = False,
        start_timeout: float | None = None,
    ) -> ChildSpec:
        """The spec that makes this supervisor the child of another one.

        Its factory is :meth:`run`, its handshake is the end of its own initial start
        (so the parent starts its next child only once this whole subtree is up), and its
        ``shutdown`` is infinite: it needs the time to stop its own children, each bounded
        by its own ``shutdown``. Giving up is a crash for the parent.

        Args:
            id: the child id in the parent. Default: this supervisor's ``name``.
            restart: as for :class:`ChildSpec`. Default ``"permanent"``.
            significant: as for :class:`ChildSpec`. Default ``False``.
            start_timeout: as for :class:`ChildSpec`. Default ``None``.

        Example::

            workers = bt.Supervisor([...], strategy="one_for_all", name="workers")
            app = bt.Supervisor([db_spec, workers.child_spec(), api_spec], strategy="rest_for_one")
        """
        return ChildSpec(
            self.name if id is None else id,
            self.run,
            restart=restart,
            shutdown=math.inf,
            significant=significant,
            handshake=True,
            start_timeout=start_timeout,
            kind="supervisor",
        )

    async def start_child(self, spec: ChildSpec) -> None:
        """Add ``spec`` and start it (after the others; waits for its handshake).

        A child that fails to start is not kept and the failure is not a restart.
        Do not call it from a child before that child signalled readiness: the
        supervisor handles one thing at a time and is waiting for that signal.

        Raises:
            ConfigError: ``spec`` is not a ChildSpec, its id is taken, or it is
                significant under ``auto_shutdown="never"``.
            ChildStartError: the child failed to start.
            SupervisorError: the supervisor is not running (or, for a dynamic one, holds
                ``max_children`` children).
        """
        await self._call(self._op_start_child, spec)

    async def terminate_child(self, child_id: str) -> None:
        """Stop child ``child_id`` (cancel; wait up to its ``shutdown``). A temporary child
        (and any child of a dynamic supervisor) is forgotten; the spec of another stays,
        stopped, for :meth:`Supervisor.restart_child`. Stopping a child this way never
        triggers a restart or an ``auto_shutdown``.

        Raises:
            SupervisorError: not running, or no such child.
        """
        await self._call(self._op_terminate_child, child_id)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, strategy={self.strategy!r}, "
            f"children={len(self._children)}, running={self._running})"
        )
