"""Option validation shared by every policy.

Each helper checks one argument and raises :class:`~buttress.ConfigError` whose message
names the argument, shows the value it got and says what is allowed, e.g.
``failure_rate must be a number in (0, 1], got 1.5``. No helper substitutes a default
for a falsy value: zero means zero.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from ._errors import ConfigError

T = TypeVar("T")

Seconds = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(name: str, allowed: str, value: object) -> ConfigError:
    """Build the standard error for ``name``."""
    return ConfigError(f"{name} must be {allowed}, got {_shown(value)}")


def seconds(
    name: str,
    value: object,
    *,
    allow_zero: bool = True,
    allow_inf: bool = False,
) -> float:
    """A non-negative duration in seconds (a number or a ``timedelta``)."""
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    else:
        raise fail(name, "a duration in seconds (int, float or timedelta)", value)
    lo = ">= 0" if allow_zero else "> 0"
    if math.isnan(result) or result < 0 or (result == 0 and not allow_zero):
        raise fail(name, f"a duration {lo} seconds", value)
    if math.isinf(result) and not allow_inf:
        raise fail(name, f"a finite duration {lo} seconds", value)
    return result


def optional_seconds(
    name: str, value: object, *, allow_zero: bool = True, allow_inf: bool = False
) -> float | None:
    """Like :func:`seconds` but ``None`` passes through."""
    if value is None:
        return None
    return seconds(name, value, allow_zero=allow_zero, allow_inf=allow_inf)


def integer(name: str, value: object, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An int in ``[minimum, maximum]`` (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(name, f"an int >= {minimum}", value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"
        raise fail(name, allowed, value)
    return value


def number(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the given interval."""
    left = "(" if low_open else "["
    right = ")" if high_open or math.isinf(high) else "]"
    hi = "inf" if math.isinf(high) else f"{high:g}"
    allowed = f"a number in {left}{low:g}, {hi}{right}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise fail(name, allowed, value)
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise fail(name, allowed, value)
    if v < low or (low_open and v == low) or v > high or (high_open and v == high):
        raise fail(name, allowed, value)
    return v


def exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    """An exception class or a non-empty tuple/list of them."""
    items: Iterable[object]
    if isinstance(value, type):
        items = (value,)
    elif isinstance(value, tuple | list | frozenset | set):
        items = tuple(value)
    else:
        raise fail(name, "an exception class or a tuple of exception classes", value)
    result = tuple(items)
    if not all(isinstance(t, type) and issubclass(t, BaseException) for t in result):
        raise fail(name, "an exception class or a tuple of exception classes", value)
    return result  # type: ignore[return-value]


def optional_callable(name: str, value: T | None) -> T | None:
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise fail(name, "a callable or None", value)
    return value


def rng(value: object) -> _random.Random:
    """The ``random=`` option: a ``random.Random``, or a fresh unseeded one for ``None``."""
    if value is None:
        return _random.Random()
    if not isinstance(value, _random.Random):
        raise fail("random", "a random.Random or None", value)
    return value


def choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str) or value not in allowed:
        shown = " | ".join(repr(a) for a in allowed)
        raise fail(name, f"one of {shown}", value)
    return value


def name_of(value: object, kind: str, counter: Callable[[], int]) -> str:
    """A policy name: the given string, or ``kind-N``."""
    if value is None:
        return f"{kind}-{counter()}"
    if not isinstance(value, str) or not value:
        raise fail("name", "a non-empty str or None", value)
    return value


def listeners(value: object) -> tuple[Callable[[Any], None], ...]:
    """An iterable of callables (event listeners)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise fail("listeners", "an iterable of callables", value)
    result = tuple(value)
    for item in result:
        if not callable(item):
            raise fail("listeners", "an iterable of callables", value)
    return result
