"""Sync retries: the happy path (no failure), and a call that succeeds on its third attempt.

Every retrier makes at most 3 attempts, retries only ``ConnectionError``, re-raises the
original exception when it gives up, and has no limit on the total time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, SupportsIndex

import backoff
import pyresilience as pr
import stamina
import stamina.instrumentation
import tenacity

import buttress as bt
from _harness import Contender, RatioColumn, Suite, Target
from _targets import f, make_flaky
from buttress.testing import FakeClock

_TENACITY_COLUMN = RatioColumn(
    "vs tenacity", {"call": "tenacity-call", "decorator": "tenacity-dec"}, "tenacity-call"
)
_STAMINA_COLUMN = RatioColumn(
    "vs stamina", {"call": "stamina-call", "decorator": "stamina-dec"}, "stamina-call"
)
_BACKOFF_COLUMN = RatioColumn("vs backoff", {}, "backoff-dec")


def _happy_path() -> Suite:
    bt_retry = bt.Retry(attempts=3, on=ConnectionError)
    bt_guarded = bt_retry(f)

    tenacity_kw: dict[str, Any] = {
        "stop": tenacity.stop_after_attempt(3),
        "retry": tenacity.retry_if_exception_type(ConnectionError),
        "wait": tenacity.wait_random_exponential(multiplier=0.1, max=10),
        "reraise": True,
    }
    retrying = tenacity.Retrying(**tenacity_kw)
    tenacity_guarded = tenacity.retry(**tenacity_kw)(f)

    stamina_caller = stamina.RetryingCaller(attempts=3, timeout=None).on(ConnectionError)
    stamina_guarded = stamina.retry(on=ConnectionError, attempts=3, timeout=None)(f)

    backoff_guarded = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(f)

    pr_guarded = pr.resilient(
        retry=pr.RetryConfig(max_attempts=3, retry_on=(ConnectionError,), delay=0.1)
    )(f)

    tenacity_config = (
        "stop=tenacity.stop_after_attempt(3), "
        "retry=tenacity.retry_if_exception_type(ConnectionError), "
        "wait=tenacity.wait_random_exponential(multiplier=0.1, max=10), reraise=True"
    )
    contenders = [
        Contender(
            "bt-call",
            "buttress `retry.call_sync(f)`",
            "buttress",
            "call",
            "retry.call_sync(f)",
            {"retry": bt_retry, "f": f},
            config="retry = bt.Retry(attempts=3, on=ConnectionError)  # default backoff: "
            "exponential(base=0.1, cap=10, jitter='full')",
        ),
        Contender(
            "bt-dec",
            "buttress `@retry`",
            "buttress",
            "decorator",
            "guarded()",
            {"guarded": bt_guarded},
            config="guarded = retry(f)",
        ),
        Contender(
            "tenacity-call",
            "tenacity `Retrying(...)(f)`",
            "tenacity",
            "call",
            "retrying(f)",
            {"retrying": retrying, "f": f},
            config=f"retrying = tenacity.Retrying({tenacity_config})",
        ),
        Contender(
            "tenacity-dec",
            "tenacity `@retry(...)`",
            "tenacity",
            "decorator",
            "guarded()",
            {"guarded": tenacity_guarded},
            config=f"guarded = tenacity.retry({tenacity_config})(f)",
        ),
        Contender(
            "stamina-call",
            "stamina `RetryingCaller(...).on(...)(f)`",
            "stamina",
            "call",
            "caller(f)",
            {"caller": stamina_caller, "f": f},
            config="caller = stamina.RetryingCaller(attempts=3, timeout=None).on(ConnectionError)",
        ),
        Contender(
            "stamina-dec",
            "stamina `@stamina.retry(...)`",
            "stamina",
            "decorator",
            "guarded()",
            {"guarded": stamina_guarded},
            config="guarded = stamina.retry(on=ConnectionError, attempts=3, timeout=None)(f)",
        ),
        Contender(
            "backoff-dec",
            "backoff `@on_exception(expo, ...)`",
            "backoff",
            "decorator",
            "guarded()",
            {"guarded": backoff_guarded},
            config="guarded = backoff.on_exception(backoff.expo, ConnectionError, max_tries=3)(f)",
        ),
        Contender(
            "pyresilience-dec",
            "pyresilience `@resilient(retry=…)`",
            "pyresilience",
            "decorator",
            "guarded()",
            {"guarded": pr_guarded},
            config="guarded = pr.resilient(retry=pr.RetryConfig(max_attempts=3, "
            "retry_on=(ConnectionError,), delay=0.1))(f)",
        ),
    ]
    return Suite(
        name="retry",
        title="Sync retry, happy path (the first attempt succeeds)",
        kind="sync",
        description="Overhead of one successful call of `f` through a retry policy.",
        baseline=Contender("bare", "bare `f()`", "-", "-", "f()", {"f": f}),
        contenders=contenders,
        columns=[_TENACITY_COLUMN, _STAMINA_COLUMN, _BACKOFF_COLUMN],
        targets=[
            Target(
                "buttress retry ≤ 0.03 of tenacity's overhead, call form",
                "bt-call",
                0.03,
                ref="tenacity-call",
            ),
            Target(
                "buttress retry ≤ 0.03 of tenacity's overhead, decorator form",
                "bt-dec",
                0.03,
                ref="tenacity-dec",
            ),
            Target("a sync Retry call adds ≤ 0.3 µs", "bt-call", 300.0, source="DESIGN.md §6"),
        ],
        notes=[
            "stamina's default `timeout=45` (a limit on the whole call) is turned off "
            "(`timeout=None`) so that no contender has a total-time limit.",
        ],
        order=20,
    )


# -- the retry path --------------------------------------------------------------------------


def _instant_sleep(seconds: float | SupportsIndex) -> None:
    """Stands in for ``time.sleep`` during the retry-path suite: zero waits take no time."""


class _InstantClock:
    """A minimal :class:`buttress.Clock` whose sleeps return at once and do nothing else.

    The same treatment the peers get from the patched ``time.sleep``; FakeClock, by
    contrast, moves virtual time and checks its timers on every sleep.
    """

    monotonic = staticmethod(time.monotonic)

    def sleep_sync(self, seconds: float) -> None:
        pass

    async def sleep(self, seconds: float) -> None:
        pass

    def call_later(self, delay: float, callback: Any) -> Any:
        return asyncio.get_running_loop().call_later(delay, callback)


class _Patch:
    """Make the peers' zero waits instant and mute stamina's per-retry log line."""

    def __init__(self) -> None:
        self.sleep = time.sleep

    def setup(self) -> None:
        time.sleep = _instant_sleep
        stamina.instrumentation.set_on_retry_hooks([])

    def teardown(self) -> None:
        time.sleep = self.sleep
        stamina.instrumentation.set_on_retry_hooks(None)


def _expect_success(call: Any, flaky: Any) -> None:
    """Check that ``call()`` returns 1 after exactly 3 attempts (and stays in phase)."""
    before = flaky.state[0]
    result = call()
    assert result == 1, f"expected 1, got {result!r}"
    attempts = flaky.state[0] - before
    assert attempts == 3, f"expected 3 attempts, made {attempts}"
    assert flaky.state[0] % 3 == 0


def _retry_path() -> Suite:
    patch = _Patch()

    base_flaky = make_flaky()
    # The irreducible cost: three attempts and two caught exceptions, by hand.
    baseline = Contender(
        "bare",
        "hand-written 3-attempt loop",
        "-",
        "-",
        """
        for _a in attempts:
            try:
                flaky()
                break
            except ConnectionError:
                pass
        """,
        {"flaky": base_flaky, "attempts": range(3)},
    )

    contenders: list[Contender] = []

    def add(
        key: str, label: str, lib: str, form: str, config: str, build: Any, note: str = ""
    ) -> None:
        """``build(flaky) -> (stmt, ns, call)``: a contender around its own flaky callee."""
        flaky = make_flaky()
        stmt, ns, call = build(flaky)
        contenders.append(
            Contender(
                key,
                label,
                lib,
                form,
                stmt,
                ns,
                config=config,
                check=lambda: _expect_success(call, flaky),
                note=note,
            )
        )

    def bt_call(flaky: Any) -> Any:
        retry = bt.Retry(
            attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0), clock=FakeClock()
        )
        return (
            "retry.call_sync(flaky)",
            {"retry": retry, "flaky": flaky},
            lambda: retry.call_sync(flaky),
        )

    def bt_dec(flaky: Any) -> Any:
        retry = bt.Retry(
            attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0), clock=FakeClock()
        )
        guarded = retry(flaky)
        return "guarded()", {"guarded": guarded}, guarded

    def bt_instant(flaky: Any) -> Any:
        retry = bt.Retry(
            attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0), clock=_InstantClock()
        )
        return (
            "retry.call_sync(flaky)",
            {"retry": retry, "flaky": flaky},
            lambda: retry.call_sync(flaky),
        )

    def bt_system(flaky: Any) -> Any:
        retry = bt.Retry(attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0))
        return (
            "retry.call_sync(flaky)",
            {"retry": retry, "flaky": flaky},
            lambda: retry.call_sync(flaky),
        )

    tenacity_kw: dict[str, Any] = {
        "stop": tenacity.stop_after_attempt(3),
        "retry": tenacity.retry_if_exception_type(ConnectionError),
        "wait": tenacity.wait_none(),
        "reraise": True,
    }

    def tenacity_call(flaky: Any) -> Any:
        retrying = tenacity.Retrying(**tenacity_kw)
        return "retrying(flaky)", {"retrying": retrying, "flaky": flaky}, lambda: retrying(flaky)

    def tenacity_dec(flaky: Any) -> Any:
        guarded = tenacity.retry(**tenacity_kw)(flaky)
        return "guarded()", {"guarded": guarded}, guarded

    stamina_kw: dict[str, Any] = {
        "attempts": 3,
        "timeout": None,
        "wait_initial": 0,
        "wait_max": 0,
        "wait_jitter": 0,
    }

    def stamina_call(flaky: Any) -> Any:
        caller = stamina.RetryingCaller(**stamina_kw).on(ConnectionError)
        return "caller(flaky)", {"caller": caller, "flaky": flaky}, lambda: caller(flaky)

    def stamina_dec(flaky: Any) -> Any:
        guarded = stamina.retry(on=ConnectionError, **stamina_kw)(flaky)
        return "guarded()", {"guarded": guarded}, guarded

    def backoff_dec(flaky: Any) -> Any:
        guarded = backoff.on_exception(
            backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
        )(flaky)
        return "guarded()", {"guarded": guarded}, guarded

    def pyresilience_dec(flaky: Any) -> Any:
        guarded = pr.resilient(
            retry=pr.RetryConfig(
                max_attempts=3, retry_on=(ConnectionError,), delay=0.0, jitter=False
            )
        )(flaky)
        return "guarded()", {"guarded": guarded}, guarded

    fake = "backoff=bt.Backoff.constant(0.0), clock=FakeClock()"
    add(
        "bt-call",
        "buttress `retry.call_sync(flaky)`, FakeClock",
        "buttress",
        "call",
        f"retry = bt.Retry(attempts=3, on=ConnectionError, {fake})",
        bt_call,
    )
    add(
        "bt-dec",
        "buttress `@retry`, FakeClock",
        "buttress",
        "decorator",
        f"guarded = bt.Retry(attempts=3, on=ConnectionError, {fake})(flaky)",
        bt_dec,
    )
    add(
        "tenacity-call",
        "tenacity `Retrying(...)(flaky)`",
        "tenacity",
        "call",
        "tenacity.Retrying(stop=tenacity.stop_after_attempt(3), "
        "retry=tenacity.retry_if_exception_type(ConnectionError), "
        "wait=tenacity.wait_none(), reraise=True)",
        tenacity_call,
    )
    add(
        "tenacity-dec",
        "tenacity `@retry(...)`",
        "tenacity",
        "decorator",
        "tenacity.retry(<same arguments>)(flaky)",
        tenacity_dec,
    )
    add(
        "stamina-call",
        "stamina `RetryingCaller(...).on(...)(flaky)`",
        "stamina",
        "call",
        "stamina.RetryingCaller(attempts=3, timeout=None, wait_initial=0, wait_max=0, "
        "wait_jitter=0).on(ConnectionError)",
        stamina_call,
    )
    add(
        "stamina-dec",
        "stamina `@stamina.retry(...)`",
        "stamina",
        "decorator",
        "stamina.retry(on=ConnectionError, attempts=3, timeout=None, wait_initial=0, "
        "wait_max=0, wait_jitter=0)(flaky)",
        stamina_dec,
    )
    add(
        "backoff-dec",
        "backoff `@on_exception(constant, interval=0)`",
        "backoff",
        "decorator",
        "backoff.on_exception(backoff.constant, ConnectionError, max_tries=3, interval=0, "
        "jitter=None)(flaky)",
        backoff_dec,
    )
    add(
        "pyresilience-dec",
        "pyresilience `@resilient(retry=…)`, delay 0",
        "pyresilience",
        "decorator",
        "pr.resilient(retry=pr.RetryConfig(max_attempts=3, retry_on=(ConnectionError,), "
        "delay=0.0, jitter=False))(flaky)",
        pyresilience_dec,
    )
    add(
        "bt-instant-call",
        "buttress `retry.call_sync(flaky)`, no-op-sleep Clock",
        "buttress",
        "call",
        "bt.Retry(attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0), "
        "clock=InstantClock())  # a 10-line Clock whose sleep_sync does nothing",
        bt_instant,
        note="The like-for-like row: its sleeps cost nothing, as the peers' patched "
        "`time.sleep` does. FakeClock's `sleep_sync(0.0)` costs about 1 µs by itself "
        "(it validates the duration, takes a lock and checks its timer heap), twice per "
        "logical call.",
    )
    add(
        "bt-system-call",
        "(info) buttress, SystemClock: two real `time.sleep(0.0)`",
        "buttress",
        "call",
        "bt.Retry(attempts=3, on=ConnectionError, backoff=bt.Backoff.constant(0.0))  "
        "# default clock",
        bt_system,
        note="Not comparable with the rows above: buttress's SystemClock calls the real "
        "`time.sleep(0.0)` (bound at import, so the suite's patch does not reach it), which "
        "is a syscall that costs tens of µs on this VM. Shown to price a zero backoff on "
        "the real clock.",
    )

    return Suite(
        name="retry-path",
        title="Retry path (fails twice with ConnectionError, succeeds on the 3rd attempt)",
        kind="sync",
        description=(
            "Cost of one logical call (3 attempts, 2 retries, zero wait) over a hand-written "
            "`for`/`try`/`except` loop making the same 3 attempts. Sleeping is taken out of "
            "the measurement: buttress sleeps through `FakeClock`; for the peers, whose "
            "sleep cannot all be injected, `time.sleep` is replaced by a no-op for the "
            "suite (tenacity, stamina and backoff all call `time.sleep(0)` for a zero wait; "
            "pyresilience skips a zero sleep)."
        ),
        baseline=baseline,
        contenders=contenders,
        columns=[
            _TENACITY_COLUMN,
            _STAMINA_COLUMN,
            _BACKOFF_COLUMN,
            RatioColumn("vs pyresilience", {}, "pyresilience-dec"),
        ],
        notes=[
            "stamina's retry instrumentation (by default a WARNING log line per retry, "
            "printed to stderr when logging is not configured) is switched off with "
            "`stamina.instrumentation.set_on_retry_hooks([])` for the suite: buttress has "
            "no listener here and logs retries at DEBUG, behind an `isEnabledFor` check.",
        ],
        setup=patch.setup,
        teardown=patch.teardown,
        order=60,
    )


def suites() -> list[Suite]:
    return [_happy_path(), _retry_path()]
