"""The callees every suite protects: one trivial function of each colour, and flaky ones.

They live here, once, so every contender of every suite calls the very same code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable


def f() -> int:
    """The trivial sync callee."""
    return 1


async def af() -> int:
    """The trivial async callee."""
    return 1


def fail() -> int:
    """A callee that always fails (used to trip breakers open)."""
    raise ConnectionError("down")


def make_flaky(period: int = 3) -> Callable[[], int]:
    """A fresh callee failing ``period - 1`` times with ConnectionError, then succeeding.

    Each contender gets its own instance (same code) so no two share a phase; a logical
    call that retries until success consumes exactly ``period`` attempts and leaves the
    counter on a multiple of ``period``.
    """
    state = [0]

    def flaky() -> int:
        state[0] += 1
        if state[0] % period:
            raise ConnectionError("flaky")
        return 1

    flaky.state = state  # type: ignore[attr-defined]
    return flaky


def make_async_flaky(period: int = 3) -> Callable[[], Awaitable[int]]:
    """The async twin of :func:`make_flaky`."""
    state = [0]

    async def aflaky() -> int:
        state[0] += 1
        if state[0] % period:
            raise ConnectionError("flaky")
        return 1

    aflaky.state = state  # type: ignore[attr-defined]
    return aflaky
