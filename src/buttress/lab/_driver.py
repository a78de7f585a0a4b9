"""The load driver: open-loop arrivals, a concurrency cap, one record per logical request.

Arrivals follow a schedule fixed in advance (the same for both arms), not the pace of the
answers: when the upstream slows down, requests keep arriving, wait for one of the
``concurrency`` slots and their latency grows, as it does in production. Latency is
measured from the *scheduled* arrival to the answer, so time spent queueing for a slot
counts (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .._deadline import deadline_headers
from .._errors import RejectedError
from .._validate import fail, number
from ._upstream import Faults, FaultState

__all__ = [
    "LAG_WARNING",
    "ArmProgress",
    "Degraded",
    "Outcome",
    "Sample",
    "UpstreamError",
    "arrivals",
    "classify",
    "degraded",
    "drive",
    "fetch",
]

Outcome = Literal["success", "degraded", "failed"]

LAG_WARNING = 0.25
"""Seconds of :attr:`ArmProgress.lag` beyond which a run's timing is not to be trusted:
the machine was too busy to send the load on schedule (a stalled or starved event loop
sends a burst of overdue requests at once and applies overdue phase changes together).
Ordinary runs on a 2-core machine lag 5 to 90 ms."""


class UpstreamError(Exception):
    """The upstream answered with a 5xx status; ``status`` holds it.

    Raised by :func:`fetch` so that policies (retry, breaker) see a server error as a
    failure. It deliberately carries no ``retry_after``.
    """

    def __init__(self, status: int) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Degraded:
    """A fallback answer: the call failed with ``cause`` and a stand-in was served.

    The lab counts it as *degraded*, never as a success. Use :func:`degraded` as the
    handler of a :class:`~buttress.Fallback`.
    """

    cause: BaseException


def degraded(exc: BaseException) -> Degraded:
    """A :class:`~buttress.Fallback` handler answering :class:`Degraded`.

    Example::

        bt.pipeline(bt.Fallback(degraded), retry, breaker, timeout)
    """
    return Degraded(exc)


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET ``url``, passing on the current deadline; raise :class:`UpstreamError` on 5xx.

    Both arms call this. Outside any deadline (the naked arm) no header is sent; inside a
    :class:`~buttress.Timeout` the remaining budget travels as ``x-request-timeout``.
    """
    response = await client.get(url, headers=deadline_headers())
    if response.status_code >= 500:
        raise UpstreamError(response.status_code)
    return response


@dataclass(frozen=True, slots=True)
class Sample:
    """One logical request.

    Attributes:
        at: scheduled arrival, seconds after the arm started.
        phase: index of the phase it arrived in.
        outcome: ``"success"``, ``"degraded"`` (a fallback answered) or ``"failed"``.
        rejected: a buttress rejection (open breaker...) ended it without waiting for
            the upstream; it is also counted in ``outcome`` (degraded or failed).
        latency: seconds from the scheduled arrival to the answer, queueing included.
        error: the type name of the exception that ended it, if any.
    """

    at: float
    phase: int
    outcome: Outcome
    rejected: bool
    latency: float
    error: str | None = None


def classify(
    result: object = None, exc: BaseException | None = None
) -> tuple[Outcome, bool, str | None]:
    """``(outcome, rejected, error name)`` for a call that returned ``result`` or raised ``exc``."""
    if exc is not None:
        return "failed", isinstance(exc, RejectedError), type(exc).__name__
    if isinstance(result, Degraded):
        cause = result.cause
        return "degraded", isinstance(cause, RejectedError), type(cause).__name__
    return "success", False, None


def arrivals(
    rate: float,
    duration: float,
    *,
    process: Literal["poisson", "even"] = "poisson",
    random: _random.Random | None = None,
) -> list[float]:
    """Arrival times in ``[0, duration)`` for ``rate`` requests per second.

    ``"poisson"`` draws exponential gaps (bursts and lulls, like independent users);
    ``"even"`` spaces them exactly ``1 / rate`` apart.

    Raises:
        ConfigError: ``rate`` or ``duration`` is not positive, or ``process`` is unknown.
    """
    number("rate", rate, low=0.0, low_open=True)
    number("duration", duration, low=0.0)
    if process == "even":
        count = math.ceil(duration * rate)
        return [i / rate for i in range(count) if i / rate < duration]
    if process != "poisson":
        raise fail("process", "'poisson' or 'even'", process)
    rng = random if random is not None else _random.Random()
    times: list[float] = []
    t = rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    """A phase placed on the arm's timeline: ``[start, end)`` seconds, and its faults."""

    name: str
    start: float
    end: float
    faults: Faults


@dataclass(slots=True)
class ArmProgress:
    """Live counters of one running arm, read by the progress display."""

    scenario: str
    arm: str
    spans: Sequence[PhaseSpan]
    total: int
    started_at: float | None = None
    phase: int = 0
    sent: int = 0
    in_flight: int = 0
    done: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"success": 0, "degraded": 0, "failed": 0}
    )
    rejected: int = 0
    finished: bool = False
    lag: float = 0.0
    """The most seconds an arrival was sent after its scheduled time: how far the load
    generator (this process's event loop) fell behind. See :data:`LAG_WARNING`."""

    @property
    def duration(self) -> float:
        """Seconds of scheduled load."""
        return self.spans[-1].end if self.spans else 0.0

    def elapsed(self) -> float:
        """Seconds since the arm started (0 before)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at


Call = Callable[[], Awaitable[Any]]


async def drive(
    call: Call,
    schedule: Sequence[float],
    spans: Sequence[PhaseSpan],
    state: FaultState,
    *,
    concurrency: int,
    progress: ArmProgress,
) -> list[Sample]:
    """Run ``call`` once per scheduled arrival, at most ``concurrency`` at once.

    The upstream's faults follow ``spans`` (set on ``state`` at each boundary). Returns
    one :class:`Sample` per arrival, in schedule order, once every call has finished.
    Cancelling the driver cancels every call in flight.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    samples: list[Sample | None] = [None] * len(schedule)
    starts = [span.start for span in spans]

    def phase_of(at: float) -> int:
        index = 0
        for i, start in enumerate(starts):
            if at >= start:
                index = i
        return index

    async def one(index: int, at: float, due: float) -> None:
        async with slots:
            progress.in_flight += 1
            result: object = None
            error: BaseException | None = None
            try:
                result = await call()
            except Exception as exc:
                error = exc
            finally:
                progress.in_flight -= 1
        latency = loop.time() - due
        outcome, rejected, name = classify(result, error)
        samples[index] = Sample(at, phase_of(at), outcome, rejected, latency, name)
        progress.done += 1
        progress.counts[outcome] += 1
        progress.rejected += rejected

    async def phases(t0_monotonic: float, t0_loop: float) -> None:
        for index, span in enumerate(spans):
            delay = t0_loop + span.start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            progress.phase = index
            state.set(span.faults, until=t0_monotonic + span.end)

    # A short lead so the first arrival is not already late when the loop gets to it.
    t0_loop = loop.time() + 0.01
    t0_monotonic = time.monotonic() + (t0_loop - loop.time())
    progress.started_at = t0_monotonic
    tasks: list[asyncio.Task[None]] = []
    phaser = asyncio.ensure_future(phases(t0_monotonic, t0_loop))
    try:
        for index, at in enumerate(schedule):
            due = t0_loop + at
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = loop.time() - due
            if late > progress.lag:
                progress.lag = late
            tasks.append(asyncio.ensure_future(one(index, at, due)))
            progress.sent += 1
        rest = t0_loop + (spans[-1].end if spans else 0.0) - loop.time()
        if rest > 0:
            await asyncio.sleep(rest)
        await phaser
        if tasks:
            await asyncio.gather(*tasks)
        progress.finished = True
    finally:
        # Normally all done already; after a cancellation (Ctrl-C), stop and reap the rest
        # so no task outlives the driver.
        pending = [task for task in (phaser, *tasks) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    return [sample for sample in samples if sample is not None]
