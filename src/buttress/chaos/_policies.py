"""In-process fault injection: pipeline policies that inject an exception, latency, a fake
outcome, or run a behaviour, at a given rate, behind an on/off switch.

They are ordinary :class:`~buttress.Policy` objects. Put them **innermost** in a pipeline,
next to the call they stand in for, so that every outer policy (retry, breaker, timeout,
fallback) handles what they inject exactly as it would handle the real fault::

    policy = bt.pipeline(bt.Retry(attempts=3, on=ConnectionError), bt.Timeout(1.0),
                         bt.chaos.Fault(ConnectionError, rate=0.2))
"""

from __future__ import annotations

import inspect
import os
import random as _random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from .. import _validate as v
from .._clock import Clock, resolve
from .._deadline import get_current, left
from .._errors import DeadlineExceededError
from .._events import GLOBAL_LISTENERS, Listener, emit, logger
from .._policy import AsyncLink, Policy, SyncLink, next_index
from ._events import FaultInjected

__all__ = [
    "Behavior",
    "ChaosStats",
    "EnvSwitch",
    "Fault",
    "FileSwitch",
    "Latency",
    "Outcome",
    "Switch",
    "env",
    "flag_file",
]

_FALSY = frozenset({"", "0", "false", "no", "off", "n", "f"})


class EnvSwitch:
    """On while an environment variable holds a true value; read on every call.

    True values are anything but ``""``, ``0``, ``false``, ``no``, ``off`` (any case);
    an unset variable gives ``default``. Build one with :func:`env`.
    """

    __slots__ = ("default", "name")

    def __init__(self, name: str, default: bool = False) -> None:
        if not isinstance(name, str) or not name or "=" in name:
            raise v.fail("name", "a non-empty environment variable name without '='", name)
        self.name = name
        self.default = bool(default)

    def __call__(self) -> bool:
        value = os.environ.get(self.name)
        if value is None:
            return self.default
        return value.strip().lower() not in _FALSY

    def __repr__(self) -> str:
        return f"env({self.name!r}, default={self.default!r})"


def env(name: str, *, default: bool = False) -> EnvSwitch:
    """A switch that is on while the environment variable ``name`` is set to a true value.

    Faults can then be turned on in staging without a deploy: ``BUTTRESS_CHAOS=1``.
    The variable is read on every call (about 0.2 µs), so changing ``os.environ`` in the
    process takes effect at once; another process's environment cannot be changed from
    outside, so to flip a running service from outside use :func:`flag_file`.

    Args:
        name: the variable's name.
        default: the switch's state while the variable is unset. Default ``False``.

    Raises:
        ConfigError: ``name`` is empty or contains ``=``.

    Example::

        fault = bt.chaos.Fault(ConnectionError, rate=0.1, enabled=bt.chaos.env("BUTTRESS_CHAOS"))
    """
    return EnvSwitch(name, default)


class FileSwitch:
    """On while a file exists. Build one with :func:`flag_file`."""

    __slots__ = ("_checked_at", "_clock", "_lock", "_state", "check_every", "path")

    def __init__(self, path: str | os.PathLike[str], check_every: float, clock: Clock) -> None:
        self.path = Path(path)
        self.check_every = check_every
        self._clock = clock
        self._checked_at = -float("inf")
        self._state = False
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        if self.check_every <= 0.0:
            return self.path.exists()
        now = self._clock.monotonic()
        if now - self._checked_at < self.check_every:
            return self._state
        state = self.path.exists()
        with self._lock:
            self._state = state
            self._checked_at = now
        return state

    def __repr__(self) -> str:
        return f"flag_file({str(self.path)!r}, check_every={self.check_every!r})"


def flag_file(
    path: str | os.PathLike[str],
    *,
    check_every: float | timedelta = 0.0,
    clock: Clock | None = None,
) -> FileSwitch:
    """A switch that is on while the file ``path`` exists.

    Unlike an environment variable, a file can be created and removed from outside a
    running process (by hand, or by a ``chaos`` action of ``buttress experiment``).

    Args:
        path: the flag file.
        check_every: look at the file at most this often, in seconds; in between the last
            answer is reused. Default ``0`` (a ``stat`` on every call, about 1 µs).
        clock: the clock for ``check_every``. Default: the system clock.

    Raises:
        ConfigError: ``check_every`` is negative.

    Example::

        latency = bt.chaos.Latency(0.2, enabled=bt.chaos.flag_file("/tmp/chaos-on"))
    """
    every = v.seconds("check_every", check_every)
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise v.fail("path", "a non-empty path", path)
    return FileSwitch(path, every, resolve(clock))


Switch = bool | Callable[[], bool]
"""What ``enabled=`` accepts: a bool, or a zero-argument callable read on every call
(:func:`env` and :func:`flag_file` build such callables)."""


@dataclass(frozen=True, slots=True)
class ChaosStats:
    """A snapshot of a chaos policy: ``calls`` that went through it, ``enabled_calls``
    among them while its switch was on, and ``injected`` faults."""

    name: str
    calls: int
    enabled_calls: int
    injected: int


class _Chaos(Policy):
    """What every chaos policy shares: rate, switch, randomness, counters, events."""

    _kind = ""

    def _setup(
        self,
        rate: float,
        enabled: Switch,
        random: _random.Random | None,
        name: str | None,
        listeners: tuple[Listener, ...] | list[Listener],
    ) -> None:
        self.rate = v.number("rate", rate, low=0.0, high=1.0)
        if isinstance(enabled, bool):
            self._switch: Callable[[], bool] | None = None if enabled else _off
        elif callable(enabled):
            self._switch = enabled
        else:
            raise v.fail(
                "enabled", "a bool, a callable returning bool, env(...) or flag_file(...)", enabled
            )
        self.enabled = enabled
        self._random = v.rng(random)
        self.name = v.name_of(name, f"chaos-{self._kind}", lambda: next_index(self._kind))
        self._listeners = v.listeners(listeners)
        self._calls = 0
        self._enabled_calls = 0
        self._injected = 0

    def stats(self) -> ChaosStats:
        """Counters since construction."""
        return ChaosStats(self.name, self._calls, self._enabled_calls, self._injected)

    def is_enabled(self) -> bool:
        """The switch's state now (``False`` also when the switch raised)."""
        switch = self._switch
        if switch is None:
            return True
        try:
            return bool(switch())
        except Exception:
            # A broken switch must never break the call it guards: chaos stays off.
            logger.exception("buttress chaos policy %r: enabled switch failed", self.name)
            return False

    def _decide(self) -> bool:
        """Whether to inject into this call: switch on, then one draw against ``rate``."""
        self._calls += 1
        if self._switch is not None and not self.is_enabled():
            return False
        self._enabled_calls += 1
        rate = self.rate
        if rate < 1.0 and (rate <= 0.0 or self._random.random() >= rate):
            return False
        self._injected += 1
        return True

    def _emit(self, event: FaultInjected) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, event)


def _off() -> bool:
    return False


def _exception_maker(name: str, exception: object) -> Callable[[str], BaseException]:
    if isinstance(exception, type) and issubclass(exception, Exception):
        cls = exception
        return lambda policy: cls(f"fault injected by {policy}")
    if isinstance(exception, Exception):
        instance = exception
        # Re-raising one instance would grow its traceback call after call.
        return lambda policy: instance.with_traceback(None)
    if callable(exception) and not isinstance(exception, type):
        factory = exception

        def make(policy: str) -> BaseException:
            made = factory()
            if not isinstance(made, Exception):
                raise TypeError(
                    f"fault {policy!r}: the exception factory returned {made!r}, "
                    "not an Exception instance"
                )
            return made

        return make
    raise v.fail(
        name,
        "an Exception subclass, an Exception instance, or a callable returning one "
        "(not asyncio.CancelledError or other BaseExceptions: cancellation means shutdown)",
        exception,
    )


class Fault(_Chaos):
    """Raise an exception instead of (or after) the call, at a rate, behind a switch.

    The exception is an ordinary one of your choice, so outer policies treat it exactly
    like the real failure: ``Fault(ConnectionError, rate=0.3)`` inside a
    ``Retry(on=ConnectionError)`` gets retried. A class is instantiated for each injection
    with the message ``"fault injected by NAME"``; a zero-argument callable is called for
    each injection (use one for exceptions whose constructor needs arguments); an instance
    is raised as it is every time (fine for tests, but prefer a class under concurrency).
    ``asyncio.CancelledError`` and other ``BaseException`` s are refused: a supervisor
    treats cancellation as shutdown, not as a crash, so a "crash" is an ``Exception``.

    Args:
        exception: what to raise (see above).
        rate: the share of calls to fail, in ``[0, 1]``. Default ``1.0``.
        enabled: ``True``/``False``, a zero-argument callable, :func:`env` or
            :func:`flag_file`; read on every call. Default ``True``.
        when: ``"before"`` (default): the call is not made; ``"after"``: the call runs
            and its result is thrown away (the request was processed, the reply lost).
        random: a ``random.Random`` for reproducible runs. Default: a fresh unseeded one.
        name: for events and stats. Default ``"chaos-fault-N"``.
        listeners: event listeners (:class:`~buttress.chaos.FaultInjected`).

    Raises:
        ConfigError: bad ``exception``, ``rate`` outside ``[0, 1]``, bad ``enabled`` or
            ``when``.

    Example::

        flaky = bt.chaos.Fault(ConnectionError, rate=0.2, random=random.Random(7))
        policy = bt.pipeline(bt.Retry(attempts=3, on=ConnectionError), flaky)
        policy.call_sync(fetch)     # fetch sees 80 % of the attempts
    """

    _kind = "fault"

    def __init__(
        self,
        exception: type[Exception] | Exception | Callable[[], Exception],
        *,
        rate: float = 1.0,
        enabled: Switch = True,
        when: Literal["before", "after"] = "before",
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self._make = _exception_maker("exception", exception)
        self.exception = exception
        self.when = v.choice("when", when, ("before", "after"))
        self._setup(rate, enabled, random, name, listeners)
        self._link()

    def __repr__(self) -> str:
        return f"Fault({self.exception!r}, rate={self.rate!r}, name={self.name!r})"

    def _fault(self) -> BaseException:
        exc = self._make(self.name)
        self._emit(FaultInjected(self.name, "exception", exception=exc))
        return exc

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        decide, fault, after = self._decide, self._fault, self.when == "after"

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            if after:
                await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            raise fault()

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        decide, fault, after = self._decide, self._fault, self.when == "after"

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            if after:
                fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            raise fault()

        return run


class Latency(_Chaos):
    """Delay calls by ``seconds`` (± ``jitter``) at a rate, behind a switch.

    The delay is drawn uniformly from ``[seconds - jitter, seconds + jitter]`` (never
    below 0) and slept on ``clock`` before the call; async calls sleep without blocking the
    loop, sync calls block the thread, as a slow dependency would.

    **Deadlines.** The injected delay respects :func:`~buttress.deadline`: it never sleeps
    past the enclosing budget. When the drawn delay does not fit in what is left, the
    policy sleeps what is left and raises :class:`~buttress.DeadlineExceededError` without
    making the call — what the caller would have seen from a dependency that slow. (In
    async code an outer :class:`~buttress.Timeout` usually cancels the sleep first and
    reports its own timeout.)

    Args:
        seconds: the base delay, ``>= 0`` (a number or ``timedelta``).
        jitter: spread around it, ``>= 0``. Default ``0``.
        rate: the share of calls to delay, in ``[0, 1]``. Default ``1.0``.
        enabled: as for :class:`Fault`. Default ``True``.
        clock: the clock to sleep on (a :class:`~buttress.testing.FakeClock` in tests).
        random: a ``random.Random`` for reproducible delays.
        name: for events and stats. Default ``"chaos-latency-N"``.
        listeners: event listeners (:class:`~buttress.chaos.FaultInjected`, ``delay`` set).

    Raises:
        ConfigError: a negative or infinite ``seconds``/``jitter``, bad ``rate``/``enabled``.

    Example::

        slow = bt.chaos.Latency(0.5, jitter=0.1, rate=0.05, enabled=bt.chaos.env("CHAOS"))
        policy = bt.pipeline(bt.Timeout(0.3), slow)
    """

    _kind = "latency"

    def __init__(
        self,
        seconds: float | timedelta,
        *,
        jitter: float | timedelta = 0.0,
        rate: float = 1.0,
        enabled: Switch = True,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.seconds = v.seconds("seconds", seconds)
        self.jitter = v.seconds("jitter", jitter)
        self.clock = resolve(clock)
        self._setup(rate, enabled, random, name, listeners)
        self._link()

    def __repr__(self) -> str:
        return (
            f"Latency({self.seconds!r}, jitter={self.jitter!r}, rate={self.rate!r}, "
            f"name={self.name!r})"
        )

    def draw(self) -> float:
        """One delay: uniform in ``[seconds - jitter, seconds + jitter]``, at least 0."""
        if not self.jitter:
            return self.seconds
        delay = self.seconds + self._random.uniform(-self.jitter, self.jitter)
        return delay if delay > 0.0 else 0.0

    def _plan(self) -> tuple[float, bool]:
        """(seconds to sleep, whether the deadline cut the delay short)."""
        delay = self.draw()
        current = get_current()
        if current is not None:
            clock = self.clock
            remaining = left(current, clock, clock.monotonic())
            if remaining < delay:
                return (remaining if remaining > 0.0 else 0.0), True
        return delay, False

    def _injected_event(self, delay: float) -> None:
        self._emit(FaultInjected(self.name, "latency", delay=delay))

    def _over(self, slept: float) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"{self.name}: the injected latency outlived the deadline after {slept:.3f} s",
            timeout=slept,
        )

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        decide, plan, sleep = self._decide, self._plan, self.clock.sleep

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if decide():
                delay, cut = plan()
                self._injected_event(delay)
                await sleep(delay)
                if cut:
                    raise self._over(delay)
            return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        decide, plan, sleep = self._decide, self._plan, self.clock.sleep_sync

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if decide():
                delay, cut = plan()
                self._injected_event(delay)
                sleep(delay)
                if cut:
                    raise self._over(delay)
            return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)

        return run


def _async_in_sync(name: str, what: str) -> TypeError:
    return TypeError(
        f"chaos policy {name!r}: the {what} is async and cannot run in a sync call; "
        "use `await policy.call(...)` or a plain function"
    )


class Outcome(_Chaos):
    """Answer with a fake result instead of making the call, at a rate, behind a switch.

    ``value_or_callable`` is returned as it is, or, when callable, called with the call's
    own arguments (``fake(*args, **kwargs)``) to build the answer — an ``async def`` one
    is awaited in async calls. To return a callable as the value, wrap it in a lambda.
    Use it for a dependency that answers wrongly but successfully (an empty list, a stale
    value, an HTTP response with status 503) — the failures a retry never sees.

    Args:
        value_or_callable: the fake result, or a function building it from the arguments.
        rate, enabled, random, name, listeners: as for :class:`Fault`
            (``FaultInjected.value`` holds the fake result).

    Raises:
        ConfigError: bad ``rate`` or ``enabled``.
        TypeError: (at call time) an async builder in a sync call.

    Example::

        empty = bt.chaos.Outcome([], rate=0.1)           # 10 % of searches find nothing
        results = await bt.pipeline(fallback, empty).call(search, "q")
    """

    _kind = "outcome"

    def __init__(
        self,
        value_or_callable: Any,
        *,
        rate: float = 1.0,
        enabled: Switch = True,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.value = value_or_callable
        self._setup(rate, enabled, random, name, listeners)
        self._link()

    def __repr__(self) -> str:
        return f"Outcome({self.value!r}, rate={self.rate!r}, name={self.name!r})"

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        decide, value = self._decide, self.value

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            result = value(*args, **kwargs) if callable(value) else value
            if inspect.isawaitable(result):
                result = await result
            self._emit(FaultInjected(self.name, "outcome", value=result))
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        decide, value = self._decide, self.value

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            result = value(*args, **kwargs) if callable(value) else value
            if inspect.iscoroutine(result):
                result.close()
                raise _async_in_sync(self.name, "outcome builder")
            self._emit(FaultInjected(self.name, "outcome", value=result))
            return result

        return run


class Behavior(_Chaos):
    """Run a behaviour around the call, at a rate, behind a switch; the call still runs.

    ``behavior`` is a zero-argument function (``async def`` allowed in async calls) run
    ``"before"`` (default) or ``"after"`` the call: kill a child process, fill a disk,
    drop a cache, flip a feature flag. Whatever it raises propagates to the caller, so a
    behaviour can also crash the call (raise an ordinary ``Exception`` so a supervisor
    restarts the task rather than treating it as shutdown).

    Args:
        behavior: the function to run.
        when: ``"before"`` or ``"after"`` the call (``"after"`` runs only if it succeeded).
        rate, enabled, random, name, listeners: as for :class:`Fault`.

    Raises:
        ConfigError: ``behavior`` is not callable; bad ``when``, ``rate`` or ``enabled``.
        TypeError: (at call time) an async behaviour in a sync call.

    Example::

        crash = bt.chaos.Behavior(lambda: os.kill(worker.pid, signal.SIGKILL), rate=0.01)
    """

    _kind = "behavior"

    def __init__(
        self,
        behavior: Callable[[], Any],
        *,
        when: Literal["before", "after"] = "before",
        rate: float = 1.0,
        enabled: Switch = True,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        if not callable(behavior):
            raise v.fail("behavior", "a callable taking no arguments", behavior)
        self.behavior = behavior
        self.when = v.choice("when", when, ("before", "after"))
        self._setup(rate, enabled, random, name, listeners)
        self._link()

    def __repr__(self) -> str:
        return f"Behavior({self.behavior!r}, when={self.when!r}, name={self.name!r})"

    async def _run_async(self) -> None:
        self._emit(FaultInjected(self.name, "behavior"))
        result = self.behavior()
        if inspect.isawaitable(result):
            await result

    def _run_sync(self) -> None:
        self._emit(FaultInjected(self.name, "behavior"))
        result = self.behavior()
        if inspect.iscoroutine(result):
            result.close()
            raise _async_in_sync(self.name, "behavior")

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        decide, before = self._decide, self.when == "before"

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            if before:
                await self._run_async()
            result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            if not before:
                await self._run_async()
            return result

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        decide, before = self._decide, self.when == "before"

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if not decide():
                return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            if before:
                self._run_sync()
            result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            if not before:
                self._run_sync()
            return result

        return run
