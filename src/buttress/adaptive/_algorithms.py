"""Limit algorithms: how an :class:`~buttress.AdaptiveLimit` moves its concurrency limit.

Each algorithm is an immutable, validated options object (:class:`Gradient2`,
:class:`Vegas`, :class:`AIMD`) whose :meth:`~LimitAlgorithm.start` makes a fresh mutable
:class:`LimitState`. The state's ``update(rtt, inflight, dropped, now)`` is the whole
algorithm: a pure step, sans-I/O, that takes one sample and returns the new (fractional)
limit. The limiter calls it under its lock, once per completed call, from sync and async
callers alike, so every rule is written once.

The definitions follow Netflix's concurrency-limits library (Apache-2.0),
``concurrency-limits-core/src/main/java/com/netflix/concurrency/limits/limit/``:
``Gradient2Limit.java``, ``VegasLimit.java``, ``AIMDLimit.java`` and the helpers
``measurement/ExpAvgMeasurement.java`` and ``functions/Log10RootFunction.java``. The code
here is our own, written from those definitions; where we differ, the docstring says so.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from .. import _validate as v

__all__ = [
    "AIMD",
    "Gradient2",
    "LimitAlgorithm",
    "LimitState",
    "Vegas",
    "log10_limit",
]

LimitFunction = Callable[[int], float]
"""A value computed from the current integer limit (a queue size, a Vegas threshold)."""

StepFunction = Callable[[float], float]
"""A new limit computed from the current one (Vegas's increase and decrease)."""


@runtime_checkable
class LimitState(Protocol):
    """The mutable state of one limiter's algorithm; made by :meth:`LimitAlgorithm.start`.

    ``limit`` is the current estimate (fractional; the limiter admits ``int(limit)``
    calls). ``update`` takes one completed call — its round-trip time ``rtt`` in seconds,
    the number of calls in flight when it was admitted (itself included), whether it was
    a drop (a timeout, an overload answer), and the clock reading ``now`` — and returns
    the new estimate, within the bounds the state was started with. It is called under
    the limiter's lock: it must not block or call back into the limiter.

    Example (the state of a limit that halves on a drop and otherwise stays put)::

        class HalvingState:
            def __init__(self, limit: float, low: int) -> None:
                self.limit, self.low = limit, low

            def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
                if dropped:
                    self.limit = max(self.low, self.limit / 2)
                return self.limit
    """

    limit: float

    def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
        """Feed one sample; return the new limit."""
        ...


@runtime_checkable
class LimitAlgorithm(Protocol):
    """An algorithm's options: immutable, shareable between limiters.

    Example (the algorithm whose state is the ``HalvingState`` of :class:`LimitState`)::

        @dataclass(frozen=True)
        class Halving:
            def start(self, *, initial_limit, min_limit, max_limit, random):
                return HalvingState(float(initial_limit), min_limit)

        limiter = bt.AdaptiveLimit(algorithm=Halving(), initial_limit=64)
    """

    def start(
        self, *, initial_limit: int, min_limit: int, max_limit: int, random: _random.Random
    ) -> LimitState:
        """A fresh state starting at ``initial_limit``, kept within ``[min_limit, max_limit]``."""
        ...


def log10_limit(limit: int) -> int:
    """``max(1, floor(log10(limit)))``: 1 below 100, 2 below 1000, and so on.

    The step and threshold scale of :class:`Vegas` (Netflix's ``Log10RootFunction``; for
    limits of 1000 and more that class returns a square root, which we do not copy).

    Example::

        [log10_limit(n) for n in (5, 150, 2000)]   # [1, 2, 3]
    """
    if limit < 100:
        return 1
    return max(1, int(math.log10(limit)))


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def _apply(value: float | LimitFunction, limit: int) -> float:
    return value(limit) if callable(value) else value


def _number_or_function(name: str, value: object, *, low: float) -> None:
    if callable(value):
        return
    v.number(name, value, low=low)


def _show(value: object) -> str:
    """A readable repr for an option that may be a function."""
    name = getattr(value, "__qualname__", None)
    return name if callable(value) and isinstance(name, str) else repr(value)


# -- Gradient2 ----------------------------------------------------------------------------------

_WARMUP = 10
"""Samples averaged plainly before the long-term RTT becomes an exponential average."""

_DRIFT_RATIO = 2.0
_DRIFT_DECAY = 0.95


@dataclass(frozen=True, slots=True)
class Gradient2:
    """Gradient2: shrink the limit when the latency rises above its long-term average.

    Per completed call (``rtt``: its latency; ``L``: the current limit)::

        long = exponential average of rtt over about long_window samples
        if long / rtt > 2:          long *= 0.95      # drift: latency came back down
        if inflight < L / 2:        keep L            # app-limited: no evidence either way
        gradient = clamp(rtt_tolerance * long / rtt, 0.5, 1.0)
        target   = L * gradient + queue_size(L)
        L        = L * (1 - smoothing) + target * smoothing

    While the latency stays within ``rtt_tolerance`` times its long-term average the
    gradient is 1 and the limit grows by ``smoothing * queue_size`` per call; when queueing
    pushes the latency higher, the gradient drops below 1 and the limit shrinks, at most
    halving the target per call. The long-term average lags the latency under load, which
    keeps the limit low; once the latency falls back, the drift rule pulls the average
    down quickly instead of waiting for it to decay. The first 10 samples are averaged
    plainly (a warm-up), then ``long`` moves by ``2 / (long_window + 1)`` of each sample.

    It looks at latency only: a drop changes the limit only through its latency (a
    timeout's latency is long). Samples with ``rtt <= 0`` (a clock too coarse to see the
    call) are ignored.

    Source: Netflix concurrency-limits, ``Gradient2Limit.java`` (with
    ``ExpAvgMeasurement.java``). There the limit's floor defaults to 20; here the floor
    is the limiter's ``min_limit``. Note that with a fixed ``queue_size`` q the limit
    settles no lower than about ``2 q`` even under heavy queueing (``L = L/2 + q``); pass a
    smaller ``queue_size`` (or a function of the limit) to protect small backends.

    Args:
        rtt_tolerance: how many times the long-term latency is tolerated before the limit
            shrinks, ``>= 1``. Default 1.5.
        smoothing: how far each sample moves the limit toward its target, in (0, 1].
            Default 0.2.
        queue_size: how much queueing to allow for, ``>= 0``: a number, or a function of
            the current integer limit returning one. Default 4.
        long_window: samples in the long-term average, ``>= 1``. Default 600.

    Raises:
        ConfigError: an option is out of range.

    Example::

        limiter = bt.AdaptiveLimit(algorithm=bt.Gradient2(rtt_tolerance=2.0, queue_size=2))
    """

    rtt_tolerance: float = 1.5
    smoothing: float = 0.2
    queue_size: float | LimitFunction = 4
    long_window: int = 600

    def __post_init__(self) -> None:
        v.number("rtt_tolerance", self.rtt_tolerance, low=1.0)
        v.number("smoothing", self.smoothing, low=0.0, high=1.0, low_open=True)
        _number_or_function("queue_size", self.queue_size, low=0.0)
        v.integer("long_window", self.long_window, minimum=1)

    def __repr__(self) -> str:
        return (
            f"Gradient2(rtt_tolerance={self.rtt_tolerance!r}, smoothing={self.smoothing!r}, "
            f"queue_size={_show(self.queue_size)}, long_window={self.long_window!r})"
        )

    def start(
        self, *, initial_limit: int, min_limit: int, max_limit: int, random: _random.Random
    ) -> Gradient2State:
        """A fresh state at ``initial_limit`` (``random`` is not used)."""
        return Gradient2State(self, float(initial_limit), min_limit, max_limit)


class Gradient2State:
    """The mutable state of :class:`Gradient2`: the limit and the long-term RTT."""

    __slots__ = ("_count", "_factor", "_sum", "high", "limit", "long_rtt", "low", "options")

    def __init__(self, options: Gradient2, limit: float, low: int, high: int) -> None:
        self.options = options
        self.limit = limit
        self.low = low
        self.high = high
        self.long_rtt = 0.0
        self._count = 0
        self._sum = 0.0
        self._factor = 2.0 / (options.long_window + 1)

    def __repr__(self) -> str:
        return f"Gradient2State(limit={self.limit!r}, long_rtt={self.long_rtt!r})"

    def _average(self, rtt: float) -> float:
        if self._count < _WARMUP:
            self._count += 1
            self._sum += rtt
            self.long_rtt = self._sum / self._count
        else:
            self.long_rtt += (rtt - self.long_rtt) * self._factor
        return self.long_rtt

    def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
        """Feed one sample (see :class:`Gradient2`); return the new limit."""
        if rtt <= 0.0:
            return self.limit
        options = self.options
        limit = self.limit
        long_rtt = self._average(rtt)
        if long_rtt / rtt > _DRIFT_RATIO:
            # Applies from the next sample on; this one is judged on the average as it was.
            self.long_rtt = long_rtt * _DRIFT_DECAY
        if inflight < limit / 2:
            return limit
        gradient = _clamp(options.rtt_tolerance * long_rtt / rtt, 0.5, 1.0)
        target = limit * gradient + _apply(options.queue_size, int(limit))
        smoothing = options.smoothing
        limit = _clamp(limit * (1.0 - smoothing) + target * smoothing, self.low, self.high)
        self.limit = limit
        return limit


# -- Vegas --------------------------------------------------------------------------------------


def vegas_alpha(limit: int) -> float:
    """Vegas's default ``alpha``: ``3 * log10_limit(limit)``."""
    return 3 * log10_limit(limit)


def vegas_beta(limit: int) -> float:
    """Vegas's default ``beta``: ``6 * log10_limit(limit)``."""
    return 6 * log10_limit(limit)


def vegas_threshold(limit: int) -> float:
    """Vegas's default ``threshold``: ``log10_limit(limit)``."""
    return log10_limit(limit)


def vegas_increase(limit: float) -> float:
    """Vegas's default increase: ``limit + log10_limit(limit)``."""
    return limit + log10_limit(int(limit))


def vegas_decrease(limit: float) -> float:
    """Vegas's default decrease: ``limit - log10_limit(limit)``."""
    return limit - log10_limit(int(limit))


@dataclass(frozen=True, slots=True)
class Vegas:
    """Vegas: estimate the queue from the latency above the no-load latency; keep it small.

    ``rtt_noload`` is the lowest latency seen (the service time without queueing). Per
    completed call (``L``: the current limit, ``l = int(L)``)::

        if dropped:                   target = decrease(L)       # and nothing else
        every probe_multiplier * L * jitter samples:  rtt_noload = rtt; keep L   (probe)
        if rtt < rtt_noload (or none yet):            rtt_noload = rtt; keep L
        queue = ceil(L * (1 - rtt_noload / rtt))      # calls waiting, by Little's law
        if inflight * 2 < L:          keep L                     # app-limited
        elif queue <= threshold(l):   target = L + beta(l)       # no queue: grow fast
        elif queue <  alpha(l):       target = increase(L)
        elif queue >  beta(l):        target = decrease(L)
        else:                         keep L                     # in the sweet spot
        L = (1 - smoothing) * L + smoothing * clamp(target, min_limit, max_limit)

    With the defaults ``alpha = 3``, ``beta = 6``, ``threshold = 1`` and the steps are 1
    while the limit is below 100 (each is scaled by ``log10_limit``: 2 from 100 to 999...).
    The probe forgets ``rtt_noload`` now and then (``jitter`` is drawn uniformly from
    [0.5, 1) from the limiter's ``random`` after each probe), so that a lasting change in
    the service time is learnt. Samples with ``rtt <= 0`` are ignored, unless dropped.

    Because ``queue`` is rounded up, any latency above ``rtt_noload`` reads as at least one
    call waiting: keep ``threshold >= 1``, or a limit of 1 can get stuck in the sweet spot.

    Source: Netflix concurrency-limits, ``VegasLimit.java`` (with ``Log10RootFunction``).
    Two differences: the floor of the limit is the limiter's ``min_limit`` (there 1), and
    a drop only decreases the limit, where the reference also lets its latency probe and
    set ``rtt_noload`` — a fast refusal (an instant 503) would then pass for the no-load
    latency and make every later call look queued.

    Args:
        alpha: grow while the estimated queue is below this: a number or a function of the
            integer limit, ``>= 0``. Default ``3 * log10_limit(limit)``.
        beta: shrink once the estimated queue is above this; also the fast-growth step.
            Default ``6 * log10_limit(limit)``.
        threshold: grow fast (by ``beta``) while the queue is at most this. Default
            ``log10_limit(limit)``.
        increase: the new limit when growing, from the current one. Default
            ``limit + log10_limit(limit)``.
        decrease: the new limit when shrinking (and on a drop). Default
            ``limit - log10_limit(limit)``.
        smoothing: how far each change moves the limit, in (0, 1]. Default 1.0 (all the way).
        probe_multiplier: probe for a new no-load latency about every
            ``probe_multiplier * limit`` samples, ``>= 1``. Default 30.

    Raises:
        ConfigError: an option is out of range or not a number or function.

    Example::

        limiter = bt.AdaptiveLimit(algorithm=bt.Vegas(), initial_limit=10)
    """

    alpha: float | LimitFunction = vegas_alpha
    beta: float | LimitFunction = vegas_beta
    threshold: float | LimitFunction = vegas_threshold
    increase: StepFunction = vegas_increase
    decrease: StepFunction = vegas_decrease
    smoothing: float = 1.0
    probe_multiplier: int = 30

    def __post_init__(self) -> None:
        _number_or_function("alpha", self.alpha, low=0.0)
        _number_or_function("beta", self.beta, low=0.0)
        _number_or_function("threshold", self.threshold, low=0.0)
        if not callable(self.increase):
            raise v.fail("increase", "a function (limit: float) -> float", self.increase)
        if not callable(self.decrease):
            raise v.fail("decrease", "a function (limit: float) -> float", self.decrease)
        v.number("smoothing", self.smoothing, low=0.0, high=1.0, low_open=True)
        v.integer("probe_multiplier", self.probe_multiplier, minimum=1)

    def __repr__(self) -> str:
        return (
            f"Vegas(alpha={_show(self.alpha)}, beta={_show(self.beta)}, "
            f"threshold={_show(self.threshold)}, increase={_show(self.increase)}, "
            f"decrease={_show(self.decrease)}, smoothing={self.smoothing!r}, "
            f"probe_multiplier={self.probe_multiplier!r})"
        )

    def start(
        self, *, initial_limit: int, min_limit: int, max_limit: int, random: _random.Random
    ) -> VegasState:
        """A fresh state at ``initial_limit``; ``random`` draws the probe jitter."""
        return VegasState(self, float(initial_limit), min_limit, max_limit, random)


class VegasState:
    """The mutable state of :class:`Vegas`: the limit, ``rtt_noload`` and the probe count."""

    __slots__ = (
        "high",
        "limit",
        "low",
        "options",
        "probe_count",
        "probe_jitter",
        "random",
        "rtt_noload",
    )

    def __init__(
        self, options: Vegas, limit: float, low: int, high: int, random: _random.Random
    ) -> None:
        self.options = options
        self.limit = limit
        self.low = low
        self.high = high
        self.random = random
        self.rtt_noload = 0.0  # 0: none measured yet
        self.probe_count = 0
        self.probe_jitter = self._jitter()

    def __repr__(self) -> str:
        return f"VegasState(limit={self.limit!r}, rtt_noload={self.rtt_noload!r})"

    def _jitter(self) -> float:
        return 0.5 + 0.5 * self.random.random()

    def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
        """Feed one sample (see :class:`Vegas`); return the new limit."""
        options = self.options
        limit = self.limit
        if dropped:
            # A drop's latency says nothing about the no-load latency (a fast refusal
            # would pass for a very fast call): it neither probes nor sets rtt_noload.
            target = options.decrease(limit)
        else:
            if rtt <= 0.0:
                return limit
            self.probe_count += 1
            if self.probe_jitter * options.probe_multiplier * limit <= self.probe_count:
                self.probe_jitter = self._jitter()
                self.probe_count = 0
                self.rtt_noload = rtt
                return limit
            if self.rtt_noload == 0.0 or rtt < self.rtt_noload:
                self.rtt_noload = rtt
                return limit
            if inflight * 2 < limit:
                return limit
            queue = math.ceil(limit * (1.0 - self.rtt_noload / rtt))
            whole = int(limit)
            beta = _apply(options.beta, whole)
            if queue <= _apply(options.threshold, whole):
                target = limit + beta
            elif queue < _apply(options.alpha, whole):
                target = options.increase(limit)
            elif queue > beta:
                target = options.decrease(limit)
            else:
                return limit
        target = _clamp(target, self.low, self.high)
        smoothing = options.smoothing
        limit = (1.0 - smoothing) * limit + smoothing * target
        self.limit = limit
        return limit


# -- AIMD ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AIMD:
    """AIMD: additive increase while the limit is in use, multiplicative decrease on a drop.

    Per completed call (``l``: the current integer limit)::

        if dropped or rtt > timeout:   l = max(1, min(l - 1, floor(l * backoff_ratio)))
        elif inflight * 2 >= l:        l = l + 1
        else:                          keep l                    # app-limited
        l = clamp(l, min_limit, max_limit)

    Loss-based: it reacts to drops (the limiter's ``drop_on`` exceptions, by default
    :class:`~buttress.TimeoutError` and :class:`~buttress.OverloadedError`) and to calls
    slower than ``timeout``, not to a latency that creeps up below it. A decrease takes at
    least one off the limit.

    Source: Netflix concurrency-limits, ``AIMDLimit.java``.

    Args:
        backoff_ratio: the factor applied on a drop, in [0.5, 1). Default 0.9.
        timeout: a call slower than this (seconds or ``timedelta``, ``> 0``) counts as a
            drop. Default 5.0.

    Raises:
        ConfigError: an option is out of range.

    Example::

        limiter = bt.AdaptiveLimit(algorithm=bt.AIMD(backoff_ratio=0.8, timeout=1.0))
    """

    backoff_ratio: float = 0.9
    timeout: float | timedelta = 5.0

    def __post_init__(self) -> None:
        v.number("backoff_ratio", self.backoff_ratio, low=0.5, high=1.0, high_open=True)
        object.__setattr__(
            self, "timeout", v.seconds("timeout", self.timeout, allow_zero=False, allow_inf=True)
        )

    def start(
        self, *, initial_limit: int, min_limit: int, max_limit: int, random: _random.Random
    ) -> AIMDState:
        """A fresh state at ``initial_limit`` (``random`` is not used)."""
        return AIMDState(self, float(initial_limit), min_limit, max_limit)


class AIMDState:
    """The mutable state of :class:`AIMD`: the limit."""

    __slots__ = ("high", "limit", "low", "options", "timeout")

    def __init__(self, options: AIMD, limit: float, low: int, high: int) -> None:
        self.options = options
        self.limit = limit
        self.low = low
        self.high = high
        self.timeout = v.seconds("timeout", options.timeout, allow_zero=False, allow_inf=True)

    def __repr__(self) -> str:
        return f"AIMDState(limit={self.limit!r})"

    def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
        """Feed one sample (see :class:`AIMD`); return the new limit."""
        current = int(self.limit)
        if dropped or rtt > self.timeout:
            new = max(1, min(current - 1, math.floor(current * self.options.backoff_ratio)))
        elif inflight * 2 >= current:
            new = current + 1
        else:
            return self.limit
        self.limit = float(_clamp(new, self.low, self.high))
        return self.limit
