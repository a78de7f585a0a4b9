"""The supervise scenario: a worker pool whose workers crash at random under load.

The service in front of the upstream is a pool of :data:`WORKERS` workers reading one
queue; each request is a job that a worker takes and runs (the arm's GET). Every worker
lives an exponential lifetime of mean :data:`LIFETIME` seconds and then crashes on the
job in hand (a bug, a poisoned message, a broken connection): that request fails, and
the worker is gone. Together they crash about ``WORKERS / LIFETIME`` = 10 times per
second, whatever the request rate — far more than a real service, so that one second of
load shows it.

* The **naked** pool is what plain asyncio offers: the workers in an
  :class:`asyncio.TaskGroup`. The first crash cancels every sibling and nothing
  restarts anything: the service is down, and every later request fails at once.
* The **protected** pool runs the same workers under a
  :class:`~buttress.supervise.Supervisor` (one-for-one): a crashed worker is restarted
  at once, and the others never notice. Its intensity (:data:`MAX_RESTARTS` within
  :data:`WITHIN` s) is sized for this crash rate with room for bursts; the handler runs
  through a :class:`~buttress.Timeout` so a hung upstream call cannot hold a worker.

Both pools draw the same lifetimes (the host's ``random`` is the same for both arms).
The report's notes give each arm's crashes and restarts; availability is the success
column.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import buttress as bt

from .._validate import number
from ..supervise import ChildSpec, Supervisor, SupervisorGaveUp
from ._hosting import HostContext, Service
from ._hypotheses import Hypothesis, success_beats_naked
from ._model import BuildContext, Phase, Scenario, register
from ._results import ArmResult
from ._upstream import Faults

__all__ = [
    "LIFETIME",
    "MAX_RESTARTS",
    "SUPERVISE",
    "WITHIN",
    "WORKERS",
    "ServiceDown",
    "WorkerCrashed",
    "WorkerPool",
    "availability_at_least",
    "restarted_every_crash",
]

WORKERS = 4
"""Workers in the pool."""
LIFETIME = 0.4
"""Mean seconds a worker lives before it crashes (exponentially distributed)."""
MAX_RESTARTS = 30
WITHIN = 1.0
"""The protected pool's restart intensity: 30 restarts per second, three times the
mean crash rate, so a Poisson burst does not make it give up."""
BUDGET = 2.0
"""Seconds a request may wait for a worker's answer before the service gives up on it."""


class WorkerCrashed(Exception):
    """A worker of the lab's pool crashed (on purpose) while holding this request."""


class ServiceDown(Exception):
    """The pool has no workers any more: the request was refused at once."""


class _Job:
    __slots__ = ("call", "future")

    def __init__(self, call: Callable[[], Awaitable[Any]], future: asyncio.Future[Any]) -> None:
        self.call = call
        self.future = future


class WorkerPool:
    """The service both arms host: a job queue and the worker coroutine.

    It does not run workers itself: the naked host runs :meth:`worker` in a TaskGroup,
    the protected host under a supervisor. ``crashes`` counts the crashes, ``down`` is
    set when the pool has no workers left.
    """

    def __init__(self, context: HostContext, *, lifetime: float = LIFETIME) -> None:
        self.random = context.random
        self.lifetime = lifetime
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.crashes = 0
        self.down = False
        self.restarts = 0
        self.gave_up = 0

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Queue the request as a job and wait for a worker's answer."""
        if self.down:
            raise ServiceDown("no worker left")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Job(call, future))
        try:
            async with asyncio.timeout(BUDGET):
                return await asyncio.shield(future)
        finally:
            if future.done():
                if not future.cancelled():
                    future.exception()  # retrieved: it was raised to the caller, or not needed
            else:
                future.cancel()

    async def worker(self) -> None:
        """Take jobs and run them until this worker's lifetime is over, then crash on the
        job in hand."""
        loop = asyncio.get_running_loop()
        death = loop.time() + self.random.expovariate(1.0 / self.lifetime)
        while True:
            job = await self.queue.get()
            if job.future.done():
                continue  # its caller gave up
            if loop.time() >= death:
                self.crashes += 1
                job.future.set_exception(WorkerCrashed("the worker crashed on this request"))
                raise WorkerCrashed("worker crashed")
            try:
                result = await job.call()
            except asyncio.CancelledError:
                if not job.future.done():  # stopped mid-request: its caller need not wait
                    job.future.set_exception(ServiceDown("the worker was stopped"))
                raise
            except Exception as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
            else:
                if not job.future.done():
                    job.future.set_result(result)

    def close(self) -> None:
        """The pool is down: fail every queued job and refuse new ones."""
        self.down = True
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ServiceDown("the pool stopped"))

    def notes(self) -> Mapping[str, float]:
        """Crashes, restarts and whether the supervisor gave up."""
        return {"crashes": self.crashes, "restarts": self.restarts, "gave_up": self.gave_up}


@contextlib.asynccontextmanager
async def _naked_pool(context: HostContext) -> AsyncIterator[Service]:
    pool = WorkerPool(context)

    async def group() -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(WORKERS):
                    tasks.create_task(pool.worker())
        except* WorkerCrashed:
            pass  # the first crash tore the group down: the service is dead
        finally:
            pool.close()

    runner = asyncio.ensure_future(group())
    try:
        yield pool
    finally:
        runner.cancel()
        await asyncio.wait((runner,))
        if not runner.cancelled():
            runner.exception()


@contextlib.asynccontextmanager
async def _supervised_pool(context: HostContext) -> AsyncIterator[Service]:
    pool = WorkerPool(context)

    def on_event(event: bt.events.Event) -> None:
        if isinstance(event, SupervisorGaveUp):
            pool.gave_up += 1
            pool.close()

    supervisor = Supervisor(
        [ChildSpec(f"worker-{n}", pool.worker) for n in range(WORKERS)],
        strategy="one_for_one",
        max_restarts=MAX_RESTARTS,
        within=WITHIN,
        name="lab-workers",
        listeners=[on_event],
    )
    await supervisor.start()
    try:
        yield pool
    finally:
        await supervisor.stop()
        pool.close()
        pool.restarts = supervisor.stats().restarts


def _host(context: HostContext) -> contextlib.AbstractAsyncContextManager[Service]:
    if context.arm == "naked":
        return _naked_pool(context)
    return _supervised_pool(context)


def restarted_every_crash() -> Hypothesis:
    """The protected arm's supervisor restarted every crashed worker and never gave up
    (read from the arm's notes)."""

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        crashes = protected.notes.get("crashes", 0)
        restarts = protected.notes.get("restarts", 0)
        gave_up = protected.notes.get("gave_up", 0)
        held = crashes > 0 and restarts == crashes and gave_up == 0
        return held, f"{restarts:g} restarts for {crashes:g} crashes, gave up {gave_up:g}"

    return Hypothesis("protected restarts every crashed worker", test)


def availability_at_least(share: float) -> Hypothesis:
    """At least ``share`` of the protected arm's requests succeeded.

    Raises:
        ConfigError: ``share`` is not in [0, 1].
    """
    floor = number("share", share, low=0.0, high=1.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours, theirs = protected.summary.success_rate, naked.summary.success_rate
        return ours >= floor, f"{ours * 100:.1f} % (naked {theirs * 100:.1f} %)"

    return Hypothesis(f"protected availability >= {floor * 100:g} %", test)


def _protect_supervise(ctx: BuildContext) -> bt.Policy:
    # The workers' handler: a hung upstream call must not hold a worker for ever.
    return bt.pipeline(bt.Timeout(0.5))


SUPERVISE = register(
    Scenario(
        name="supervise",
        description="workers crash ~10 times a second; a supervisor restarts them",
        phases=(Phase("crashing", 5.0, Faults(latency=0.003)),),
        protect=_protect_supervise,
        hypotheses=(
            availability_at_least(0.75),
            success_beats_naked(by=0.2),
            restarted_every_crash(),
        ),
        host=_host,
    )
)
