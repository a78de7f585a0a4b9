"""Backoff strategies: how long to wait before retry number *n*.

Strategies are immutable and shared; what changes between attempts (the attempt number,
the previous delay) is passed in by the caller's per-call state. Jitter follows
"Exponential Backoff And Jitter" (Marc Brooker, AWS Architecture Blog, 2015).
"""

from __future__ import annotations

import math
import random as _random
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Literal

from . import _validate as v

__all__ = ["Backoff", "Jitter"]

Jitter = Literal["none", "full", "equal", "decorrelated"]
_JITTERS = ("none", "full", "equal", "decorrelated")


class Backoff(ABC):
    """A strategy giving the delay before each retry. Build one with the factories:

    * ``Backoff.constant(delay)`` — the same delay every time.
    * ``Backoff.linear(base, step, cap)`` — ``base + step * (n - 1)``, at most ``cap``.
    * ``Backoff.exponential(base, cap, factor, jitter)`` — ``base * factor ** (n - 1)``,
      at most ``cap``, with jitter ``"none"``, ``"full"`` (the default), ``"equal"`` or
      ``"decorrelated"``.

    Subclass it to write your own: implement :meth:`compute`. Instances must be immutable
    (they are shared by every call of every policy that uses them).

    Example::

        bt.Retry(attempts=5, on=ConnectionError,
                 backoff=bt.Backoff.exponential(base=0.05, cap=2.0, jitter="full"))
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new strategy instead")

    def _init(self, **fields: object) -> None:
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    @abstractmethod
    def compute(self, retry: int, previous: float, rng: _random.Random) -> float:
        """The delay in seconds before retry number ``retry`` (1 for the first retry).

        Args:
            retry: 1 for the first retry, 2 for the second, ...
            previous: the delay used before the previous retry (0.0 before the first).
            rng: the random source to use for jitter (the policy's ``random=``).
        """

    @staticmethod
    def constant(delay: float | timedelta = 0.1) -> Backoff:
        """Wait ``delay`` seconds (default 0.1) before every retry; ``0`` retries at once.

        Raises:
            ConfigError: ``delay`` is negative or not a finite duration.
        """
        return _Constant(v.seconds("delay", delay))

    @staticmethod
    def linear(
        base: float | timedelta = 0.1, step: float | timedelta = 0.1, cap: float | timedelta = 10.0
    ) -> Backoff:
        """Wait ``base + step * (n - 1)`` seconds, at most ``cap`` (defaults 0.1, 0.1, 10).

        Raises:
            ConfigError: a negative or non-finite duration, or ``cap < base``.
        """
        b, s, c = v.seconds("base", base), v.seconds("step", step), v.seconds("cap", cap)
        if c < b:
            raise v.fail("cap", f"a duration >= base ({b:g})", cap)
        return _Linear(b, s, c)

    @staticmethod
    def exponential(
        base: float | timedelta = 0.1,
        cap: float | timedelta = 10.0,
        factor: float = 2.0,
        jitter: Jitter = "full",
    ) -> Backoff:
        """Exponential backoff: ``min(cap, base * factor ** (n - 1))`` before jitter.

        Args:
            base: the first delay before jitter, seconds. Default 0.1.
            cap: the largest delay, seconds. Default 10.
            factor: growth per retry, ``>= 1``. Default 2.
            jitter: ``"full"`` (default): uniform in ``[0, d]``; ``"equal"``: ``d/2`` plus
                uniform in ``[0, d/2]``; ``"decorrelated"``: uniform in
                ``[base, 3 * previous]``, capped; ``"none"``: exactly ``d``.

        Raises:
            ConfigError: a negative or non-finite duration, ``cap < base``, ``factor < 1``
                or an unknown jitter.
        """
        b, c = v.seconds("base", base), v.seconds("cap", cap)
        if c < b:
            raise v.fail("cap", f"a duration >= base ({b:g})", cap)
        f = v.number("factor", factor, low=1.0)
        j = v.choice("jitter", jitter, _JITTERS)
        return _Exponential(b, c, f, j)


class _Constant(Backoff):
    __slots__ = ("delay",)

    delay: float

    def __init__(self, delay: float) -> None:
        self._init(delay=delay)

    def compute(self, retry: int, previous: float, rng: _random.Random) -> float:
        return self.delay

    def __repr__(self) -> str:
        return f"Backoff.constant({self.delay!r})"


class _Linear(Backoff):
    __slots__ = ("base", "cap", "step")

    base: float
    step: float
    cap: float

    def __init__(self, base: float, step: float, cap: float) -> None:
        self._init(base=base, step=step, cap=cap)

    def compute(self, retry: int, previous: float, rng: _random.Random) -> float:
        return min(self.cap, self.base + self.step * (retry - 1))

    def __repr__(self) -> str:
        return f"Backoff.linear(base={self.base!r}, step={self.step!r}, cap={self.cap!r})"


class _Exponential(Backoff):
    __slots__ = ("base", "cap", "factor", "jitter")

    base: float
    cap: float
    factor: float
    jitter: str

    def __init__(self, base: float, cap: float, factor: float, jitter: str) -> None:
        self._init(base=base, cap=cap, factor=factor, jitter=jitter)

    def _ceiling(self, retry: int) -> float:
        # factor ** n overflows a float near n = 1024 for factor 2; the cap is long reached.
        try:
            raw = self.base * self.factor ** (retry - 1)
        except OverflowError:
            return self.cap
        return self.cap if math.isinf(raw) or raw > self.cap else raw

    def compute(self, retry: int, previous: float, rng: _random.Random) -> float:
        jitter = self.jitter
        if jitter == "full":
            return rng.uniform(0.0, self._ceiling(retry))
        if jitter == "none":
            return self._ceiling(retry)
        if jitter == "equal":
            half = self._ceiling(retry) / 2.0
            return half + rng.uniform(0.0, half)
        # decorrelated: sleep = min(cap, uniform(base, previous * 3)), previous starts at base
        upper = max(self.base, (previous if previous > 0.0 else self.base) * 3.0)
        return min(self.cap, rng.uniform(self.base, upper))

    def __repr__(self) -> str:
        return (
            f"Backoff.exponential(base={self.base!r}, cap={self.cap!r}, "
            f"factor={self.factor!r}, jitter={self.jitter!r})"
        )
