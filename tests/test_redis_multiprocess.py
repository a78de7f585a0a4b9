"""Several processes share one limit through a real Redis: the global rate holds.

Four processes hammer one RateLimiter key through their own Redis connections for three
seconds. Counted over the steady middle of the run, the admitted rate across all of them
must be within 2 % of the configured rate. (This is a load test against a real server, so
it runs in real time; it asserts a rate, not how fast anything ran.)
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from .servers import RedisServer

RATE = 200.0  # per second
# A little burst absorbs arrival jitter: with burst 1, a request reaching Redis a fraction of
# a millisecond after its slot loses that time for good (GCRA's definition), and four
# processes plus Redis sharing two cores jitter by that much.
BURST = 5
PROCESSES = 4
DURATION = 3.0
EDGE = 0.3  # ignore the ragged start and end of the run


def _hammer(url: str, start_at: float, duration: float, results: Any) -> None:
    import redis

    import buttress as bt

    client = redis.Redis.from_url(url, socket_timeout=2)
    limiter = bt.RateLimiter(
        rate=RATE, per=1.0, burst=BURST, store=bt.RedisStore(client), name="mp"
    )
    admitted: list[float] = []
    calls = 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + duration
    while time.time() < end:
        calls += 1
        if limiter.try_acquire_sync("shared").allowed:
            admitted.append(time.time())
    client.close()
    results.put((admitted, calls))


@pytest.mark.slow
def test_processes_share_one_limit(redis_server: RedisServer) -> None:
    """The admitted rate summed over all processes stays within 2 % of the limit."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # time for every process to start and import
    workers = [
        context.Process(target=_hammer, args=(redis_server.url, start_at, DURATION, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    collected = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    admitted = sorted(t for times, _ in collected for t in times)
    calls = sum(c for _, c in collected)
    window_start, window_end = start_at + EDGE, start_at + DURATION - EDGE
    in_window = [t for t in admitted if window_start <= t < window_end]
    rate = len(in_window) / (window_end - window_start)
    assert calls > 5 * RATE * DURATION, "the processes did not offer enough load"
    assert abs(rate - RATE) / RATE <= 0.02, f"admitted {rate:.1f}/s for a limit of {RATE}/s"
    assert all(len(times) > 0 for times, _ in collected), "every process got a share"
