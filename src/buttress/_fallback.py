"""Fallback: answer with something else when the call fails."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _validate as v
from ._events import GLOBAL_LISTENERS, FallbackUsed, Listener, emit
from ._policy import AsyncLink, Policy, SyncLink, next_index

__all__ = ["Fallback", "FallbackStats"]

_NEVER = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclass(frozen=True, slots=True)
class FallbackStats:
    """A snapshot of a :class:`Fallback`: calls and how many used the fallback."""

    name: str
    calls: int
    fallbacks: int


class Fallback(Policy):
    """Replace a failed call's outcome with a value or the result of a handler.

    ``value_or_callable`` is either a value returned as it is, or a callable that receives
    the exception (or, for ``on_result``, the rejected result) and returns the replacement.
    In async calls the handler may be ``async def``; in sync calls it must be a plain
    function. To return a callable *as the value*, wrap it: ``Fallback(lambda exc: func)``.

    Only exceptions matching ``on`` (default: any ``Exception``) are replaced; cancellation,
    ``KeyboardInterrupt`` and ``SystemExit`` always go through. A handler that raises lets its
    own exception propagate, chained to the original.

    Args:
        value_or_callable: the replacement value, or a handler ``(exc_or_result) -> value``.
        on: exception class(es) to replace. Default ``(Exception,)``.
        on_result: optional predicate ``(result) -> bool``; true replaces the result too.
        name: for events and stats. Default ``"fallback-N"``.
        listeners: event listeners (:class:`~buttress.events.FallbackUsed`).

    Raises:
        ConfigError: ``on`` is not exception classes, or ``on_result`` is not callable.

    Example::

        policy = bt.pipeline(bt.Fallback(lambda exc: cached_price(item)), retry, breaker)
        price = await policy.call(fetch_price, item)
    """

    def __init__(
        self,
        value_or_callable: Any,
        *,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.value = value_or_callable
        self._async_handler = inspect.iscoroutinefunction(value_or_callable)
        self.on = v.exception_types("on", on)
        self.on_result = v.optional_callable("on_result", on_result)
        self.name = v.name_of(name, "fallback", lambda: next_index("fallback"))
        self._listeners = v.listeners(listeners)
        self._calls = 0
        self._fallbacks = 0
        self._link()

    def __repr__(self) -> str:
        return f"Fallback({self.value!r}, on={self.on!r}, name={self.name!r})"

    def stats(self) -> FallbackStats:
        """Counters since construction."""
        return FallbackStats(self.name, self._calls, self._fallbacks)

    def _async_in_sync(self) -> TypeError:
        return TypeError(
            f"fallback {self.name!r}: the handler is async and cannot answer a sync call; "
            "use `await policy.call(...)` or a plain function"
        )

    def _handles(self, exc: BaseException) -> bool:
        return isinstance(exc, self.on) and not isinstance(exc, _NEVER)

    def _replacement(self, exc: BaseException | None, result: object) -> Any:
        """The fallback value (maybe an awaitable from an async handler)."""
        self._fallbacks += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, FallbackUsed(self.name, exc, None if exc is not None else result))
        if callable(self.value):
            return self.value(exc if exc is not None else result)
        return self.value

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        handles, replacement, on_result = self._handles, self._replacement, self.on_result

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            self._calls += 1
            try:
                result = await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))
            except BaseException as exc:
                if not handles(exc):
                    raise
                # Awaited inside the except block so a failing handler chains to ``exc``.
                value = replacement(exc, None)
                return (await value) if inspect.isawaitable(value) else value
            if on_result is None or not on_result(result):
                return result
            value = replacement(None, result)
            return (await value) if inspect.isawaitable(value) else value

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        handles, replacement, on_result = self._handles, self._replacement, self.on_result
        async_handler = self._async_handler

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            self._calls += 1
            try:
                result = fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)
            except BaseException as exc:
                if not handles(exc):
                    raise
                if async_handler:
                    raise self._async_in_sync() from exc
                value = replacement(exc, None)
            else:
                if on_result is None or not on_result(result):
                    return result
                if async_handler:
                    raise self._async_in_sync()
                value = replacement(None, result)
            if inspect.iscoroutine(value):  # a plain function that returned a coroutine
                value.close()
                raise self._async_in_sync()
            return value

        return run
