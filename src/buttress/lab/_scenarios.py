"""The built-in scenarios. Each is one small, self-contained definition; add yours alike.

Phase lengths are for the default run (10 s of load per arm); ``--quick`` (each
scenario's ``quick`` seconds) and
``--duration`` stretch or shrink every phase in proportion. The policies' own timings
(timeouts, ``open_for``) are short because a lab phase lasts seconds, not minutes.
"""

from __future__ import annotations

import httpx

import buttress as bt

from ._driver import UpstreamError, degraded
from ._hypotheses import (
    amplification_at_most,
    answered_at_least,
    p99_below_naked,
    recovers_within,
    rejects_fast,
    success_beats_naked,
)
from ._model import BuildContext, Phase, Scenario, register
from ._upstream import Faults

__all__ = ["FLAKY", "LATENCY_TAIL", "OUTAGE", "RETRYABLE"]

RETRYABLE = (UpstreamError, bt.TimeoutError, httpx.TransportError)
"""What the lab's pipelines retry: 5xx answers, our timeouts, connection failures."""


# -- flaky: a steady share of errors --------------------------------------------------------


def _protect_flaky(ctx: BuildContext) -> bt.Policy:
    return bt.pipeline(
        bt.Retry(
            attempts=3,
            on=RETRYABLE,
            backoff=bt.Backoff.exponential(base=0.02, cap=0.2),
            budget=bt.RetryBudget(ratio=0.2, min_per_second=1.0),
            random=ctx.random,
        ),
        # Judged over a full window: with 25 % errors, 5 failures among the first 10
        # attempts (about 8 % likely) would trip a breaker judged after 10 calls, which
        # then refuses a dependency that is merely flaky. Over 50 calls, a false trip
        # needs 25 failures (about 0.01 %).
        bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(50), min_calls=50, open_for=0.5),
        bt.Timeout(0.25),
    )


FLAKY = register(
    Scenario(
        name="flaky",
        description="a steady 25 % of requests fail with 503; retries within a budget",
        phases=(Phase("flaky", 10.0, Faults(error_rate=0.25)),),
        protect=_protect_flaky,
        hypotheses=(success_beats_naked(by=0.10), amplification_at_most(1.3)),
        # Shorter, the retry budget's floor (1 retry/s) weighs too much in amplification.
        quick=1.6,
    )
)


# -- latency-tail: a few very slow answers --------------------------------------------------


def _protect_latency_tail(ctx: BuildContext) -> bt.Policy:
    # After 50 ms without an answer the hedge sends a second request and takes the first
    # answer; the timeout bounds the hedged pair; the retry runs it again if both stalled.
    return bt.pipeline(
        bt.Retry(
            attempts=2,
            on=RETRYABLE,
            backoff=0.0,
            budget=bt.RetryBudget(ratio=0.1, min_per_second=1.0),
            random=ctx.random,
        ),
        bt.Timeout(0.5),
        bt.Hedge(delay=0.05, max_extra=1),
    )


LATENCY_TAIL = register(
    Scenario(
        name="latency-tail",
        description="5 % of requests take 1-2 s; hedged requests cut the tail",
        phases=(Phase("tail", 10.0, Faults(slow_rate=0.05, slow_seconds=(1.0, 2.0))),),
        protect=_protect_latency_tail,
        hypotheses=(
            success_beats_naked(by=-0.01),
            p99_below_naked(0.25),
            amplification_at_most(1.2),
        ),
        # The p99 hypothesis needs the naked arm's p99 in the tail: at 1 s of load (~100
        # requests) the naked arm draws fewer than two slow ones ~4 % of the time, and the
        # protected arm's p99 catches a hedged pair that both stalled (~0.5 s) ~3 % of the
        # time. At 2 s, ~0.3 % and ~1.4 %; the full 10 s run, far less.
        quick=2.0,
    )
)


# -- outage: healthy, a black hole, recovery ------------------------------------------------


def _protect_outage(ctx: BuildContext) -> bt.Policy:
    return bt.pipeline(
        bt.Fallback(degraded),  # a stand-in answer, counted as degraded
        bt.Timeout(0.25),  # the caller's whole budget: retries and attempts clamp to it
        bt.Retry(
            attempts=3,
            on=RETRYABLE,
            backoff=bt.Backoff.exponential(base=0.02, cap=0.2),
            budget=bt.RetryBudget(ratio=0.2, min_per_second=1.0),
            random=ctx.random,
        ),
        # open_for bounds how long after the upstream's return calls are still refused.
        bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(50), min_calls=10, open_for=0.25),
        bt.Timeout(0.2),  # one attempt (a healthy answer takes a few ms)
    )


OUTAGE = register(
    Scenario(
        name="outage",
        description="healthy, then the upstream hangs every request, then recovers",
        phases=(
            Phase("healthy", 3.0),
            Phase("outage", 4.0, Faults(outage="hang")),
            Phase("recovery", 3.0),
        ),
        protect=_protect_outage,
        hypotheses=(
            answered_at_least(0.95),
            p99_below_naked(0.5),
            rejects_fast(),
            recovers_within("recovery", 0.5),
        ),
        # The outage must outlast the 0.3 s timeout clearly for the p99 claim to mean
        # something: 0.64 s of outage at 1.6 s of load.
        quick=1.6,
    )
)
