"""Functions that experiments in the tests call as `tests.chaos.probes:NAME`."""

from __future__ import annotations

import os

calls: list[str] = []


def healthy() -> bool:
    """The steady state: holds unless BUTTRESS_TEST_BROKEN is set."""
    return os.environ.get("BUTTRESS_TEST_BROKEN") is None


def value(number: float) -> float:
    return number


def record(label: str) -> str:
    calls.append(label)
    return label


def boom() -> None:
    raise RuntimeError("the action broke")
