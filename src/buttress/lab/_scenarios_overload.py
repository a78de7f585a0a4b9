"""The overload scenario: offered load three times what the upstream can serve.

The upstream has a fixed capacity (see :class:`~buttress.lab.Faults`): one worker with a
30 ms service time, so 33 requests per second, and room for 12 requests waiting behind
it; beyond that it answers 503 at once, as a server with a bounded backlog does. At the
lab's default 100 requests per second the offered load is three times its capacity.

* The **naked** client sends everything. The queue is always full, so every answer waits
  behind 12 others (about 0.4 s), and two requests in three are refused anyway.
* The **protected** client sheds the excess itself, before sending it: an
  :class:`~buttress.AdaptiveLimit` (Vegas) keeps the calls in flight near what the
  upstream serves without queueing, and an :class:`~buttress.AdaptiveThrottle` rejects
  at random in proportion to the refusals (by the upstream or by the limit).

Both get about the same number of answers — the upstream's capacity — but the protected
ones arrive without the queueing delay. The scenario compares **goodput**, successful
answers per second that came within a useful latency (:data:`USEFUL_LATENCY`), and p99
latency. At another ``--rate`` the capacity stays the same: the overload is
``rate / 33``.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

import buttress as bt

from .._validate import number
from ..adaptive import AdaptiveLimit, AdaptiveThrottle, Vegas
from ._driver import Sample, UpstreamError
from ._hypotheses import Hypothesis, p99_below_naked
from ._model import BuildContext, Phase, Scenario, register
from ._results import ArmResult
from ._upstream import Faults

__all__ = ["OVERLOAD", "USEFUL_LATENCY", "goodput", "goodput_at_least_naked"]

USEFUL_LATENCY = 0.25
"""Seconds within which an answer is still useful to the overload scenario's caller."""

# Capacity: WORKERS / SERVICE = 33 requests per second, a third of the default rate. A
# full queue holds QUEUE * SERVICE = 0.36 s of work: every answer waits that long.
WORKERS = 1
SERVICE = 0.03
QUEUE = 12


def goodput(samples: Sequence[Sample], seconds: float, useful: float) -> float:
    """Successful answers per second of load whose latency was at most ``useful`` seconds.

    Example::

        goodput(arm.samples, arm.spans[-1].end, 0.25)
    """
    if seconds <= 0.0:
        return 0.0
    good = sum(1 for s in samples if s.outcome == "success" and s.latency <= useful)
    return good / seconds


def goodput_at_least_naked(useful: float = USEFUL_LATENCY, factor: float = 1.0) -> Hypothesis:
    """The protected arm's goodput (successes within ``useful`` seconds, per second) is at
    least ``factor`` times the naked arm's.

    Raises:
        ConfigError: ``useful`` or ``factor`` is not positive.
    """
    limit = number("useful", useful, low=0.0, low_open=True)
    ratio = number("factor", factor, low=0.0, low_open=True)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours = goodput(protected.samples, _load_seconds(protected), limit)
        theirs = goodput(naked.samples, _load_seconds(naked), limit)
        return ours >= theirs * ratio, f"{ours:.1f}/s vs {theirs:.1f}/s"

    wording = "naked goodput" if ratio == 1.0 else f"{ratio:g} x naked goodput"
    return Hypothesis(f"protected goodput (<= {limit * 1000:g} ms) >= {wording}", test)


def _load_seconds(arm: ArmResult) -> float:
    return arm.spans[-1].end if arm.spans else 0.0


def _protect_overload(ctx: BuildContext) -> bt.Policy:
    return bt.pipeline(
        # Outermost: shed at random in proportion to what was refused below (by the
        # upstream's full queue, or by the limit), before doing any work. A lab phase
        # lasts seconds, so the window is seconds too (120 s in production).
        AdaptiveThrottle(
            k=2.0,
            window=2.0,
            buckets=10,
            on=(UpstreamError, bt.OverloadedError),
            random=ctx.random,
        ),
        # Then keep the calls in flight near what the upstream serves without queueing.
        AdaptiveLimit(
            # One worker: with Vegas's default of 3 to 6 calls waiting, each answer would
            # wait 3 to 6 service times. Allow 2.
            algorithm=Vegas(alpha=2, beta=2, threshold=1),
            initial_limit=4,
            max_limit=50,
            drop_on=(bt.TimeoutError, UpstreamError, httpx.TransportError),
            random=ctx.random,
        ),
        bt.Timeout(1.0),
    )


OVERLOAD = register(
    Scenario(
        name="overload",
        description="offered load 3x the upstream's capacity; adaptive limit and throttle shed it",
        phases=(Phase("overload", 10.0, Faults(latency=SERVICE, workers=WORKERS, queue=QUEUE)),),
        protect=_protect_overload,
        hypotheses=(goodput_at_least_naked(), p99_below_naked(0.5)),
    )
)
