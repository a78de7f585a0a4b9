"""Sync circuit breakers: the closed-state happy path, and the cost of a rejection.

Every breaker opens after 5 consecutive failures (or, in rate mode, at a 50 % failure
rate over the last 100 calls with at least 20 calls), stays open 30 s, and closes after
one successful probe, wherever the library lets us say so.
"""

from __future__ import annotations

from typing import Any

import circuitbreaker
import pybreaker
import pyresilience as pr

import buttress as bt
from _harness import Contender, RatioColumn, Suite, Target
from _targets import f, fail


def _trip(call: Any, times: int = 5) -> None:
    """Make ``times`` failing calls through ``call()``, whatever each one raises."""
    for _ in range(times):
        try:
            call()
        except Exception:  # the failure itself, or the library's "just tripped" error
            pass


def _expect(call: Any, error: type[BaseException]) -> None:
    """Check that ``call()`` is rejected with ``error`` (the breaker is still open)."""
    try:
        call()
    except error:
        return
    raise AssertionError(f"expected {error.__name__}: the breaker is not open")


def _happy_path() -> Suite:
    bt_breaker = bt.CircuitBreaker(consecutive_failures=5)
    bt_guarded = bt_breaker(f)
    bt_rate = bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(100))
    bt_rate_guarded = bt_rate(f)
    bt_timed = bt.CircuitBreaker(window=bt.TimeWindow(60))

    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    pb_guarded = pb(f)

    cb_guarded = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(f)

    pr_guarded = pr.resilient(
        circuit_breaker=pr.CircuitBreakerConfig(
            failure_threshold=5, recovery_timeout=30.0, success_threshold=1
        )
    )(f)
    pr_window_guarded = pr.resilient(
        circuit_breaker=pr.CircuitBreakerConfig(
            sliding_window_size=100,
            failure_rate_threshold=0.5,
            minimum_calls=20,
            recovery_timeout=30.0,
            success_threshold=1,
        )
    )(f)

    contenders = [
        Contender(
            "bt-call",
            "buttress `breaker.call_sync(f)`",
            "buttress",
            "call",
            "breaker.call_sync(f)",
            {"breaker": bt_breaker, "f": f},
            config="breaker = bt.CircuitBreaker(consecutive_failures=5)  # open_for=30, "
            "half_open_calls=1 (defaults)",
        ),
        Contender(
            "bt-dec",
            "buttress `@breaker`",
            "buttress",
            "decorator",
            "guarded()",
            {"guarded": bt_guarded},
            config="guarded = breaker(f)  # the same breaker as above",
        ),
        Contender(
            "bt-rate-call",
            "buttress rate mode, `CountWindow(100)`, `call_sync`",
            "buttress",
            "call",
            "breaker.call_sync(f)",
            {"breaker": bt_rate, "f": f},
            config="bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(100))  "
            "# min_calls=20 (default)",
        ),
        Contender(
            "bt-rate-dec",
            "buttress rate mode, `CountWindow(100)`, `@breaker`",
            "buttress",
            "decorator",
            "guarded()",
            {"guarded": bt_rate_guarded},
            config="the rate-mode breaker above, as a decorator",
        ),
        Contender(
            "bt-time-call",
            "buttress rate mode, `TimeWindow(60)`, `call_sync`",
            "buttress",
            "call",
            "breaker.call_sync(f)",
            {"breaker": bt_timed, "f": f},
            config="bt.CircuitBreaker(window=bt.TimeWindow(60))  "
            "# failure_rate=0.5, 10 buckets, min_calls=20 (defaults)",
        ),
        Contender(
            "pybreaker-call",
            "pybreaker `cb.call(f)`",
            "pybreaker",
            "call",
            "cb.call(f)",
            {"cb": pb, "f": f},
            config="cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)",
        ),
        Contender(
            "pybreaker-dec",
            "pybreaker `@cb`",
            "pybreaker",
            "decorator",
            "guarded()",
            {"guarded": pb_guarded},
            config="guarded = cb(f)  # the same pybreaker breaker",
        ),
        Contender(
            "circuitbreaker-dec",
            "circuitbreaker `@circuit`",
            "circuitbreaker",
            "decorator",
            "guarded()",
            {"guarded": cb_guarded},
            config="guarded = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(f)",
            note="circuitbreaker's `CircuitBreaker.call()` does not check whether the "
            "breaker is open (only the decorator does), so only the decorator is measured.",
        ),
        Contender(
            "pyresilience-dec",
            "pyresilience `@resilient(circuit_breaker=…)`",
            "pyresilience",
            "decorator",
            "guarded()",
            {"guarded": pr_guarded},
            config="guarded = pr.resilient(circuit_breaker=pr.CircuitBreakerConfig("
            "failure_threshold=5, recovery_timeout=30.0, success_threshold=1))(f)",
            note="pyresilience has no call method; its breaker is only reachable through "
            "`@resilient`.",
        ),
        Contender(
            "pyresilience-window-dec",
            "pyresilience sliding window (100 calls), `@resilient`",
            "pyresilience",
            "decorator",
            "guarded()",
            {"guarded": pr_window_guarded},
            config="pr.resilient(circuit_breaker=pr.CircuitBreakerConfig("
            "sliding_window_size=100, failure_rate_threshold=0.5, minimum_calls=20, "
            "recovery_timeout=30.0, success_threshold=1))(f)",
        ),
    ]
    return Suite(
        name="breaker",
        title="Sync circuit breaker, happy path (closed, every call succeeds)",
        kind="sync",
        description=(
            "Overhead of one successful call of `f` through a closed breaker. Consecutive "
            "mode (open after 5 failures in a row) unless the row says otherwise."
        ),
        baseline=Contender("bare", "bare `f()`", "-", "-", "f()", {"f": f}),
        contenders=contenders,
        columns=[
            RatioColumn(
                "vs pybreaker",
                {"call": "pybreaker-call", "decorator": "pybreaker-dec"},
                "pybreaker-call",
            ),
            RatioColumn("vs circuitbreaker", {}, "circuitbreaker-dec"),
            RatioColumn(
                "vs pyresilience",
                {},
                "pyresilience-dec",
                overrides={
                    "bt-rate-call": "pyresilience-window-dec",
                    "bt-rate-dec": "pyresilience-window-dec",
                    "bt-time-call": "pyresilience-window-dec",
                    "pyresilience-window-dec": "pyresilience-window-dec",
                },
            ),
        ],
        targets=[
            Target(
                "buttress breaker ≤ 0.2 of pybreaker's overhead, call form",
                "bt-call",
                0.2,
                ref="pybreaker-call",
            ),
            Target(
                "buttress breaker ≤ 0.2 of pybreaker's overhead, decorator form",
                "bt-dec",
                0.2,
                ref="pybreaker-dec",
            ),
            Target(
                "a sync CircuitBreaker call adds ≤ 0.25 µs", "bt-call", 250.0, source="DESIGN.md §6"
            ),
        ],
        notes=[
            "Rate-mode rows are compared with pyresilience's sliding window (the only "
            "peer with a failure-rate window); no peer has a time window.",
        ],
        order=10,
    )


def _rejection() -> Suite:
    bt_breaker = bt.CircuitBreaker(consecutive_failures=5, open_for=3600)
    _trip(lambda: bt_breaker.call_sync(fail))
    bt_guarded = bt_breaker(f)

    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600)
    _trip(lambda: pb.call(fail))
    pb_guarded = pb(f)

    cb = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=3600)
    cb_failing = cb(fail)
    cb_guarded = cb(f)
    _trip(cb_failing)

    # pyresilience keeps one breaker per decorated function: trip the function itself.
    down = [True]

    def flappy() -> int:
        if down[0]:
            raise ConnectionError("down")
        return 1

    pr_guarded = pr.resilient(
        circuit_breaker=pr.CircuitBreakerConfig(
            failure_threshold=5, recovery_timeout=3600.0, success_threshold=1
        )
    )(flappy)
    _trip(pr_guarded)

    def rejecting(stmt: str, error: str) -> str:
        return f"try:\n    {stmt}\nexcept {error}:\n    pass\n"

    contenders = [
        Contender(
            "bt-call",
            "buttress `breaker.call_sync(f)`",
            "buttress",
            "call",
            rejecting("breaker.call_sync(f)", "CircuitOpenError"),
            {"breaker": bt_breaker, "f": f, "CircuitOpenError": bt.CircuitOpenError},
            config="bt.CircuitBreaker(consecutive_failures=5, open_for=3600), "
            "tripped by 5 failures; except bt.CircuitOpenError",
            check=lambda: _expect(lambda: bt_breaker.call_sync(f), bt.CircuitOpenError),
        ),
        Contender(
            "bt-dec",
            "buttress `@breaker`",
            "buttress",
            "decorator",
            rejecting("guarded()", "CircuitOpenError"),
            {"guarded": bt_guarded, "CircuitOpenError": bt.CircuitOpenError},
            config="guarded = breaker(f)  # the same open breaker",
            check=lambda: _expect(bt_guarded, bt.CircuitOpenError),
        ),
        Contender(
            "pybreaker-call",
            "pybreaker `cb.call(f)`",
            "pybreaker",
            "call",
            rejecting("cb.call(f)", "CircuitBreakerError"),
            {"cb": pb, "f": f, "CircuitBreakerError": pybreaker.CircuitBreakerError},
            config="pybreaker.CircuitBreaker(fail_max=5, reset_timeout=3600), tripped by 5 "
            "failures; except pybreaker.CircuitBreakerError",
            check=lambda: _expect(lambda: pb.call(f), pybreaker.CircuitBreakerError),
        ),
        Contender(
            "pybreaker-dec",
            "pybreaker `@cb`",
            "pybreaker",
            "decorator",
            rejecting("guarded()", "CircuitBreakerError"),
            {"guarded": pb_guarded, "CircuitBreakerError": pybreaker.CircuitBreakerError},
            config="guarded = cb(f)  # the same open breaker",
            check=lambda: _expect(pb_guarded, pybreaker.CircuitBreakerError),
        ),
        Contender(
            "circuitbreaker-dec",
            "circuitbreaker `@circuit`",
            "circuitbreaker",
            "decorator",
            rejecting("guarded()", "CircuitBreakerError"),
            {"guarded": cb_guarded, "CircuitBreakerError": circuitbreaker.CircuitBreakerError},
            config="cb = circuitbreaker.CircuitBreaker(failure_threshold=5, "
            "recovery_timeout=3600); guarded = cb(f), tripped through cb(fail); "
            "except circuitbreaker.CircuitBreakerError",
            check=lambda: _expect(cb_guarded, circuitbreaker.CircuitBreakerError),
        ),
        Contender(
            "pyresilience-dec",
            "pyresilience `@resilient(circuit_breaker=…)`",
            "pyresilience",
            "decorator",
            rejecting("guarded()", "CircuitOpenError"),
            {"guarded": pr_guarded, "CircuitOpenError": pr.CircuitOpenError},
            config="pr.resilient(circuit_breaker=pr.CircuitBreakerConfig(failure_threshold=5, "
            "recovery_timeout=3600.0, success_threshold=1)) around a callee failing until "
            "tripped; except pr.CircuitOpenError",
            check=lambda: _expect(pr_guarded, pr.CircuitOpenError),
        ),
    ]
    return Suite(
        name="rejection",
        title="Rejection path (breaker open, call rejected and caught)",
        kind="sync",
        description=(
            "Cost of one rejected call, including raising the library's open-breaker "
            "error and catching it with `try/except`, over a bare `f()` call (which the "
            "rejected call never makes)."
        ),
        baseline=Contender("bare", "bare `f()`", "-", "-", "f()", {"f": f}),
        contenders=contenders,
        columns=[
            RatioColumn(
                "vs pybreaker",
                {"call": "pybreaker-call", "decorator": "pybreaker-dec"},
                "pybreaker-call",
            ),
            RatioColumn("vs circuitbreaker", {}, "circuitbreaker-dec"),
            RatioColumn("vs pyresilience", {}, "pyresilience-dec"),
        ],
        order=50,
    )


def suites() -> list[Suite]:
    return [_happy_path(), _rejection()]
