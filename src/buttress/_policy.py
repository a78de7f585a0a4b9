"""The call API every policy shares, and :func:`pipeline`.

A policy is built once and then called many times. At construction it links itself into
a chain of small closures (``_async_link`` / ``_sync_link``); a pipeline links its
policies outermost first. A call then runs one closure per policy, each passing
``(fn, args, kwargs)`` inward, the innermost calling ``fn(*args, **kwargs)``. No
per-call objects are made unless a policy needs one (a retry after a failure).
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeAlias, TypeVar, overload

from ._events import Listener
from ._validate import fail

__all__ = ["AsyncLink", "Pipeline", "Policy", "SyncLink", "pipeline"]

P = ParamSpec("P")
R = TypeVar("R")

Args: TypeAlias = tuple[Any, ...]
Kwargs: TypeAlias = dict[str, Any]
AsyncFn: TypeAlias = Callable[..., Awaitable[Any]]
SyncFn: TypeAlias = Callable[..., Any]
AsyncLink: TypeAlias = Callable[[AsyncFn, Args, Kwargs], Coroutine[Any, Any, Any]]
"""``run(fn, args, kwargs)``: await one protected call."""
SyncLink: TypeAlias = Callable[[SyncFn, Args, Kwargs], Any]
"""``run(fn, args, kwargs)``: make one protected call."""

_counters: dict[str, itertools.count[int]] = {}


def next_index(kind: str) -> int:
    """1, 2, 3... per kind, for default policy names."""
    counter = _counters.get(kind)
    if counter is None:
        counter = _counters.setdefault(kind, itertools.count(1))
    return next(counter)


class Policy:
    """Base class of every policy: the shared call API.

    Every policy can be used three ways::

        result = await policy.call(fetch, url, timeout=2)   # async callable
        result = policy.call_sync(fetch_sync, url)          # sync callable

        @policy                                             # def or async def
        async def fetch(url: str) -> bytes: ...

    The decorator keeps the wrapped function's signature for type checkers (ParamSpec)
    and its metadata (``functools.wraps``). Compose policies with :func:`pipeline`.
    """

    name: str
    _listeners: tuple[Listener, ...]
    _arun: AsyncLink
    _srun: SyncLink

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        """Return a closure running this policy around ``inner`` (or ``fn`` itself)."""
        raise NotImplementedError

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        """The sync twin of :meth:`_async_link`."""
        raise NotImplementedError

    def _link(self) -> None:
        """Build the standalone chains; called at the end of each ``__init__``."""
        arun = self._arun = self._async_link(None)
        srun = self._srun = self._sync_link(None)

        def call(fn: AsyncFn, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
            return arun(fn, args, kwargs)

        def call_sync(fn: SyncFn, /, *args: Any, **kwargs: Any) -> Any:
            return srun(fn, args, kwargs)

        # Instance attributes shadow the documented methods below and save a bound-method
        # lookup and a frame on every call (about a fifth of a sync breaker's overhead).
        # Set with setattr, never through self.__dict__: touching __dict__ on 3.11 turns
        # off the inline attribute layout and slows every self.x on the hot paths.
        call.__doc__ = Policy.call.__doc__
        call_sync.__doc__ = Policy.call_sync.__doc__
        setattr(self, "call", call)  # noqa: B010 - mypy forbids assigning to a method
        setattr(self, "call_sync", call_sync)  # noqa: B010

    # -- calling ----------------------------------------------------------------------------

    def call(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        """Run ``await fn(*args, **kwargs)`` under this policy; await the result.

        Raises whatever the policy or ``fn`` raises (see each policy's docs).
        """
        return self._arun(fn, args, kwargs)

    def call_sync(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` under this policy and return its result.

        Safe to call from many threads at once.
        """
        result: R = self._srun(fn, args, kwargs)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (``def`` or ``async def``) so every call runs under this policy.

        Raises:
            ConfigError: ``fn`` is not callable, or is a generator / async generator
                function (a policy protects one call, not a stream).
        """
        if not callable(fn):
            raise fail("fn", "a function or other callable", fn)
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise fail("fn", "a def or async def function, not a generator function", fn)
        if inspect.iscoroutinefunction(fn):
            arun = self._arun

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await arun(fn, args, kwargs)

            return async_wrapper

        srun = self._srun

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return srun(fn, args, kwargs)

        return sync_wrapper

    # -- observing --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Receive this policy's events (see :mod:`buttress` events).

        Raises:
            ConfigError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise fail("listener", "a callable taking one event", listener)
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop delivering this policy's events to ``listener``.

        Raises:
            ConfigError: ``listener`` was not registered on this policy.
        """
        if listener not in self._listeners:
            raise fail("listener", "a listener registered on this policy", listener)
        items = list(self._listeners)
        items.remove(listener)
        self._listeners = tuple(items)


async def _invoke_async(fn: AsyncFn, args: Args, kwargs: Kwargs) -> Any:
    return await fn(*args, **kwargs)


def _invoke_sync(fn: SyncFn, args: Args, kwargs: Kwargs) -> Any:
    return fn(*args, **kwargs)


class Pipeline(Policy):
    """Policies applied in order, the first outermost. Build one with :func:`pipeline`.

    Attributes:
        policies: the policies, outermost first.
    """

    def __init__(self, *policies: Policy, name: str | None = None) -> None:
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise fail(f"policies[{index}]", "a buttress policy", policy)
        self.policies: tuple[Policy, ...] = policies
        from ._validate import name_of

        self.name = name_of(name, "pipeline", lambda: next_index("pipeline"))
        self._listeners = ()
        self._link()

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.policies)
        return f"pipeline({inner})"

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        link = inner
        for policy in reversed(self.policies):
            link = policy._async_link(link)
        return link if link is not None else _invoke_async

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        link = inner
        for policy in reversed(self.policies):
            link = policy._sync_link(link)
        return link if link is not None else _invoke_sync


def pipeline(*policies: Policy, name: str | None = None) -> Pipeline:
    """Compose policies into one; the first argument is the outermost.

    The recommended order, outermost first, is::

        bt.pipeline(fallback, retry, breaker, bulkhead, timeout)   # chaos policies innermost

    so that the fallback sees the final outcome, each retry goes through the breaker
    (an open breaker stops the retries early), the bulkhead bounds concurrent attempts,
    and the timeout bounds each attempt.

    Args:
        *policies: buttress policies (a pipeline may contain pipelines).
        name: the pipeline's name. Default ``"pipeline-N"``.

    Raises:
        ConfigError: an argument is not a policy.

    Example::

        policy = bt.pipeline(bt.Retry(attempts=3, on=ConnectionError), bt.Timeout(2.0))
        data = await policy.call(fetch, url)
    """
    return Pipeline(*policies, name=name)
