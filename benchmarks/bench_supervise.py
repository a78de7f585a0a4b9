"""Supervisors: what a crash-and-restart costs, and starting/stopping a dynamic child.

There is no maintained asyncio supervisor library to compare with (the point of the
issue), so the peers are what people write by hand: a ``while True: try/except`` loop
around the child for restarts, and a ``TaskGroup`` (or a bare task) for children
started on demand. Each iteration is one full cycle, awaited to the end: a crash and
the restarted child running again; a child started and stopped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from _harness import Contender, RatioColumn, Suite
from _targets import af
from buttress.supervise import ChildSpec, DynamicSupervisor, Supervisor

__all__ = ["suites"]


class _Crashing:
    """A child that runs until ``crash()``, then raises; ``cycle()`` crashes the current
    instance and waits for the next one to be running."""

    def __init__(self) -> None:
        self.kill: asyncio.Future[None] | None = None
        self.started: asyncio.Future[None] | None = None
        self.starts = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def child(self) -> None:
        loop = asyncio.get_running_loop()
        self.starts += 1
        kill = self.kill = loop.create_future()
        if self.started is not None and not self.started.done():
            self.started.set_result(None)
        await kill
        raise RuntimeError("crash")

    async def cycle(self) -> None:
        started = self.started = asyncio.get_running_loop().create_future()
        assert self.kill is not None
        self.kill.set_result(None)
        await started


class _BtRestart(_Crashing):
    def __init__(self) -> None:
        super().__init__()
        # Restarts are the point here: an intensity that never gives up during a run.
        self.sup = Supervisor(
            [ChildSpec("c", self.child)], max_restarts=10**9, within=0.001, name="bench"
        )

    async def crash_and_restart(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # each pass of a run measures on a new event loop
            self.__init__()  # type: ignore[misc]
            self.loop = loop
        if not self.sup.running:
            await self.sup.start()
        await self.cycle()


class _LoopRestart(_Crashing):
    """The hand-written alternative: restart in a loop, no intensity, no order."""

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task[None] | None = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.child()
            except Exception:
                continue

    async def crash_and_restart(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # each pass of a run measures on a new event loop
            self.__init__()  # type: ignore[misc]
            self.loop = loop
        if self.task is None:
            self.started = asyncio.get_running_loop().create_future()
            self.task = asyncio.ensure_future(self._forever())
            await self.started
        await self.cycle()


async def _idle() -> None:
    await asyncio.Event().wait()


class _BtDynamic:
    def __init__(self) -> None:
        self.sup = DynamicSupervisor(name="bench-dynamic")
        self.spec = ChildSpec("c", _idle, restart="temporary")
        self.loop: asyncio.AbstractEventLoop | None = None

    async def spawn_and_stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # each pass of a run measures on a new event loop
            self.sup = DynamicSupervisor(name="bench-dynamic")
            self.loop = loop
        if not self.sup.running:
            await self.sup.start()
        await self.sup.start_child(self.spec)
        await self.sup.terminate_child("c")


class _TaskGroupDynamic:
    def __init__(self) -> None:
        self.group: asyncio.TaskGroup | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def spawn_and_stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # each pass of a run measures on a new event loop
            self.group, self.loop = None, loop
        if self.group is None:
            self.group = asyncio.TaskGroup()
            await self.group.__aenter__()
        task = self.group.create_task(_idle())
        await asyncio.sleep(0)  # let it start, as start_child does
        task.cancel()
        await asyncio.wait((task,))


async def _bare_task() -> None:
    task = asyncio.ensure_future(_idle())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait((task,))


def suites() -> list[Suite]:
    bt_restart, loop_restart = _BtRestart(), _LoopRestart()
    bt_dynamic, group_dynamic = _BtDynamic(), _TaskGroupDynamic()

    def restarted(bench: _Crashing) -> Any:
        def check() -> None:
            if bench.starts < 2:
                raise AssertionError("the child was never restarted")

        return check

    def check_dynamic() -> None:
        if bt_dynamic.sup.which_children():
            raise AssertionError("a dynamic child was left running")

    restart = Suite(
        name="supervise-restart",
        title="Supervisor: crash and restart",
        kind="async",
        description=(
            "One cycle: the running child raises, is restarted, and the new instance "
            "runs. Overhead over a bare `await af()`."
        ),
        baseline=Contender("bare", "bare `await af()`", "-", "-", "await af()", {"af": af}),
        contenders=[
            Contender(
                "bt",
                "buttress `Supervisor` one_for_one",
                "buttress",
                "call",
                "await b.crash_and_restart()",
                {"b": bt_restart},
                config=('Supervisor([ChildSpec("c", child)], max_restarts=10**9, within=0.001)'),
                check=restarted(bt_restart),
            ),
            Contender(
                "loop",
                "hand-written `while True: try/except` loop",
                "asyncio",
                "call",
                "await b.crash_and_restart()",
                {"b": loop_restart},
                config="while True:\n    try: await child()\n    except Exception: continue",
                check=restarted(loop_restart),
            ),
        ],
        columns=[RatioColumn("vs hand loop", {}, "loop")],
        notes=[
            "The hand loop has no restart intensity, no strategy, no ordered stop and no "
            "events: it is the floor, not a like-for-like peer."
        ],
        order=110,
        min_loops=50,
    )
    dynamic = Suite(
        name="supervise-dynamic",
        title="Dynamic supervisor: start and stop a child",
        kind="async",
        description=(
            "One cycle: a child task started (and run to its first wait), then "
            "cancelled and awaited. Overhead over a bare `await af()`."
        ),
        baseline=Contender("bare", "bare `await af()`", "-", "-", "await af()", {"af": af}),
        contenders=[
            Contender(
                "bt",
                "buttress `start_child` + `terminate_child`",
                "buttress",
                "call",
                "await b.spawn_and_stop()",
                {"b": bt_dynamic},
                config='DynamicSupervisor(); ChildSpec("c", idle, restart="temporary")',
                check=check_dynamic,
            ),
            Contender(
                "taskgroup",
                "`TaskGroup.create_task` + `cancel`",
                "asyncio",
                "call",
                "await b.spawn_and_stop()",
                {"b": group_dynamic},
                config="tg.create_task(idle()); await sleep(0); task.cancel(); await wait",
            ),
            Contender(
                "task",
                "bare `ensure_future` + `cancel`",
                "asyncio",
                "call",
                "await spawn()",
                {"spawn": _bare_task},
                config="ensure_future(idle()); await sleep(0); task.cancel(); await wait",
            ),
        ],
        columns=[RatioColumn("vs TaskGroup", {}, "taskgroup")],
        order=111,
        min_loops=50,
    )
    return [restart, dynamic]
