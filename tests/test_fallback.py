"""Fallback: replace failures by a value or a handler's answer."""

from __future__ import annotations

import asyncio

import pytest

import buttress as bt
from buttress import events

from .conftest import Recorder


async def fails() -> None:
    raise ConnectionError("down")


async def test_value_replaces_failure() -> None:
    """A plain value is returned when the call fails."""
    assert await bt.Fallback("cached").call(fails) == "cached"


async def test_success_passes_through() -> None:
    """A successful call's result is returned unchanged."""

    async def fine() -> str:
        return "fresh"

    assert await bt.Fallback("cached").call(fine) == "fresh"


async def test_handler_receives_the_exception() -> None:
    """A callable is called with the exception."""
    assert await bt.Fallback(lambda exc: f"because {exc}").call(fails) == "because down"


async def test_async_handler_is_awaited() -> None:
    """An async handler is awaited in async calls."""

    async def handler(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return "async fallback"

    assert await bt.Fallback(handler).call(fails) == "async fallback"


def test_async_handler_in_sync_call_is_an_error() -> None:
    """An async handler cannot serve a sync call: a clear TypeError, no unawaited coroutine."""

    async def handler(exc: BaseException) -> str:
        return "x"

    def sync_fails() -> None:
        raise ConnectionError

    policy = bt.Fallback(handler)
    with pytest.raises(TypeError, match="handler is async"):
        policy.call_sync(sync_fails)
    assert policy.stats().fallbacks == 0  # refused before calling the handler


async def test_only_matching_exceptions() -> None:
    """Exceptions outside `on` propagate."""
    policy = bt.Fallback("x", on=TimeoutError)
    with pytest.raises(ConnectionError):
        await policy.call(fails)


async def test_cancellation_is_never_replaced() -> None:
    """CancelledError goes through even with on=BaseException."""
    policy = bt.Fallback("x", on=BaseException)
    task = asyncio.create_task(policy.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_result_predicate() -> None:
    """on_result replaces a bad result; the handler receives it."""

    async def empty() -> list[int]:
        return []

    policy = bt.Fallback(lambda rejected: [0], on_result=lambda r: not r)
    assert await policy.call(empty) == [0]


async def test_handler_error_chains_to_original() -> None:
    """If the handler fails, its error propagates with the original as context."""

    def handler(exc: BaseException) -> None:
        raise RuntimeError("no cache either")

    with pytest.raises(RuntimeError) as info:
        await bt.Fallback(handler).call(fails)
    assert isinstance(info.value.__context__, ConnectionError)


def test_sync(recorder: Recorder) -> None:
    """Sync calls work the same and emit FallbackUsed."""

    def boom() -> int:
        raise KeyError("k")

    policy = bt.Fallback(-1, name="price")
    assert policy.call_sync(boom) == -1
    (event,) = recorder.of(events.FallbackUsed)
    assert event.policy == "price"
    assert isinstance(event.exception, KeyError)  # type: ignore[attr-defined]
    assert policy.stats() == bt.FallbackStats("price", calls=1, fallbacks=1)


def test_callable_value_needs_wrapping() -> None:
    """To return a function as the value, wrap it in a handler."""

    def boom() -> None:
        raise KeyError

    assert bt.Fallback(lambda exc: len).call_sync(boom) is len


def test_bad_options() -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match="on must be an exception class"):
        bt.Fallback(1, on="KeyError")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="on_result must be a callable or None"):
        bt.Fallback(1, on_result=3)  # type: ignore[arg-type]
