"""A thread hammer for the sync runners: many threads, one pipeline, no corruption."""

from __future__ import annotations

import random
import threading

import buttress as bt

from .racing import run_racing


def test_hammer_pipeline_from_many_threads() -> None:
    """Shared retry + breaker + bulkhead under 8 threads: counts add up, nothing leaks."""
    breaker = bt.CircuitBreaker(failure_rate=0.9, window=bt.CountWindow(50), min_calls=50)
    retry = bt.Retry(attempts=3, on=ConnectionError, backoff=0)
    bulkhead = bt.Bulkhead(max_concurrent=4, max_queued=64)
    policy = bt.pipeline(retry, breaker, bulkhead)
    lock = threading.Lock()
    outcomes = {"ok": 0, "failed": 0, "rejected": 0}
    calls_made = 0

    def flaky(rng: random.Random) -> int:
        nonlocal calls_made
        with lock:
            calls_made += 1
        if rng.random() < 0.3:
            raise ConnectionError
        return 1

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            try:
                policy.call_sync(flaky, rng)
                key = "ok"
            except ConnectionError:
                key = "failed"
            except bt.RejectedError:
                key = "rejected"
            with lock:
                outcomes[key] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(outcomes.values()) == 8 * 400
    stats = breaker.stats()
    assert stats.calls == calls_made
    assert stats.successes + stats.failures == calls_made
    assert retry.stats().calls == 8 * 400
    assert bulkhead.stats().active == 0
    assert bulkhead.stats().queued == 0


def test_hammer_breaker_transitions_stay_consistent() -> None:
    """A breaker flapping under threads keeps a consistent state machine."""
    from buttress.testing import FakeClock

    clock = FakeClock()
    breaker = bt.CircuitBreaker(
        consecutive_failures=3, open_for=0.0, half_open_calls=2, clock=clock
    )
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)

        def maybe() -> None:
            if rng.random() < 0.5:
                raise ConnectionError

        for _ in range(2000):
            try:
                breaker.call_sync(maybe)
            except (ConnectionError, bt.CircuitOpenError):
                pass
            except BaseException as exc:  # pragma: no cover - the test fails with it
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = breaker.stats()
    assert stats.calls + stats.rejections == 8 * 2000
    assert 0 <= breaker._probes <= 2


def test_one_timeout_shared_by_loops_in_many_threads() -> None:
    """Loops running in different threads can share one Timeout (each uses its own queue)."""
    import asyncio

    policy = bt.Timeout(5.0)
    errors: list[BaseException] = []

    async def fast() -> int:
        return 1

    def worker() -> None:
        async def main() -> None:
            for _ in range(5_000):
                try:
                    await policy.call(fast)
                except BaseException as exc:  # pragma: no cover - the test fails with it
                    errors.append(exc)

        asyncio.run(main())

    run_racing(threading.Thread(target=worker) for _ in range(4))  # switch as often as possible
    assert errors == []
