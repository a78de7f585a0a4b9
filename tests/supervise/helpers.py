"""Children for supervisor tests: they log what happens to them, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from buttress.supervise import ChildSpec, Shutdown, ready
from buttress.testing import FakeClock


class Journal:
    """Records ``(name, what)`` in order: ``start``, ``ready``, ``stop`` (cancelled)..."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.kills: dict[str, asyncio.Future[BaseException | None]] = {}

    def __call__(self, name: str, what: str) -> None:
        self.lines.append((name, what))

    def of(self, what: str) -> list[str]:
        return [name for name, kind in self.lines if kind == what]

    def clear(self) -> None:
        self.lines.clear()

    def kill(self, name: str, exc: BaseException | None = None) -> None:
        """Make the running child ``name`` (built with ``killable``) raise or return."""
        self.kills[name].set_result(exc)

    def killable(self, name: str, *, handshake: bool = False, **spec: Any) -> ChildSpec:
        """A child that runs until :meth:`kill` makes it raise ``exc`` (or return)."""

        async def child() -> None:
            self(name, "start")
            future: asyncio.Future[BaseException | None] = (
                asyncio.get_running_loop().create_future()
            )
            self.kills[name] = future
            if handshake:
                ready()
            try:
                exc = await future
            except asyncio.CancelledError:
                self(name, "stop")
                raise
            self(name, "exit")
            if exc is not None:
                raise exc

        return ChildSpec(name, child, handshake=handshake, **spec)

    def crashing(
        self,
        name: str,
        clock: FakeClock,
        every: float,
        exc: type[BaseException] = RuntimeError,
        **spec: Any,
    ) -> ChildSpec:
        """A child that crashes ``every`` seconds after each start."""

        async def child() -> None:
            self(name, "start")
            try:
                await clock.sleep(every)
            except asyncio.CancelledError:
                self(name, "stop")
                raise
            raise exc(f"{name} crashed")

        return ChildSpec(name, child, **spec)


def forever(journal: Journal, name: str, **spec: Any) -> ChildSpec:
    """A child that runs until cancelled, journaling start and stop."""
    return journal.killable(name, **spec)


async def settle() -> None:
    """Let every ready callback and task step run (no virtual time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def leftover_tasks() -> set[asyncio.Task[Any]]:
    """Tasks other than the current one still alive."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def returns() -> None:
    """A child that returns at once."""


async def raises_shutdown() -> None:
    raise Shutdown("done")


Factory = Callable[[], Awaitable[object]]
