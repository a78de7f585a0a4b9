"""Helpers shared by the messaging tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from buttress.messaging import Consumer


def topic() -> str:
    """A topic name no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}"


async def until(check: Callable[[], bool], *, limit: float = 10.0) -> None:
    """Wait (really) until ``check()`` holds; fail after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not check():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Running:
    """``async with Running(consumer):`` runs it in a task and stops it after."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Consumer:
        self.task = asyncio.create_task(self.consumer.run())
        return self.consumer

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        assert self.task is not None
        await self.task
