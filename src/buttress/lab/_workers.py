"""Arms whose load is shared by several worker processes (scenarios with ``processes > 1``).

The upstream stays in the lab's process (it counts every request it gets and changes
faults at phase boundaries); each worker is a spawned process that builds its own httpx
client and its own pipeline with the scenario's ``protect`` — so whatever the pipeline
shares across processes (a rate limit in Redis) is really shared — and drives its share
of the arrival schedule. The workers start together at an agreed wall-clock instant, so
their samples line up on one timeline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import multiprocessing
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .._policy import Policy
from ._driver import ArmProgress, PhaseSpan, Sample, drive, fetch
from ._model import BuildContext, get_scenario
from ._upstream import FaultState

__all__ = ["WorkerJob", "run_in_processes"]

_START_LEAD = 1.5  # seconds for every worker to spawn and import before the start


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """Everything one worker process needs (picklable)."""

    scenario: str
    arm: str
    url: str
    schedule: tuple[float, ...]
    spans: tuple[PhaseSpan, ...]
    concurrency: int
    naked_timeout: float
    seed: str
    redis_url: str | None
    run_id: str
    start_at: float  # time.time() at which every worker starts its schedule


def _work(job: WorkerJob) -> list[Sample]:
    """The body of a worker process: drive this worker's share, return its samples."""
    return asyncio.run(_work_async(job))


async def _work_async(job: WorkerJob) -> list[Sample]:
    from . import _scenarios, _scenarios_overload, _scenarios_shared  # noqa: F401 - register

    scenario = get_scenario(job.scenario)
    policy: Policy | None = None
    if job.arm == "protected":
        context = BuildContext(_random.Random(job.seed), job.redis_url, job.run_id)
        policy = scenario.protect(context)
    limits = httpx.Limits(
        max_connections=2 * job.concurrency, max_keepalive_connections=min(20, job.concurrency)
    )
    async with httpx.AsyncClient(
        base_url=job.url, timeout=job.naked_timeout, limits=limits, trust_env=False
    ) as client:
        call: Callable[[], Awaitable[Any]] = (
            functools.partial(fetch, client, "/")
            if policy is None
            else functools.partial(policy.call, fetch, client, "/")
        )

        # Faults are set by the lab's process on the real upstream; this state is a local
        # stand-in that drive() may update without effect.
        local_state = FaultState(job.spans[0].faults)
        tracker = ArmProgress(job.scenario, job.arm, job.spans, total=len(job.schedule))
        await asyncio.sleep(max(0.0, job.start_at - time.time()))
        return await drive(
            call,
            job.schedule,
            job.spans,
            local_state,
            concurrency=job.concurrency,
            progress=tracker,
        )


async def _phases(state: FaultState, spans: Sequence[PhaseSpan], start_at: float) -> None:
    """Change the real upstream's faults at each phase boundary, on the shared timeline."""
    for span in spans:
        delay = start_at + span.start - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        state.set(span.faults, until=time.monotonic() + (span.end - span.start))


async def run_in_processes(
    *,
    scenario: str,
    arm: str,
    url: str,
    state: FaultState,
    schedule: Sequence[float],
    spans: Sequence[PhaseSpan],
    processes: int,
    concurrency: int,
    naked_timeout: float,
    seed: str,
    redis_url: str | None,
    run_id: str,
    started: Callable[[float], None] | None = None,
) -> list[Sample]:
    """Deal ``schedule`` out to ``processes`` spawned workers; their samples, in order.

    ``started`` is told the ``time.monotonic()`` instant at which the workers start their
    schedule (the arm's time zero).
    """
    start_at = time.time() + _START_LEAD
    if started is not None:
        started(time.monotonic() + (start_at - time.time()))
    jobs = [
        WorkerJob(
            scenario=scenario,
            arm=arm,
            url=url,
            schedule=tuple(schedule[i::processes]),
            spans=tuple(spans),
            concurrency=max(1, concurrency // processes),
            naked_timeout=naked_timeout,
            seed=f"{seed}:{i}",
            redis_url=redis_url,
            run_id=run_id,
            start_at=start_at,
        )
        for i in range(processes)
    ]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        phaser = asyncio.ensure_future(_phases(state, spans, start_at))
        try:
            parts = await asyncio.gather(*(loop.run_in_executor(pool, _work, j) for j in jobs))
        finally:
            phaser.cancel()
            await asyncio.gather(phaser, return_exceptions=True)
    samples = [sample for part in parts for sample in part]
    samples.sort(key=lambda sample: sample.at)
    return samples
