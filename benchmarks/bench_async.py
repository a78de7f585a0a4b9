"""Async pipelines: retry + breaker, and timeout + retry + breaker, on the happy path.

The same semantics everywhere: at most 3 attempts retrying only ``ConnectionError``,
exponential backoff around 0.1 s (never reached on the happy path), a breaker opening
after 5 consecutive failures for 30 s and closing after one good probe, and in suite 4 a
10 s timeout per attempt. Every sample runs inside one running event loop.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aiobreaker
import pyresilience as pr
import tenacity

import buttress as bt
from _harness import Contender, RatioColumn, Suite, Target
from _targets import af

_PR_RETRY = "pr.RetryConfig(max_attempts=3, retry_on=(ConnectionError,), delay=0.1, max_delay=10.0)"
_PR_BREAKER = (
    "pr.CircuitBreakerConfig(failure_threshold=5, recovery_timeout=30.0, success_threshold=1)"
)


def _pr_configs() -> dict[str, Any]:
    return {
        "retry": pr.RetryConfig(
            max_attempts=3, retry_on=(ConnectionError,), delay=0.1, max_delay=10.0
        ),
        "circuit_breaker": pr.CircuitBreakerConfig(
            failure_threshold=5, recovery_timeout=30.0, success_threshold=1
        ),
    }


def _bt_policies() -> list[bt.Policy]:
    return [bt.Retry(attempts=3, on=ConnectionError), bt.CircuitBreaker(consecutive_failures=5)]


_BT_CONFIG = (
    "bt.pipeline(bt.Retry(attempts=3, on=ConnectionError), "
    "bt.CircuitBreaker(consecutive_failures=5){extra})"
)


def _retry_breaker() -> Suite:
    policy = bt.pipeline(*_bt_policies())
    guarded = policy(af)

    pr_guarded = pr.resilient(**_pr_configs())(af)

    tenacity_kw: dict[str, Any] = {
        "stop": tenacity.stop_after_attempt(3),
        "retry": tenacity.retry_if_exception_type(ConnectionError),
        "wait": tenacity.wait_random_exponential(multiplier=0.1, max=10),
        "reraise": True,
    }
    aretrying = tenacity.AsyncRetrying(**tenacity_kw)
    abreaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    abreaker_dec = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    ta_guarded = tenacity.retry(**tenacity_kw)(abreaker_dec(af))

    tenacity_config = (
        "stop=tenacity.stop_after_attempt(3), "
        "retry=tenacity.retry_if_exception_type(ConnectionError), "
        "wait=tenacity.wait_random_exponential(multiplier=0.1, max=10), reraise=True"
    )
    aiobreaker_config = (
        "aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))"
    )
    contenders = [
        Contender(
            "bt-call",
            "buttress `await policy.call(af)`",
            "buttress",
            "call",
            "await policy.call(af)",
            {"policy": policy, "af": af},
            config="policy = " + _BT_CONFIG.format(extra=""),
        ),
        Contender(
            "bt-dec",
            "buttress `@policy`",
            "buttress",
            "decorator",
            "await guarded()",
            {"guarded": guarded},
            config="guarded = policy(af)",
        ),
        Contender(
            "pyresilience-dec",
            "pyresilience `@resilient(retry=…, circuit_breaker=…)`",
            "pyresilience",
            "decorator",
            "await guarded()",
            {"guarded": pr_guarded},
            config=f"pr.resilient(retry={_PR_RETRY}, circuit_breaker={_PR_BREAKER})(af)",
        ),
        Contender(
            "ta-call",
            "tenacity `AsyncRetrying` + aiobreaker `call_async`",
            "tenacity+aiobreaker",
            "call",
            "await aretrying(abreaker.call_async, af)",
            {"aretrying": aretrying, "abreaker": abreaker, "af": af},
            config=f"aretrying = tenacity.AsyncRetrying({tenacity_config}); "
            f"abreaker = {aiobreaker_config}",
        ),
        Contender(
            "ta-dec",
            "tenacity `@retry` over aiobreaker `@breaker`",
            "tenacity+aiobreaker",
            "decorator",
            "await guarded()",
            {"guarded": ta_guarded},
            config=f"tenacity.retry({tenacity_config})({aiobreaker_config}(af))",
        ),
    ]
    return Suite(
        name="async-retry-breaker",
        title="Async retry + circuit breaker, happy path",
        kind="async",
        description=(
            "Overhead of one successful `await` of `af` through retry (outer) and breaker "
            "(inner), over a bare `await af()`."
        ),
        baseline=Contender("bare", "bare `await af()`", "-", "-", "await af()", {"af": af}),
        contenders=contenders,
        columns=[
            RatioColumn("vs pyresilience", {}, "pyresilience-dec"),
            RatioColumn(
                "vs tenacity+aiobreaker", {"call": "ta-call", "decorator": "ta-dec"}, "ta-call"
            ),
        ],
        targets=[
            Target(
                "buttress retry+breaker ≤ 0.35 of pyresilience's overhead, decorator form",
                "bt-dec",
                0.35,
                ref="pyresilience-dec",
            ),
            Target(
                "buttress retry+breaker ≤ 0.35 of pyresilience's overhead, call form "
                "(vs its decorator)",
                "bt-call",
                0.35,
                ref="pyresilience-dec",
            ),
        ],
        notes=[
            "pyresilience applies its breaker to every attempt inside its retry loop, the "
            "same order as `bt.pipeline(retry, breaker)`.",
        ],
        order=30,
    )


def _timeout_pipeline() -> Suite:
    policy = bt.pipeline(*_bt_policies(), bt.Timeout(10))
    guarded = policy(af)
    timeout_only = bt.Timeout(10)

    pr_guarded = pr.resilient(**_pr_configs(), timeout=pr.TimeoutConfig(seconds=10.0))(af)

    contenders = [
        Contender(
            "bt-call",
            "buttress `await policy.call(af)` (timeout + retry + breaker)",
            "buttress",
            "call",
            "await policy.call(af)",
            {"policy": policy, "af": af},
            config="policy = " + _BT_CONFIG.format(extra=", bt.Timeout(10)"),
        ),
        Contender(
            "bt-dec",
            "buttress `@policy` (timeout + retry + breaker)",
            "buttress",
            "decorator",
            "await guarded()",
            {"guarded": guarded},
            config="guarded = policy(af)",
        ),
        Contender(
            "bt-timeout",
            "buttress `bt.Timeout(10)` alone, `await timeout.call(af)`",
            "buttress",
            "call",
            "await timeout.call(af)",
            {"timeout": timeout_only, "af": af},
            config="timeout = bt.Timeout(10)",
        ),
        Contender(
            "asyncio-timeout",
            "`async with asyncio.timeout(10)` alone",
            "asyncio",
            "context",
            "async with timeout(10):\n    await af()",
            {"timeout": asyncio.timeout, "af": af},
            config="async with asyncio.timeout(10): await af()",
            note="asyncio.timeout cancels a loop timer per call; inside one sample the loop "
            "never turns, so the cancelled handles are cleaned up after the timed region "
            "(slightly in asyncio's favour).",
        ),
        Contender(
            "wait-for",
            "`asyncio.wait_for(af(), 10)` alone",
            "asyncio",
            "call",
            "await wait_for(af(), 10)",
            {"wait_for": asyncio.wait_for, "af": af},
            config="await asyncio.wait_for(af(), 10)  # 3.11: runs af in a new task",
        ),
        Contender(
            "pyresilience-dec",
            "pyresilience `@resilient(retry=…, circuit_breaker=…, timeout=…)`",
            "pyresilience",
            "decorator",
            "await guarded()",
            {"guarded": pr_guarded},
            config=f"pr.resilient(retry={_PR_RETRY}, circuit_breaker={_PR_BREAKER}, "
            "timeout=pr.TimeoutConfig(seconds=10.0))(af)  # per attempt, asyncio.wait_for",
        ),
    ]
    return Suite(
        name="async-pipeline",
        title="Async pipeline: timeout + retry + breaker, happy path",
        kind="async",
        description=(
            "Overhead of one successful `await` of `af` through retry, breaker and a 10 s "
            "per-attempt timeout (innermost), over a bare `await af()`; with the timeouts "
            "alone beside it."
        ),
        baseline=Contender("bare", "bare `await af()`", "-", "-", "await af()", {"af": af}),
        contenders=contenders,
        columns=[
            RatioColumn("vs asyncio.timeout", {}, "asyncio-timeout"),
            RatioColumn("vs pyresilience", {}, "pyresilience-dec"),
        ],
        targets=[
            Target("buttress timeout+retry+breaker ≤ 3 µs, call form", "bt-call", 3000.0),
            Target("buttress timeout+retry+breaker ≤ 3 µs, decorator form", "bt-dec", 3000.0),
        ],
        order=40,
    )


def suites() -> list[Suite]:
    return [_retry_breaker(), _timeout_pipeline()]
