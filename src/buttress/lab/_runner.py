"""Running scenarios: an upstream per arm, the same schedule for both arms, the verdict."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random as _random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .._errors import ConfigError
from .._policy import Policy
from .._validate import choice, fail, integer, number, optional_seconds, seconds
from ._driver import ArmProgress, PhaseSpan, Sample, arrivals, drive, fetch
from ._hosting import HostContext
from ._model import BuildContext, Scenario
from ._progress import Progress
from ._results import ArmResult, LabReport, ScenarioResult
from ._timeline import MetricsSampler, bucket_seconds, build_timeline
from ._upstream import FaultState, Upstream
from ._workers import run_in_processes

__all__ = ["LabConfig", "run_lab", "run_lab_async", "run_scenario"]

Arms = Literal["sequential", "concurrent"]


@dataclass(frozen=True, slots=True)
class LabConfig:
    """How to run scenarios.

    Args:
        rate: logical requests per second offered to each arm, ``> 0``. Default 100.
        concurrency: logical requests in flight at once per arm, ``>= 1``; later arrivals
            queue for a slot (and their latency counts the wait). Default 100.
        duration: seconds of load per arm; every phase is scaled to fit. ``None``
            (default) keeps each scenario's own length.
        seed: seeds arrivals, fault sampling and policy jitter; ``None`` (default) picks
            one at random (it is reported, so the run can be repeated).
        arms: ``"sequential"`` (default: the naked arm, then the protected arm, each
            against a fresh upstream) or ``"concurrent"`` (both at once, two upstreams).
        naked_timeout: the plain client's timeout, seconds. Default 10 (what naive code
            tends to use).
        arrivals: ``"poisson"`` (default) or ``"even"`` spacing of arrivals.
        redis_url: a Redis URL for scenarios that need one (``buttress lab --redis``);
            ``None`` (default) runs none of them.
        quick: run each scenario for its own :attr:`Scenario.quick` seconds per arm
            (``buttress lab --quick``) unless ``duration`` is given. Default ``False``.

    Raises:
        ConfigError: an argument is out of range.
    """

    rate: float = 100.0
    concurrency: int = 100
    duration: float | None = None
    seed: int | None = None
    arms: Arms = "sequential"
    naked_timeout: float = 10.0
    arrivals: Literal["poisson", "even"] = "poisson"
    redis_url: str | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        if self.redis_url is not None and (
            not isinstance(self.redis_url, str)
            or not self.redis_url.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise fail("redis_url", "a redis://, rediss:// or unix:// URL", self.redis_url)
        number("rate", self.rate, low=0.0, low_open=True)
        integer("concurrency", self.concurrency, minimum=1)
        optional_seconds("duration", self.duration, allow_zero=False)
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise fail("seed", "an int >= 0 or None", self.seed)
        choice("arms", self.arms, ("sequential", "concurrent"))
        seconds("naked_timeout", self.naked_timeout, allow_zero=False)
        choice("arrivals", self.arrivals, ("poisson", "even"))


def _spans(scenario: Scenario) -> list[PhaseSpan]:
    spans, start = [], 0.0
    for phase in scenario.phases:
        spans.append(PhaseSpan(phase.name, start, start + phase.seconds, phase.faults))
        start += phase.seconds
    return spans


@dataclass(slots=True)
class _Arm:
    name: str
    policy: Policy | None


def _caller(policy: Policy | None, client: httpx.AsyncClient) -> Callable[[], Awaitable[Any]]:
    """The logical request of an arm: a plain GET, or the same GET through ``policy``."""
    if policy is None:
        return functools.partial(fetch, client, "/")
    return functools.partial(policy.call, fetch, client, "/")


async def _tick(progress: Progress, arms: Sequence[ArmProgress]) -> None:
    while True:
        progress.update(arms)
        await asyncio.sleep(progress.interval)


class _Reaper:
    """Stops finished upstreams in background threads, joined before the run returns.

    uvicorn takes about 0.2 s to stop (a 0.1 s shutdown poll and a fixed 0.1 s sleep);
    doing it in the background lets the next arm start at once.
    """

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def stop(self, upstream: Upstream) -> None:
        thread = threading.Thread(target=upstream.stop, name="buttress-lab-stop")
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(15.0)
        self.threads.clear()


async def _run_arms(
    arms: Sequence[_Arm],
    scenario: Scenario,
    config: LabConfig,
    seed: int,
    schedule: Sequence[float],
    progress: Progress | None,
    reaper: _Reaper | None = None,
) -> list[ArmResult]:
    """Run ``arms`` at the same time, each against its own fresh upstream."""
    spans = _spans(scenario)
    duration = spans[-1].end
    bucket = bucket_seconds(duration)
    # Few idle connections: httpcore scans every pooled connection (a poll() each) on
    # every request, so a pool left large by a burst slows every later request.
    limits = httpx.Limits(
        max_connections=2 * config.concurrency,
        max_keepalive_connections=min(20, config.concurrency),
    )
    # Same fault seed for every arm: the n-th request each upstream receives gets the
    # same draws, so the arms face the same luck.
    states = [FaultState(spans[0].faults, seed=f"{seed}:{scenario.name}:faults") for _ in arms]
    upstreams: list[Upstream] = []
    try:
        for state in states:
            upstream = Upstream(state)
            upstreams.append(upstream)
            upstream.start()
        trackers = [
            ArmProgress(scenario.name, arm.name, spans, total=len(schedule)) for arm in arms
        ]
        walls: list[float] = [0.0] * len(arms)
        notes: list[dict[str, float]] = [{} for _ in arms]
        async with contextlib.AsyncExitStack() as clients_stack:
            clients = [
                await clients_stack.enter_async_context(
                    # trust_env=False: a proxy from the environment must not see loopback
                    httpx.AsyncClient(
                        base_url=up.url,
                        timeout=config.naked_timeout,
                        limits=limits,
                        trust_env=False,
                    )
                )
                for up in upstreams
            ]

            async def one(index: int) -> list[Sample]:
                call = _caller(arms[index].policy, clients[index])
                async with contextlib.AsyncExitStack() as hosting:
                    service = None
                    if scenario.host is not None:  # a hosted service (lab/_hosting.py)
                        host_random = _random.Random(f"{seed}:{scenario.name}:host")
                        context = HostContext(
                            arms[index].name,
                            host_random,
                            scenario.duration,
                            redis_url=config.redis_url,
                            spans=tuple(spans),
                        )
                        service = await hosting.enter_async_context(scenario.host(context))
                        call = functools.partial(service.serve, call)
                    started = time.monotonic()
                    samples = await drive(
                        call,
                        schedule,
                        spans,
                        states[index],
                        concurrency=config.concurrency,
                        progress=trackers[index],
                    )
                    walls[index] = time.monotonic() - started
                if service is not None:
                    notes[index] = dict(service.notes())
                return samples

            ticker = asyncio.ensure_future(_tick(progress, trackers)) if progress else None
            # The policies' events reach the charts through OpenTelemetry; only the
            # protected arm has policies, so its timeline gets them.
            sampler = MetricsSampler(bucket) if any(a.policy for a in arms) else None
            if sampler is not None:
                sampler.start()
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(one(i)) for i in range(len(arms))]
            finally:
                if sampler is not None:
                    await sampler.stop()
                if ticker is not None:
                    ticker.cancel()
                    await asyncio.wait([ticker])  # reap it without re-raising its cancel
            if progress is not None:
                progress.update(trackers)  # the final "done" lines
        stats = [up.stats() for up in upstreams]
    finally:
        for upstream in upstreams:
            if reaper is not None:
                reaper.stop(upstream)
            else:
                upstream.stop()
    results = []
    for index, arm in enumerate(arms):
        samples = tuple(tasks[index].result())
        t0 = trackers[index].started_at
        assert t0 is not None  # set when the driver starts
        timeline = build_timeline(
            samples,
            duration,
            upstream_arrivals=[at - t0 for at in states[index].arrivals()],
            snapshots=sampler.relative(t0) if sampler is not None and arm.policy else (),
            bucket=bucket,
        )
        results.append(
            ArmResult(
                arm.name,
                samples,
                stats[index],
                tuple(spans),
                walls[index],
                timeline=timeline,
                notes=notes[index],
                lag=trackers[index].lag,
            )
        )
    return results


async def _run_arm_in_processes(
    arm: _Arm,
    scenario: Scenario,
    config: LabConfig,
    seed: int,
    schedule: Sequence[float],
    progress: Progress | None,
    reaper: _Reaper | None,
    run_id: str,
) -> ArmResult:
    """One arm whose load is dealt out among ``scenario.processes`` worker processes."""
    spans = _spans(scenario)
    state = FaultState(spans[0].faults, seed=f"{seed}:{scenario.name}:faults")
    upstream = Upstream(state)
    upstream.start()
    try:
        if progress is not None:
            progress.message(
                f"  {arm.name}: {len(schedule)} requests from {scenario.processes} processes"
            )
        started = time.monotonic()
        t0: list[float] = []
        samples = await run_in_processes(
            scenario=scenario.name,
            arm=arm.name,
            url=upstream.url,
            state=state,
            schedule=schedule,
            spans=spans,
            processes=scenario.processes,
            concurrency=config.concurrency,
            naked_timeout=config.naked_timeout,
            seed=f"{seed}:{scenario.name}:policies",
            redis_url=config.redis_url,
            run_id=run_id,
            started=t0.append,
        )
        wall = time.monotonic() - started
        stats = upstream.stats()
        arrivals = [at - t0[0] for at in state.arrivals()]
    finally:
        if reaper is not None:
            reaper.stop(upstream)
        else:
            upstream.stop()
    # The policies ran in the worker processes: no OpenTelemetry series here.
    timeline = build_timeline(samples, spans[-1].end, upstream_arrivals=arrivals)
    return ArmResult(arm.name, tuple(samples), stats, tuple(spans), wall, timeline)


async def run_scenario(
    scenario: Scenario,
    config: LabConfig | None = None,
    *,
    progress: Progress | None = None,
    _reaper: _Reaper | None = None,
) -> ScenarioResult:
    """Run one scenario's naked and protected arms and check its hypotheses.

    Both arms get the same arrival schedule and the same fault sampling seed, each
    against a fresh upstream; ``config.arms`` says whether one after the other or at
    once. Needs a running event loop (see :func:`run_lab` for a blocking call).

    Raises:
        ConfigError: the scenario's ``protect`` did not return a policy.
    """
    config = config if config is not None else LabConfig()
    if config.duration is not None:
        scenario = scenario.scaled(config.duration)
    elif config.quick:
        scenario = scenario.scaled(scenario.quick)
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    schedule = arrivals(
        config.rate,
        scenario.duration,
        process=config.arrivals,
        random=_random.Random(f"{seed}:{scenario.name}:arrivals"),
    )
    if "redis" in scenario.needs and config.redis_url is None:
        raise ConfigError(f"scenario {scenario.name!r} needs a Redis: pass --redis URL")
    run_id = secrets.token_hex(6)
    context = BuildContext(
        _random.Random(f"{seed}:{scenario.name}:policies"), config.redis_url, run_id
    )
    if scenario.processes > 1:
        # Each worker process builds its own pipeline; build one here only to check it.
        policy: Policy | None = None
        probe = scenario.protect(context)
        if not isinstance(probe, Policy):
            raise ConfigError(
                f"scenario {scenario.name!r}: protect must return a buttress policy, got {probe!r}"
            )
    else:
        policy = scenario.protect(context)
        if not isinstance(policy, Policy):
            raise ConfigError(
                f"scenario {scenario.name!r}: protect must return a buttress policy, got {policy!r}"
            )
    arms = [_Arm("naked", None), _Arm("protected", policy)]
    if progress is not None:
        phases = ", ".join(
            f"{p.name} {p.seconds:.1f} s ({p.faults.describe()})" for p in scenario.phases
        )
        progress.message(f"{scenario.name}: {scenario.description}\n  phases: {phases}")
    if scenario.processes > 1:
        results = [
            await _run_arm_in_processes(
                arm, scenario, config, seed, schedule, progress, _reaper, run_id
            )
            for arm in arms
        ]
    elif config.arms == "sequential":
        results = []
        for arm in arms:
            results.extend(
                await _run_arms([arm], scenario, config, seed, schedule, progress, _reaper)
            )
    else:
        results = await _run_arms(arms, scenario, config, seed, schedule, progress, _reaper)
    naked, protected = results
    checks = tuple(h.check(naked, protected) for h in scenario.hypotheses)
    return ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        phases=tuple((p.name, p.seconds, p.faults.describe()) for p in scenario.phases),
        naked=naked,
        protected=protected,
        checks=checks,
    )


async def run_lab_async(
    scenarios: Sequence[Scenario],
    config: LabConfig | None = None,
    *,
    progress: Progress | None = None,
) -> LabReport:
    """Run ``scenarios`` one after the other; the async twin of :func:`run_lab`."""
    config = config if config is not None else LabConfig()
    seed = config.seed if config.seed is not None else secrets.randbits(32)
    config = dataclasses.replace(config, seed=seed)
    started = time.monotonic()
    reaper = _Reaper()
    try:
        results = [
            await run_scenario(s, config, progress=progress, _reaper=reaper) for s in scenarios
        ]
    finally:
        # Every upstream stopped (and its thread joined) before the run returns or raises.
        await asyncio.to_thread(reaper.join)
    return LabReport(
        seed=seed,
        rate=config.rate,
        concurrency=config.concurrency,
        arms=config.arms,
        scenarios=tuple(results),
        wall=time.monotonic() - started,
    )


def run_lab(
    scenarios: Sequence[Scenario],
    config: LabConfig | None = None,
    *,
    progress: Progress | None = None,
) -> LabReport:
    """Run ``scenarios`` and return the report; blocks, in a fresh event loop.

    Everything it starts (servers, threads, sockets, tasks) is stopped before it returns
    or raises, ``KeyboardInterrupt`` included.

    Example::

        from buttress import lab
        report = lab.run_lab([lab.get_scenario("outage")], lab.LabConfig(duration=3, seed=1))
        print(lab.render(report))
    """
    return asyncio.run(run_lab_async(scenarios, config, progress=progress))
