"""A supervised consumer whose handler runs through a pipeline, killed at random."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import buttress as bt
from buttress._policy import AsyncLink, SyncLink
from buttress.supervise import ChildExited, ChildSpec, Supervisor, ready
from buttress.testing import FakeClock

from ..conftest import Recorder
from .helpers import leftover_tasks


class InjectedCrash(Exception):
    """What the fault injector raises: nothing in the pipeline retries it."""


class CrashInjector(bt.Policy):
    """A seeded fault injector written as a pipeline member, as a chaos policy would be:
    with probability ``rate`` the call raises InjectedCrash instead of running."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.random = random.Random(seed)
        self.name = "chaos"
        self._listeners = ()
        self.injected = 0
        self._link()

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            if self.random.random() < self.rate:
                self.injected += 1
                raise InjectedCrash("injected")
            return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)

        return run


def consumer_setup(clock: FakeClock, crash_rate: float, seed: int) -> tuple[Any, ...]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    handled: list[int] = []
    flaky = random.Random(seed + 1)

    async def handle(item: int) -> None:
        await clock.sleep(0.01)
        if flaky.random() < 0.2:
            raise ConnectionError("dependency blip")  # retried by the pipeline
        handled.append(item)

    chaos = CrashInjector(crash_rate, seed)
    policy = bt.pipeline(
        chaos,
        bt.Retry(attempts=10, on=ConnectionError, backoff=bt.Backoff.constant(0.01), clock=clock),
        bt.CircuitBreaker(consecutive_failures=20, open_for=0.1, clock=clock),
        bt.Timeout(1.0, clock=clock),
    )

    async def consumer() -> None:
        ready()
        while True:
            item = await queue.get()
            try:
                await policy.call(handle, item)
            except BaseException:
                queue.put_nowait(item)  # at-least-once: the message goes back
                raise

    return queue, handled, chaos, consumer


async def test_a_supervised_consumer_survives_random_crashes(
    clock: FakeClock, recorder: Recorder
) -> None:
    """Every message is handled exactly once although the consumer is killed ~5 % of the
    time; each injected crash is one restart; the supervisor never gives up."""
    queue, handled, chaos, consumer = consumer_setup(clock, 0.05, seed=11)
    sup = Supervisor(
        [ChildSpec("consumer", consumer, handshake=True)],
        max_restarts=20,
        within=5.0,
        clock=clock,
        name="consumers",
    )
    for item in range(300):
        queue.put_nowait(item)
    async with sup:
        while len(handled) < 300:
            await clock.sleep(0.1)
        assert sup.running
    assert sorted(handled) == list(range(300))
    assert chaos.injected > 5
    assert sup.stats().restarts == chaos.injected == sup.stats().crashes
    crashes = [e for e in recorder.of(ChildExited) if e.reason == "exception"]  # type: ignore[attr-defined]
    assert all(isinstance(e.exception, InjectedCrash) for e in crashes)  # type: ignore[attr-defined]
    assert not leftover_tasks()


async def test_a_consumer_cancelled_from_outside_is_restarted(
    clock: FakeClock, recorder: Recorder
) -> None:
    """Cancelling the consumer's task from outside is a crash: it restarts, and the
    message it held is handled by the next one."""
    queue, handled, _, consumer = consumer_setup(clock, 0.0, seed=3)
    sup = Supervisor([ChildSpec("consumer", consumer, handshake=True)], clock=clock)
    async with sup:
        for round_ in range(3):
            queue.put_nowait(round_)
            await clock.sleep(0.005)  # mid-handling
            task = sup.which_children()[0].task
            assert task is not None
            task.cancel()
            await clock.sleep(1.0)
    assert sorted(handled) == [0, 1, 2]
    reasons = [e.reason for e in recorder.of(ChildExited)]  # type: ignore[attr-defined]
    assert reasons == ["cancelled"] * 3 + ["terminated"]
