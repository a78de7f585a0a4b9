"""pipeline(): composition order, shared behaviour across policies, decorators."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import pytest

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


async def test_outermost_first(clock: FakeClock) -> None:
    """Retry outside the breaker: an opening breaker stops the retries early."""
    breaker = bt.CircuitBreaker(consecutive_failures=2, open_for=60, clock=clock)
    retry = bt.Retry(attempts=10, on=ConnectionError, backoff=0.1, clock=clock)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(bt.CircuitOpenError):
        await bt.pipeline(retry, breaker).call(down)
    assert calls == 2


async def test_retry_honours_breaker_retry_after(clock: FakeClock) -> None:
    """A retry that matches rejections waits the breaker's retry_after, then the probe runs."""
    breaker = bt.CircuitBreaker(consecutive_failures=1, open_for=2.0, clock=clock)
    retry = bt.Retry(attempts=3, on=(ConnectionError, bt.CircuitOpenError), backoff=0, clock=clock)
    outcomes = iter([ConnectionError(), "recovered"])

    async def flaky() -> str:
        value = next(outcomes)
        if isinstance(value, Exception):
            raise value
        return value

    assert await bt.pipeline(retry, breaker).call(flaky) == "recovered"
    assert clock.monotonic() == 2.0


async def test_timeout_per_attempt_inside_retry(clock: FakeClock) -> None:
    """Timeout innermost bounds each attempt; the retry sees bt.TimeoutError and retries."""
    attempts = 0

    async def sometimes_hangs() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await clock.sleep(100)
        return "ok"

    policy = bt.pipeline(
        bt.Retry(attempts=3, on=bt.TimeoutError, backoff=0, clock=clock),
        bt.Timeout(1.0, clock=clock),
    )
    assert await policy.call(sometimes_hangs) == "ok"
    assert clock.monotonic() == 2.0


async def test_fallback_sees_final_outcome(clock: FakeClock, recorder: Recorder) -> None:
    """Fallback outermost answers only after retries are exhausted."""
    policy = bt.pipeline(
        bt.Fallback("stale"),
        bt.Retry(attempts=3, on=ConnectionError, backoff=0, clock=clock),
    )

    async def down() -> None:
        raise ConnectionError

    assert await policy.call(down) == "stale"
    assert len(recorder.of(events.RetryScheduled)) == 2
    assert len(recorder.of(events.FallbackUsed)) == 1


async def test_deadline_bounds_the_whole_pipeline(clock: FakeClock) -> None:
    """Retries + per-attempt timeouts never exceed the enclosing deadline."""

    async def hangs() -> None:
        await clock.sleep(100)

    policy = bt.pipeline(
        bt.Retry(attempts=10, on=bt.TimeoutError, backoff=0.2, clock=clock),
        bt.Timeout(1.0, clock=clock),
    )
    with bt.deadline(2.5, clock=clock), pytest.raises(bt.TimeoutError):
        await policy.call(hangs)
    assert clock.monotonic() <= 2.5


async def test_nested_pipelines(clock: FakeClock) -> None:
    """A pipeline can contain a pipeline."""
    inner = bt.pipeline(bt.Timeout(1.0, clock=clock))
    outer = bt.pipeline(bt.Fallback(0), inner)

    async def slow() -> int:
        await clock.sleep(5)
        return 1

    assert await outer.call(slow) == 0


async def test_empty_pipeline_just_calls(clock: FakeClock) -> None:
    """pipeline() with no policies is a plain call."""

    async def one() -> int:
        return 1

    assert await bt.pipeline().call(one) == 1
    assert bt.pipeline().call_sync(lambda: 2) == 2


def test_sync_pipeline(clock: FakeClock) -> None:
    """The same pipeline runs sync callables through the sync runners."""
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError
        return "ok"

    policy = bt.pipeline(
        bt.Fallback("fb"),
        bt.Retry(attempts=3, on=ConnectionError, backoff=1, clock=clock),
        bt.CircuitBreaker(consecutive_failures=5, clock=clock),
        bt.Bulkhead(max_concurrent=2),
        bt.Timeout(5, clock=clock),
    )
    assert policy.call_sync(flaky) == "ok"
    assert clock.monotonic() == 1.0


def test_rejects_non_policies() -> None:
    """Only policies compose."""
    with pytest.raises(bt.ConfigError, match=r"policies\[1\] must be a buttress policy"):
        bt.pipeline(bt.Timeout(1), lambda f: f)  # type: ignore[arg-type]


def test_repr() -> None:
    """A pipeline shows its policies in order."""
    text = repr(bt.pipeline(bt.Timeout(1, name="t"), bt.Fallback(0, name="f")))
    assert text.startswith("pipeline(Timeout(1.0, name='t'), Fallback(0")


# -- cancellation through every policy ------------------------------------------------------

POLICIES: dict[str, Callable[[FakeClock], bt.Policy]] = {
    "retry": lambda c: bt.Retry(attempts=3, on=Exception, clock=c),
    "breaker": lambda c: bt.CircuitBreaker(consecutive_failures=1, clock=c),
    "timeout": lambda c: bt.Timeout(100, clock=c),
    "bulkhead": lambda c: bt.Bulkhead(max_concurrent=1, clock=c),
    "fallback": lambda c: bt.Fallback("x", on=BaseException),
    "hedge": lambda c: bt.Hedge(delay=50, clock=c),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
async def test_cancellation_passes_through(name: str, clock: FakeClock) -> None:
    """Every policy lets CancelledError through and releases what it held."""
    policy = POLICIES[name](clock)
    started = asyncio.Event()

    async def blocked() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(policy.call(blocked))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def fine() -> str:
        return "still works"

    assert await policy.call(fine) == "still works"
    if isinstance(policy, bt.CircuitBreaker):
        assert policy.stats().calls == 1  # the cancelled call did not count
    if isinstance(policy, bt.Bulkhead):
        assert policy.stats().active == 0


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_has_name_and_stats(name: str, clock: FakeClock) -> None:
    """Every stateful policy has a name and a frozen stats() snapshot."""
    policy = POLICIES[name](clock)
    assert isinstance(policy.name, str)
    assert policy.name
    stats = policy.stats()  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        stats.name = "changed"


def test_default_names_are_unique() -> None:
    """Unnamed policies get distinct kind-N names."""
    a, b = bt.Timeout(1), bt.Timeout(1)
    assert a.name != b.name
    assert a.name.startswith("timeout-")


# -- decorators ------------------------------------------------------------------------------


def test_decorator_keeps_signature(clock: FakeClock) -> None:
    """@policy keeps the signature (and ParamSpec keeps it for type checkers)."""
    policy = bt.pipeline(bt.Retry(on=ConnectionError, clock=clock), bt.Timeout(1, clock=clock))

    @policy
    def get(url: str, *, retries: int = 1) -> str:
        return url * retries

    assert inspect.signature(get) == inspect.signature(get.__wrapped__)  # type: ignore[attr-defined]
    assert list(inspect.signature(get).parameters) == ["url", "retries"]
    assert get("a", retries=2) == "aa"


async def test_decorator_on_methods(clock: FakeClock) -> None:
    """Decorated methods bind self as usual."""
    policy = bt.Retry(on=ConnectionError, clock=clock)

    class Client:
        base = "x"

        @policy
        async def get(self, path: str) -> str:
            return self.base + path

    assert await Client().get("/y") == "x/y"


def test_decorator_refuses_generators() -> None:
    """A policy protects one call; generator functions are refused with a clear error."""

    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(bt.ConfigError, match="not a generator function"):
        bt.Timeout(1)(gen)
    with pytest.raises(bt.ConfigError, match="not a generator function"):
        bt.Timeout(1)(agen)


def test_listeners_per_policy(clock: FakeClock) -> None:
    """add_listener/remove_listener on one policy."""
    seen: list[events.Event] = []
    policy = bt.Retry(attempts=2, on=KeyError, backoff=0, clock=clock)
    policy.add_listener(seen.append)
    with pytest.raises(KeyError):
        policy.call_sync({}.__getitem__, "k")
    assert len(seen) == 2  # RetryScheduled, RetryGaveUp
    policy.remove_listener(seen.append)
    with pytest.raises(bt.ConfigError, match="listener must be a listener registered"):
        policy.remove_listener(seen.append)
    with pytest.raises(bt.ConfigError, match="listener must be a callable"):
        policy.add_listener(5)  # type: ignore[arg-type]


def test_global_listener_validation() -> None:
    """Global listeners are validated too."""
    with pytest.raises(bt.ConfigError):
        bt.add_listener("print")  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError):
        bt.remove_listener(print)


async def test_objects_build_before_a_loop_exists() -> None:
    """Policies built at import time (no running loop) work inside any later loop."""
    import subprocess
    import sys

    code = (
        "import asyncio, buttress as bt\n"
        "p = bt.pipeline(bt.Retry(on=OSError), bt.CircuitBreaker(), bt.Bulkhead(), bt.Timeout(1))\n"
        "async def f(): return 5\n"
        "print(asyncio.run(p.call(f)), asyncio.run(p.call(f)))\n"
    )
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "5 5"
