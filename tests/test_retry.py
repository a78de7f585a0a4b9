"""Retry: backoff, filters, server hints, total/deadline limits, budget, events."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from typing import Any

import pytest

import buttress as bt
from buttress import events
from buttress.testing import FakeClock

from .conftest import Recorder


class Flaky:
    """Fails with the given exceptions in turn, then returns `value`."""

    def __init__(self, *failures: BaseException, value: object = "ok") -> None:
        self.failures = list(failures)
        self.value = value
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.failures:
            exc = self.failures.pop(0)
            self.raised.append(exc)
            raise exc
        return self.value

    async def acall(self, *args: object, **kwargs: object) -> object:
        await asyncio.sleep(0)
        return self(*args, **kwargs)


def retry(clock: FakeClock, **kwargs: Any) -> bt.Retry:
    kwargs.setdefault("on", ConnectionError)
    kwargs.setdefault("backoff", bt.Backoff.constant(1.0))
    return bt.Retry(clock=clock, **kwargs)


async def test_retries_until_success(clock: FakeClock) -> None:
    """Two failures then success: three calls, two backoff sleeps."""
    fn = Flaky(ConnectionError(), ConnectionError())
    assert await retry(clock, attempts=3).call(fn.acall) == "ok"
    assert fn.calls == 3
    assert clock.monotonic() == 2.0


def test_retries_until_success_sync(clock: FakeClock) -> None:
    """The sync runner behaves the same and sleeps on the same clock."""
    fn = Flaky(ConnectionError(), ConnectionError())
    assert retry(clock, attempts=3).call_sync(fn) == "ok"
    assert fn.calls == 3
    assert clock.monotonic() == 2.0


async def test_gives_up_with_the_last_original_exception(clock: FakeClock) -> None:
    """After the last attempt the last exception itself is raised, unwrapped."""
    fn = Flaky(ConnectionError("1"), ConnectionError("2"), ConnectionError("3"))
    with pytest.raises(ConnectionError) as info:
        await retry(clock, attempts=3).call(fn.acall)
    assert info.value is fn.raised[-1]
    assert fn.calls == 3


def test_gives_up_with_the_last_original_exception_sync(clock: FakeClock) -> None:
    """Sync: the same original exception object reaches the caller."""
    fn = Flaky(ConnectionError("1"), ConnectionError("2"))
    with pytest.raises(ConnectionError) as info:
        retry(clock, attempts=2).call_sync(fn)
    assert info.value is fn.raised[-1]


async def test_attempts_one_means_no_retry(clock: FakeClock) -> None:
    """attempts=1 calls once."""
    fn = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        await retry(clock, attempts=1).call(fn.acall)
    assert fn.calls == 1


async def test_unmatched_exceptions_are_not_retried(clock: FakeClock) -> None:
    """An exception outside `on` goes straight through."""
    fn = Flaky(ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        await retry(clock).call(fn.acall)
    assert fn.calls == 1


async def test_predicate_filter(clock: FakeClock) -> None:
    """`on` may be a predicate over the exception."""
    policy = retry(clock, on=lambda exc: isinstance(exc, OSError) and exc.errno == 111)
    fn = Flaky(OSError(111, "refused"), value="up")
    assert await policy.call(fn.acall) == "up"
    other = Flaky(OSError(2, "no such file"))
    with pytest.raises(OSError):
        await policy.call(other.acall)
    assert other.calls == 1


async def test_a_failing_predicate_does_not_retry(clock: FakeClock) -> None:
    """A predicate that raises is treated as 'do not retry' (and logged)."""

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("oops")

    fn = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        await retry(clock, on=broken).call(fn.acall)
    assert fn.calls == 1


@pytest.mark.parametrize(
    "exc",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), bt.DeadlineExceededError("x")],
)
def test_never_retried(clock: FakeClock, exc: BaseException) -> None:
    """Cancellation, interpreter exits and a spent deadline are never retried."""
    fn = Flaky(exc)
    with pytest.raises(type(exc)):
        retry(clock, on=BaseException).call_sync(fn)
    assert fn.calls == 1


async def test_result_predicate_retries_and_returns_last_result(clock: FakeClock) -> None:
    """on_result retries bad results and, when it gives up, returns the last one."""
    results = iter([503, 503, 503])
    policy = retry(clock, attempts=3, on_result=lambda r: r >= 500)

    async def status() -> int:
        return next(results)

    assert await policy.call(status) == 503
    good = iter([503, 200])
    assert await policy.call(lambda: _value(next(good))) == 200


async def _value(v: object) -> object:
    return v


async def test_exception_retry_after_hint_is_honoured(clock: FakeClock) -> None:
    """An exception's retry_after makes the wait max(backoff, hint)."""

    class Busy(ConnectionError):
        retry_after = 5.0

    fn = Flaky(Busy())
    await retry(clock, backoff=bt.Backoff.constant(1.0)).call(fn.acall)
    assert clock.monotonic() == 5.0


async def test_rejection_retry_after_is_a_hint(clock: FakeClock) -> None:
    """A RejectedError's retry_after (e.g. from an inner breaker) is a hint too."""
    fn = Flaky(bt.CircuitOpenError("open", retry_after=timedelta(seconds=3)))  # type: ignore[arg-type]
    await retry(clock, on=bt.RejectedError, backoff=0.5).call(fn.acall)
    assert clock.monotonic() == 3.0


async def test_hint_longer_than_max_gives_up(clock: FakeClock, recorder: Recorder) -> None:
    """A hint beyond max_retry_after ends the retries at once."""

    class Busy(ConnectionError):
        retry_after = 120.0

    fn = Flaky(Busy())
    with pytest.raises(Busy):
        await retry(clock, max_retry_after=60).call(fn.acall)
    assert fn.calls == 1
    assert clock.monotonic() == 0.0
    (gave_up,) = recorder.of(events.RetryGaveUp)
    assert gave_up.reason == "retry_after"  # type: ignore[attr-defined]


async def test_result_hint(clock: FakeClock) -> None:
    """A result object with retry_after also sets the wait."""

    class Response:
        def __init__(self, status: int, retry_after: float | None = None) -> None:
            self.status = status
            self.retry_after = retry_after

    answers = iter([Response(429, 2.0), Response(200)])
    policy = retry(clock, on_result=lambda r: r.status == 429, backoff=0.1)
    result = await policy.call(lambda: _value(next(answers)))
    assert result.status == 200  # type: ignore[attr-defined]
    assert clock.monotonic() == 2.0


async def test_total_limit(clock: FakeClock, recorder: Recorder) -> None:
    """`total` stops retrying when the next wait would pass it."""
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    with pytest.raises(ConnectionError):
        await retry(clock, attempts=10, total=2.5, backoff=1.0).call(fn.acall)
    assert fn.calls == 3  # t=0, t=1, t=2; a third wait would end at 3 > 2.5
    assert recorder.of(events.RetryGaveUp)[-1].reason == "total"  # type: ignore[attr-defined]


async def test_deadline_stops_retries_before_sleeping_past_it(
    clock: FakeClock, recorder: Recorder
) -> None:
    """A retry never sleeps past the deadline: it gives up when the wait does not fit."""
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    with bt.deadline(2.5, clock=clock), pytest.raises(ConnectionError):
        await retry(clock, attempts=10, backoff=1.0).call(fn.acall)
    assert clock.monotonic() == 2.0
    assert fn.calls == 3
    assert recorder.of(events.RetryGaveUp)[-1].reason == "deadline"  # type: ignore[attr-defined]


async def test_budget_caps_retries(clock: FakeClock, recorder: Recorder) -> None:
    """An empty budget ends retries; the failure goes to the caller."""
    budget = bt.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10, clock=clock)  # one retry
    policy = retry(clock, attempts=5, budget=budget, backoff=0)
    fn = Flaky(*[ConnectionError() for _ in range(10)])
    with pytest.raises(ConnectionError):
        await policy.call(fn.acall)
    assert fn.calls == 2
    assert recorder.of(events.RetryGaveUp)[-1].reason == "budget"  # type: ignore[attr-defined]


async def test_budget_shared_by_policies(clock: FakeClock) -> None:
    """Two policies drawing on one budget share its limit."""
    budget = bt.RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10, clock=clock)  # two retries
    a = retry(clock, attempts=5, budget=budget, backoff=0)
    b = retry(clock, attempts=5, budget=budget, backoff=0)
    fa = Flaky(*[ConnectionError() for _ in range(10)])
    fb = Flaky(*[ConnectionError() for _ in range(10)])
    for policy, fn in ((a, fa), (b, fb)):
        with pytest.raises(ConnectionError):
            await policy.call(fn.acall)
    assert fa.calls + fb.calls == 2 + 2  # each first call, plus two retries in total


async def test_budget_counts_retry_when_scheduled(clock: FakeClock) -> None:
    """A retry cancelled during its backoff still spent its token."""
    budget = bt.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10, clock=clock)
    policy = retry(clock, attempts=3, budget=budget, backoff=100)
    fn = Flaky(ConnectionError(), ConnectionError())
    task = asyncio.create_task(policy.call(fn.acall))
    while fn.calls < 1:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.stats().withdrawals == 1
    assert not budget.try_withdraw()


async def test_requests_deposit_once_per_call(clock: FakeClock) -> None:
    """Each logical call deposits once, however many attempts it makes."""
    budget = bt.RetryBudget(ratio=1.0, min_per_second=0, clock=clock)
    policy = retry(clock, attempts=3, budget=budget, backoff=0)
    await policy.call(Flaky(ConnectionError()).acall)
    stats = budget.stats()
    assert (stats.deposits, stats.withdrawals) == (1, 1)


async def test_cancellation_during_backoff_propagates(clock: FakeClock) -> None:
    """Cancelling while the retry sleeps cancels the call; nothing more is attempted."""
    policy = retry(clock, attempts=5, backoff=10)
    fn = Flaky(*[ConnectionError() for _ in range(5)])
    clock_manual = clock
    task = asyncio.create_task(policy.call(fn.acall))
    while fn.calls < 1:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fn.calls == 1
    assert clock_manual.monotonic() < 10


async def test_concurrent_calls_keep_their_own_attempt_counts(clock: FakeClock) -> None:
    """Per-call state is per call: interleaved calls do not share counters."""
    policy = retry(clock, attempts=3, backoff=bt.Backoff.exponential(base=0.1, jitter="full"))
    fns = [Flaky(*[ConnectionError() for _ in range(i % 3)], value=i) for i in range(30)]
    results = await asyncio.gather(*(policy.call(f.acall) for f in fns))
    assert results == list(range(30))
    assert [f.calls for f in fns] == [1 + i % 3 for i in range(30)]


async def test_events_and_stats(clock: FakeClock, recorder: Recorder) -> None:
    """Each scheduled retry emits RetryScheduled; exhaustion emits RetryGaveUp."""
    policy = retry(clock, attempts=3, name="users")
    first, second, third = ConnectionError("1"), ConnectionError("2"), ConnectionError("3")
    with pytest.raises(ConnectionError):
        await policy.call(Flaky(first, second, third).acall)
    assert recorder.of(events.RetryScheduled) == [
        events.RetryScheduled("users", 1, 1.0, first),
        events.RetryScheduled("users", 2, 1.0, second),
    ]
    assert recorder.of(events.RetryGaveUp) == [events.RetryGaveUp("users", 3, "attempts", third)]
    assert policy.stats() == bt.RetryStats("users", calls=1, retries=2, gave_up=1)


async def test_debug_log_for_non_final_attempts(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Non-final attempts log at DEBUG on the 'buttress' logger."""
    caplog.set_level(logging.DEBUG, logger="buttress")
    await retry(clock, name="orders").call(Flaky(ConnectionError("reset")).acall)
    assert any(
        r.name == "buttress" and r.levelno == logging.DEBUG and "orders" in r.getMessage()
        for r in caplog.records
    )


def test_library_configures_no_logging() -> None:
    """buttress never sets its logger's level or adds handlers."""
    logger = logging.getLogger("buttress")
    assert logger.level == logging.NOTSET
    assert logger.handlers == []


async def test_seeded_random_reproduces_waits() -> None:
    """The same random seed gives the same jittered waits."""

    async def run(seed: int) -> float:
        clock = FakeClock()
        policy = bt.Retry(
            attempts=4,
            on=ConnectionError,
            backoff=bt.Backoff.exponential(base=1.0, jitter="full"),
            clock=clock,
            random=random.Random(seed),
        )
        await policy.call(Flaky(ConnectionError(), ConnectionError(), ConnectionError()).acall)
        return clock.monotonic()

    assert await run(42) == await run(42)
    assert await run(42) != await run(43)


def test_decorator_keeps_metadata(clock: FakeClock) -> None:
    """@retry keeps name, docstring and the wrapped function."""
    policy = retry(clock)

    @policy
    def fetch(url: str, *, timeout: float = 1.0) -> str:
        """Fetch a URL."""
        return url

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a URL."
    assert fetch.__wrapped__ is not None  # type: ignore[attr-defined]
    assert fetch("u", timeout=2) == "u"


async def test_decorator_on_async_function(clock: FakeClock) -> None:
    """@retry on async def stays a coroutine function."""
    import inspect

    fn = Flaky(ConnectionError())

    @retry(clock)
    async def op() -> object:
        return await fn.acall()

    assert inspect.iscoroutinefunction(op)
    assert await op() == "ok"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0, "on": OSError}, "attempts must be an int >= 1, got 0"),
        ({"attempts": 2.5, "on": OSError}, "attempts must be an int >= 1, got 2.5"),
        ({"on": "OSError"}, "on must be an exception class, a tuple of them, or a predicate"),
        ({"on": (OSError, int)}, "on must be an exception class or a tuple of exception classes"),
        ({"on": OSError, "on_result": 5}, "on_result must be a callable or None, got 5"),
        ({"on": OSError, "backoff": -1}, "backoff must be a duration >= 0 seconds, got -1"),
        ({"on": OSError, "budget": 0.2}, "budget must be a RetryBudget or None, got 0.2"),
        ({"on": OSError, "total": 0}, "total must be a duration > 0 seconds, got 0"),
        ({"on": OSError, "max_retry_after": -5}, "max_retry_after must be a duration >= 0"),
        ({"on": OSError, "random": 7}, "random must be a random.Random or None, got 7"),
        ({"on": OSError, "listeners": [1]}, "listeners must be an iterable of callables"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    """Each bad option names itself, its value and what is allowed."""
    with pytest.raises(bt.ConfigError) as info:
        bt.Retry(**kwargs)
    assert message in str(info.value)


def test_on_is_required() -> None:
    """There is no catch-all default for `on`."""
    with pytest.raises(TypeError, match="on"):
        bt.Retry()  # type: ignore[call-arg]
