"""AdaptiveLimit: the three algorithms' update rules, admission, adaptation, bounds, events."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress import events
from buttress.adaptive import (
    AIMD,
    AdaptiveLimit,
    Gradient2,
    LimitAlgorithm,
    LimitState,
    Vegas,
    log10_limit,
)
from buttress.testing import FakeClock

from .conftest import Recorder


class FixedRandom(random.Random):
    """A Random whose random() always returns ``value`` (Vegas's probe jitter = 0.5 + v/2)."""

    def __init__(self, value: float = 0.0) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def start(algorithm: LimitAlgorithm, initial: int = 20, low: int = 1, high: int = 200) -> Any:
    return algorithm.start(
        initial_limit=initial, min_limit=low, max_limit=high, random=FixedRandom()
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- Gradient2 --------------------------------------------------------------------------------


def test_gradient2_defaults_grow_by_a_fifth_of_the_queue_size() -> None:
    """Steady latency: gradient 1, the limit moves a fifth of the way to L + 4."""
    state = start(Gradient2())
    assert state.update(0.1, 20, False, 0.0) == pytest.approx(20 * 0.8 + 24 * 0.2)  # 20.8
    # long = (0.1 + 0.3) / 2 = 0.2; 1.5 * 0.2 / 0.3 = 1.0: still no queueing
    assert state.update(0.3, 20, False, 0.0) == pytest.approx(20.8 * 0.8 + 24.8 * 0.2)  # 21.6


def test_gradient2_gradient_is_long_over_short_clamped_to_half() -> None:
    """Without smoothing or queue: L * clamp(tolerance * long / rtt, 0.5, 1)."""
    state = start(Gradient2(rtt_tolerance=1.0, smoothing=1.0, queue_size=0))
    assert state.update(0.1, 20, False, 0.0) == pytest.approx(20.0)
    # long = 0.2: 0.2 / 0.3 = 2/3
    assert state.update(0.3, 20, False, 0.0) == pytest.approx(20 * 2 / 3)
    # long = 1.4 / 3 = 0.467 < half of 1.0: the gradient is clamped to 0.5
    assert state.update(1.0, 20, False, 0.0) == pytest.approx(20 * 2 / 3 * 0.5)


def test_gradient2_tolerance_absorbs_moderate_latency_growth() -> None:
    """A latency up to rtt_tolerance times the long-term average does not shrink the limit."""
    state = start(Gradient2(rtt_tolerance=2.0, smoothing=1.0, queue_size=0))
    state.update(0.1, 20, False, 0.0)
    # long = 0.125; 2 * 0.125 / 0.15 = 1.67: clamped to 1
    assert state.update(0.15, 20, False, 0.0) == pytest.approx(20.0)


def test_gradient2_long_rtt_is_a_warm_up_mean_then_an_exponential_average() -> None:
    """The first 10 samples are averaged plainly; then each moves it 2 / (window + 1)."""
    state = start(Gradient2(long_window=3))
    for rtt in (1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0):
        state.update(rtt, 20, False, 0.0)
    assert state.long_rtt == pytest.approx(2.0)
    state.update(4.0, 20, False, 0.0)
    assert state.long_rtt == pytest.approx(3.0)  # factor 2 / (3 + 1) = 0.5


def test_gradient2_drift_pulls_the_long_rtt_down_after_load() -> None:
    """When long > 2 x the sample, the long-term average is cut by 5 % (from the next one)."""
    state = start(Gradient2(smoothing=1.0, queue_size=0))
    for _ in range(10):
        state.update(1.0, 20, False, 0.0)
    expected_long = 1.0 + (0.4 - 1.0) * 2 / 601
    # Judged on the average before the cut: 1.5 * 0.998 / 0.4 > 1, gradient 1.
    assert state.update(0.4, 20, False, 0.0) == pytest.approx(20.0)
    assert state.long_rtt == pytest.approx(expected_long * 0.95)


def test_gradient2_app_limited_keeps_the_limit() -> None:
    """With fewer than half the limit in flight the limit does not move."""
    state = start(Gradient2(smoothing=1.0, queue_size=0, rtt_tolerance=1.0))
    state.update(0.1, 20, False, 0.0)
    assert state.update(1.0, 9, False, 0.0) == 20.0
    assert state.long_rtt == pytest.approx(0.55)  # the sample still counts in the average


def test_gradient2_queue_size_function_gets_the_integer_limit() -> None:
    """queue_size may be a function of int(limit)."""
    seen: list[int] = []

    def queue(limit: int) -> float:
        seen.append(limit)
        return 0.0

    state = start(Gradient2(queue_size=queue, smoothing=1.0), initial=7)
    state.limit = 7.9
    state.update(0.1, 7, False, 0.0)
    assert seen == [7]


def test_gradient2_ignores_a_zero_rtt() -> None:
    """A sample the clock could not time changes nothing."""
    state = start(Gradient2())
    assert state.update(0.0, 20, False, 0.0) == 20.0
    assert state.long_rtt == 0.0


# -- Vegas ------------------------------------------------------------------------------------


def test_log10_limit_steps() -> None:
    """max(1, floor(log10(limit))): 1 below 100, 2 below 1000, 3 below 10000."""
    assert [log10_limit(n) for n in (1, 9, 99, 100, 999, 1000, 9999)] == [1, 1, 1, 2, 2, 3, 3]


def vegas(**kwargs: Any) -> Any:
    """A Vegas state that never probes (unless told) after learning rtt_noload = 0.1."""
    kwargs.setdefault("probe_multiplier", 1_000_000)
    state = start(Vegas(**kwargs))
    state.update(0.1, 20, False, 0.0)  # first sample: rtt_noload, no change
    assert state.rtt_noload == 0.1
    return state


def test_vegas_first_sample_and_lower_rtts_only_set_rtt_noload() -> None:
    """A new minimum latency becomes rtt_noload and leaves the limit alone."""
    state = vegas()
    assert state.update(0.05, 20, False, 0.0) == 20.0
    assert state.rtt_noload == 0.05


def test_vegas_no_queue_grows_by_beta() -> None:
    """queue = ceil(L (1 - noload/rtt)) = 0 <= threshold: L + beta (6 below 100)."""
    assert vegas().update(0.1, 20, False, 0.0) == 26.0


def test_vegas_small_queue_increases() -> None:
    """threshold < queue < alpha: increase(L) = L + 1."""
    state = vegas()
    # ceil(20 * (1 - 0.1 / 0.11)) = ceil(1.82) = 2: above 1, below 3
    assert state.update(0.11, 20, False, 0.0) == 21.0


def test_vegas_queue_in_the_sweet_spot_keeps_the_limit() -> None:
    """alpha <= queue <= beta: no change."""
    state = vegas()
    # ceil(20 * (1 - 0.1 / 0.125)) = ceil(4.0) = 4
    assert state.update(0.125, 20, False, 0.0) == 20.0


def test_vegas_large_queue_decreases() -> None:
    """queue > beta: decrease(L) = L - 1."""
    state = vegas()
    # ceil(20 * (1 - 0.1 / 0.2)) = 10 > 6
    assert state.update(0.2, 20, False, 0.0) == 19.0


def test_vegas_drop_decreases_whatever_the_latency() -> None:
    """A drop is a decrease, even at no-load latency."""
    assert vegas().update(0.1, 20, True, 0.0) == 19.0


def test_vegas_fast_drop_never_becomes_rtt_noload() -> None:
    """A drop only decreases: an instant refusal does not pass for the no-load latency."""
    state = vegas()
    assert state.update(0.001, 20, True, 0.0) == 19.0
    assert state.rtt_noload == 0.1
    assert state.probe_count == 1  # only the first, non-drop sample was counted


def test_vegas_app_limited_keeps_the_limit() -> None:
    """inflight * 2 < L: no change."""
    assert vegas().update(0.1, 9, False, 0.0) == 20.0


def test_vegas_steps_scale_with_log10_of_the_limit() -> None:
    """At L = 150 the thresholds double: alpha 6, beta 12, threshold 2, steps 2."""
    state = start(Vegas(probe_multiplier=1_000_000), initial=150, high=1000)
    state.update(0.1, 150, False, 0.0)
    # ceil(150 * (1 - 0.1 / 0.101)) = ceil(1.49) = 2 <= 2: L + 12
    assert state.update(0.101, 150, False, 0.0) == 162.0
    # ceil(162 * (1 - 0.1 / 0.2)) = 81 > 12: L - 2
    assert state.update(0.2, 150, False, 0.0) == 160.0


def test_vegas_smoothing_moves_part_of_the_way() -> None:
    """With smoothing 0.5 a +6 step becomes +3."""
    assert vegas(smoothing=0.5).update(0.1, 20, False, 0.0) == 23.0


def test_vegas_custom_functions() -> None:
    """alpha, beta, threshold may be numbers; increase and decrease any function."""
    state = vegas(threshold=0, alpha=5, beta=8, increase=lambda limit: limit * 2)
    # ceil(20 * (1 - 0.1 / 0.11)) = 2: above 0, below 5
    assert state.update(0.11, 20, False, 0.0) == 40.0


def test_vegas_probe_resets_rtt_noload() -> None:
    """Every probe_multiplier * L * jitter samples rtt_noload is reset to the sample."""
    state = start(Vegas(probe_multiplier=2), initial=4)  # jitter 0.5: a probe every 4 samples
    state.update(0.1, 4, False, 0.0)  # 1: rtt_noload = 0.1
    state.update(0.1, 4, False, 0.0)  # 2: no queue, L = 4 + 6 = 10 (now 10 samples apart)
    assert state.limit == 10.0
    for _ in range(7):  # 3..9
        state.update(0.1, 10, False, 0.0)
    assert state.rtt_noload == 0.1
    state.limit = 4.0  # so that sample 10 is due: 0.5 * 2 * 4 = 4 <= 10
    assert state.update(0.5, 4, False, 0.0) == 4.0
    assert (state.rtt_noload, state.probe_count) == (0.5, 0)


# -- AIMD -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "ratio", "expected"),
    [(20, 0.9, 18), (10, 0.9, 9), (5, 0.9, 4), (4, 0.9, 3), (2, 0.5, 1), (1, 0.5, 1)],
)
def test_aimd_drop_backs_off(limit: int, ratio: float, expected: int) -> None:
    """A drop: max(1, min(L - 1, floor(L * ratio))): always at least one less, never below 1."""
    state = start(AIMD(backoff_ratio=ratio), initial=limit)
    assert state.update(0.1, limit, True, 0.0) == expected


def test_aimd_slow_call_counts_as_a_drop() -> None:
    """A call slower than timeout is a drop."""
    state = start(AIMD(timeout=1.0), initial=10)
    assert state.update(1.5, 10, False, 0.0) == 9
    assert state.update(1.0, 9, False, 0.0) == 10  # exactly the timeout is fine


def test_aimd_increases_by_one_when_the_limit_is_in_use() -> None:
    """+1 when at least half the limit is in flight, else no change."""
    state = start(AIMD(), initial=10)
    assert state.update(0.1, 5, False, 0.0) == 11
    assert state.update(0.1, 5, False, 0.0) == 11  # 5 * 2 < 11: app-limited


def test_aimd_respects_the_bounds() -> None:
    """The limit never leaves [min_limit, max_limit]."""
    state = start(AIMD(backoff_ratio=0.5), initial=4, low=3, high=5)
    assert state.update(0.1, 4, True, 0.0) == 3
    for _ in range(5):
        state.update(0.1, 5, False, 0.0)
    assert state.limit == 5


@settings(max_examples=80, deadline=None)
@given(
    algorithm=st.sampled_from([Gradient2(), Vegas(probe_multiplier=1), AIMD(timeout=0.5)]),
    low=st.integers(1, 10),
    span=st.integers(0, 40),
    samples=st.lists(
        st.tuples(st.floats(0.0, 2.0), st.integers(0, 100), st.booleans()), max_size=60
    ),
)
def test_every_algorithm_stays_within_bounds(
    algorithm: LimitAlgorithm, low: int, span: int, samples: list[tuple[float, int, bool]]
) -> None:
    """Whatever the samples, an algorithm's limit stays in [min_limit, max_limit]."""
    high = low + span
    state = algorithm.start(
        initial_limit=low, min_limit=low, max_limit=high, random=random.Random(1)
    )
    for rtt, inflight, dropped in samples:
        limit = state.update(rtt, inflight, dropped, 0.0)
        assert low <= limit <= high
        assert math.isfinite(limit)


# -- the limiter ------------------------------------------------------------------------------


async def test_admits_up_to_the_limit_and_sheds_the_rest(clock: FakeClock) -> None:
    """With `limit` calls running, the next is rejected at once with OverloadedError."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=3, clock=clock, name="api")
    release = asyncio.Event()
    tasks = [asyncio.create_task(limiter.call(release.wait)) for _ in range(3)]
    await settle()
    assert limiter.inflight == 3
    ran = False

    async def spy() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(bt.OverloadedError) as info:
        await limiter.call(spy)
    assert not ran
    assert info.value.retry_after is None
    assert info.value.policy == "api"
    assert str(info.value) == "adaptive limit 'api' is at its limit of 3 calls in flight"
    assert isinstance(info.value, bt.RejectedError)
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.inflight == 0
    stats = limiter.stats()
    assert (stats.admitted, stats.rejections, stats.samples) == (3, 1, 3)


def test_sync_calls_share_the_limiter(clock: FakeClock) -> None:
    """call_sync admits, measures on the clock and releases like call."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=1, clock=clock)

    def work() -> str:
        assert limiter.inflight == 1
        with pytest.raises(bt.OverloadedError):
            limiter.call_sync(lambda: None)
        clock.advance(0.25)
        return "done"

    assert limiter.call_sync(work) == "done"
    stats = limiter.stats()
    assert (stats.inflight, stats.samples, stats.rejections) == (0, 1, 1)
    assert stats.last_rtt == pytest.approx(0.25)


async def test_latency_is_measured_on_the_injected_clock(clock: FakeClock) -> None:
    """The sample's rtt is virtual time from admission to completion."""
    limiter = AdaptiveLimit(clock=clock)
    await limiter.call(clock.sleep, 1.5)
    assert limiter.stats().last_rtt == pytest.approx(1.5)


async def test_cancellation_releases_the_slot_without_a_sample(clock: FakeClock) -> None:
    """A cancelled call frees its slot and feeds nothing to the algorithm."""
    limiter = AdaptiveLimit(initial_limit=1, clock=clock)
    task = asyncio.create_task(limiter.call(asyncio.Event().wait))
    await settle()
    assert limiter.inflight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = limiter.stats()
    assert (stats.inflight, stats.samples, stats.ignored) == (0, 0, 1)
    assert await limiter.call(asyncio.sleep, 0, "free") == "free"


async def test_drop_on_and_ignore_on(clock: FakeClock) -> None:
    """drop_on exceptions are drops, ignore_on ones no sample, others plain samples."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=10, ignore_on=KeyError, clock=clock)

    async def raise_(exc: BaseException) -> None:
        await clock.sleep(0.1)
        raise exc

    for exc in (bt.TimeoutError(), bt.OverloadedError(), ValueError(), KeyError()):
        with pytest.raises(type(exc)):
            await limiter.call(raise_, exc)
    stats = limiter.stats()
    assert (stats.samples, stats.drops, stats.ignored) == (3, 2, 1)
    assert limiter.limit == 8  # 10 -> 9 -> 8 on the two drops; ValueError: app-limited


async def test_deadline_exceeded_is_a_drop(clock: FakeClock) -> None:
    """bt.DeadlineExceededError is a bt.TimeoutError, so a drop by default."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=10, clock=clock)

    async def late() -> None:
        raise bt.DeadlineExceededError("spent")

    with pytest.raises(bt.DeadlineExceededError):
        await limiter.call(late)
    assert limiter.stats().drops == 1


async def test_inflight_of_a_sample_counts_the_call_itself(clock: FakeClock) -> None:
    """The algorithm sees the calls in flight at admission, this one included."""
    seen: list[int] = []

    class Spy:
        def start(self, **kwargs: Any) -> Any:
            return SpyState()

    class SpyState:
        limit = 10.0

        def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
            seen.append(inflight)
            return self.limit

    limiter = AdaptiveLimit(algorithm=Spy(), initial_limit=10, clock=clock)  # type: ignore[arg-type]
    await asyncio.gather(*(limiter.call(clock.sleep, 1) for _ in range(3)))
    assert sorted(seen) == [1, 2, 3]


async def test_a_failing_custom_algorithm_keeps_the_limit(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An algorithm that raises is logged; the call's own result is unaffected."""

    class Broken:
        def start(self, **kwargs: Any) -> Any:
            return BrokenState()

    class BrokenState:
        limit = 5.0

        def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
            raise ZeroDivisionError

    limiter = AdaptiveLimit(algorithm=Broken(), initial_limit=5, clock=clock)  # type: ignore[arg-type]
    assert await limiter.call(asyncio.sleep, 0, "ok") == "ok"
    assert limiter.limit == 5
    assert "failed" in caplog.text
    assert "ZeroDivisionError" in caplog.text


async def test_a_non_finite_limit_is_refused(clock: FakeClock) -> None:
    """An algorithm returning NaN leaves the limit where it was."""

    class NaN:
        def start(self, **kwargs: Any) -> Any:
            return NaNState()

    class NaNState:
        limit = 5.0

        def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
            return math.nan

    limiter = AdaptiveLimit(algorithm=NaN(), initial_limit=5, clock=clock)  # type: ignore[arg-type]
    assert await limiter.call(asyncio.sleep, 0, "ok") == "ok"
    assert (limiter.limit, limiter.stats().estimate) == (5, 5.0)


class Backend:
    """A backend with `workers` servers and an unbounded queue, in virtual time."""

    def __init__(self, clock: FakeClock, workers: int, service: float) -> None:
        self.clock = clock
        self.slots = asyncio.Semaphore(workers)
        self.service = service
        self.latencies: list[float] = []

    async def __call__(self) -> None:
        started = self.clock.monotonic()
        async with self.slots:
            await self.clock.sleep(self.service)
        self.latencies.append(self.clock.monotonic() - started)


async def offer(
    limiter: AdaptiveLimit,
    clock: FakeClock,
    work: Callable[[], Any],
    *,
    clients: int,
    seconds: float,
) -> list[int]:
    """`clients` closed-loop callers for `seconds`; a shed caller waits 10 ms. The limits seen."""
    limits: list[int] = []
    until = clock.monotonic() + seconds

    async def client() -> None:
        while clock.monotonic() < until:
            try:
                await limiter.call(work)
            except bt.OverloadedError:
                await clock.sleep(0.01)
            limits.append(limiter.limit)

    await asyncio.gather(*(client() for _ in range(clients)))
    return limits


@pytest.mark.parametrize("algorithm", [Gradient2(), Vegas(), AIMD()], ids=repr)
async def test_limit_rises_while_latency_stays_low(
    clock: FakeClock, algorithm: LimitAlgorithm
) -> None:
    """A backend that is never the bottleneck: the limit grows to meet the demand."""

    async def fast() -> None:
        await clock.sleep(0.05)

    limiter = AdaptiveLimit(algorithm=algorithm, initial_limit=4, max_limit=60, clock=clock)
    await offer(limiter, clock, fast, clients=50, seconds=5.0)
    assert limiter.limit >= 40


@pytest.mark.parametrize("algorithm", [Vegas(), AIMD(timeout=0.15)], ids=["vegas", "aimd"])
async def test_limit_falls_when_queueing_raises_latency(
    clock: FakeClock, algorithm: LimitAlgorithm
) -> None:
    """Four workers, 50 eager clients: the limit falls from 40 toward the workers' count,
    the latency falls with it (unlimited: 50 / 4 x 50 ms = 625 ms), the workers stay busy."""
    backend = Backend(clock, workers=4, service=0.05)
    limiter = AdaptiveLimit(algorithm=algorithm, initial_limit=40, clock=clock)
    limits = await offer(limiter, clock, backend, clients=50, seconds=20.0)
    assert statistics.median(limits[len(limits) // 2 :]) <= 16
    latencies = backend.latencies
    assert statistics.mean(latencies[len(latencies) // 2 :]) <= 0.25
    assert len(latencies) >= 0.8 * (4 / 0.05) * 20


async def test_gradient2_falls_when_latency_steps_up(clock: FakeClock) -> None:
    """Gradient2 cuts the limit when the latency jumps above its long-term average
    (under sustained overload the average catches up: see the docs)."""
    latency = 0.05

    async def work() -> None:
        await clock.sleep(latency)

    limiter = AdaptiveLimit(algorithm=Gradient2(), initial_limit=30, max_limit=40, clock=clock)
    await offer(limiter, clock, work, clients=40, seconds=5.0)
    assert limiter.limit == 40
    latency = 0.5
    await offer(limiter, clock, work, clients=40, seconds=1.0)
    assert limiter.limit <= 25


async def test_limit_falls_on_drops(clock: FakeClock) -> None:
    """Calls that time out shrink an AIMD limit multiplicatively."""

    async def timing_out() -> None:
        await clock.sleep(0.01)
        raise bt.TimeoutError("too slow")

    limiter = AdaptiveLimit(algorithm=AIMD(backoff_ratio=0.5), initial_limit=64, clock=clock)
    for _ in range(4):
        with pytest.raises(bt.TimeoutError):
            await limiter.call(timing_out)
    assert limiter.limit == 4


async def test_limit_stays_within_min_and_max(clock: FakeClock) -> None:
    """min_limit and max_limit bound the limit whatever the algorithm wants."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=5, min_limit=3, max_limit=6)

    async def fail() -> None:
        raise bt.OverloadedError

    for _ in range(10):
        with pytest.raises(bt.OverloadedError):
            await limiter.call(fail)
    assert limiter.limit == 3
    await offer(limiter, clock, lambda: clock.sleep(0.01), clients=10, seconds=1.0)
    assert limiter.limit == 6


async def test_limit_changed_events(clock: FakeClock, recorder: Recorder) -> None:
    """LimitChanged only when the integer limit changes; CallRejected for each shed call."""
    limiter = AdaptiveLimit(
        algorithm=Gradient2(), initial_limit=2, max_limit=3, clock=clock, name="db"
    )
    await asyncio.gather(*(limiter.call(clock.sleep, 0.1) for _ in range(2)))
    # 2 -> 2.4 -> 2.72: one change of the integer limit
    changes = recorder.of(events.LimitChanged)
    assert changes == [events.LimitChanged("db", 2, 3, pytest.approx(0.1), False)]  # type: ignore[arg-type]
    release = asyncio.Event()
    tasks = [asyncio.create_task(limiter.call(release.wait)) for _ in range(4)]
    await settle()
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, bt.OverloadedError) for r in results) == 1
    assert recorder.of(events.CallRejected) == [events.CallRejected("db", "adaptive_limit", None)]


async def test_listener_on_the_policy(clock: FakeClock) -> None:
    """listeners= receives the limiter's own events."""
    seen: list[events.Event] = []
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=1, clock=clock, listeners=[seen.append])
    await limiter.call(asyncio.sleep, 0)
    assert seen == [events.LimitChanged(limiter.name, 1, 2, 0.0, False)]


async def test_in_a_pipeline(clock: FakeClock) -> None:
    """As a pipeline member: an outer fallback sees the shed call's OverloadedError."""
    limiter = AdaptiveLimit(initial_limit=1, clock=clock)
    policy = bt.pipeline(bt.Fallback("shed", on=bt.OverloadedError), limiter)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "served"

    first = asyncio.create_task(policy.call(slow))
    await settle()
    assert await policy.call(slow) == "shed"
    release.set()
    assert await first == "served"


def test_decorator_works_on_def_and_async_def() -> None:
    """@limiter keeps working on both kinds of function."""
    limiter = AdaptiveLimit()

    @limiter
    def double(x: int) -> int:
        return 2 * x

    @limiter
    async def triple(x: int) -> int:
        return 3 * x

    assert double(2) == 4
    assert asyncio.run(triple(2)) == 6


def test_stats_and_repr() -> None:
    """stats() is a frozen snapshot; repr names the algorithm and the limit."""
    limiter = AdaptiveLimit(algorithm=Vegas(), initial_limit=7, name="x")
    stats = limiter.stats()
    assert (stats.name, stats.limit, stats.estimate, stats.inflight) == ("x", 7, 7.0, 0)
    assert stats.last_rtt is None
    with pytest.raises(AttributeError):
        stats.limit = 3  # type: ignore[misc]
    assert repr(limiter).startswith("AdaptiveLimit(algorithm=Vegas(alpha=vegas_alpha")
    assert "limit=7" in repr(limiter)
    assert repr(Gradient2()) == (
        "Gradient2(rtt_tolerance=1.5, smoothing=0.2, queue_size=4, long_window=600)"
    )
    assert isinstance(Gradient2(), LimitAlgorithm)
    assert isinstance(start(Gradient2()), LimitState)


# -- invariants -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    algorithm=st.sampled_from([Gradient2(), Vegas(probe_multiplier=2), AIMD(timeout=0.2)]),
    initial=st.integers(1, 8),
    plan=st.lists(
        st.tuples(
            st.floats(0.0, 0.05),  # gap before this arrival
            st.floats(0.0, 0.4),  # its latency
            st.sampled_from(["ok", "drop", "error", "cancel"]),
        ),
        max_size=40,
    ),
)
def test_never_admits_more_than_the_limit_tasks(
    algorithm: LimitAlgorithm, initial: int, plan: list[tuple[float, float, str]]
) -> None:
    """Random arrivals and latencies: a call starts only below the limit, a rejection
    only at it; every slot comes back."""

    async def scenario() -> None:
        clock = FakeClock()
        limiter = AdaptiveLimit(algorithm=algorithm, initial_limit=initial, clock=clock)
        running = 0

        async def work(latency: float, outcome: str) -> None:
            nonlocal running
            running += 1
            # Admission and start happen in one step of this task: nothing ran between.
            assert running == limiter.inflight <= limiter.limit
            try:
                await clock.sleep(latency)
                if outcome == "drop":
                    raise bt.TimeoutError
                if outcome == "error":
                    raise ValueError
            finally:
                running -= 1

        async def arrive(latency: float, outcome: str) -> None:
            at_limit = limiter.inflight >= limiter.limit
            try:
                await limiter.call(work, latency, outcome)
            except bt.OverloadedError:
                assert at_limit
            except (bt.TimeoutError, ValueError):
                pass

        tasks: list[asyncio.Task[None]] = []
        for gap, latency, outcome in plan:
            await clock.sleep(gap)
            task = asyncio.create_task(arrive(latency, outcome))
            tasks.append(task)
            if outcome == "cancel":
                clock.call_later(latency / 2, task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.inflight == 0
        assert 1 <= limiter.limit <= 200

    asyncio.run(scenario())


def test_never_admits_more_than_the_limit_threads() -> None:
    """Eight threads hammering one limiter: running calls never exceed the highest limit
    set so far, and every slot comes back."""
    ceiling = 6
    highest = [2]

    class Recording:
        """AIMD, noting each new limit under the limiter's lock (before any admission)."""

        def start(self, **kwargs: Any) -> Any:
            inner = AIMD().start(**kwargs)

            class State:
                limit = inner.limit

                def update(self, rtt: float, inflight: int, dropped: bool, now: float) -> float:
                    value = inner.update(rtt, inflight, dropped, now)
                    highest[0] = max(highest[0], int(value))
                    return value

            return State()

    limiter = AdaptiveLimit(algorithm=Recording(), initial_limit=2, max_limit=ceiling)  # type: ignore[arg-type]
    lock = threading.Lock()
    running = 0
    peak = 0
    outcomes = {"ok": 0, "shed": 0}

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            assert running <= highest[0]
        threading.Event().wait(0.0005)
        with lock:
            running -= 1

    def worker() -> None:
        for _ in range(150):
            try:
                limiter.call_sync(work)
                key = "ok"
            except bt.OverloadedError:
                key = "shed"
            with lock:
                outcomes[key] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= ceiling
    assert outcomes["ok"] + outcomes["shed"] == 8 * 150
    stats = limiter.stats()
    assert stats.inflight == 0
    assert stats.admitted == outcomes["ok"] == stats.samples


def test_sync_and_async_callers_share_one_limit() -> None:
    """A thread holding the only slot makes an async caller shed, and vice versa."""
    limiter = AdaptiveLimit(algorithm=AIMD(), initial_limit=1, max_limit=1)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(5)

    thread = threading.Thread(target=limiter.call_sync, args=(hold,))
    thread.start()
    inside.wait(5)
    try:
        with pytest.raises(bt.OverloadedError):
            asyncio.run(limiter.call(asyncio.sleep, 0))
    finally:
        release.set()
        thread.join()
    assert asyncio.run(limiter.call(asyncio.sleep, 0, "ok")) == "ok"


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AdaptiveLimit(min_limit=0), "min_limit must be an int >= 1, got 0"),
        (lambda: AdaptiveLimit(min_limit=5, max_limit=4), "max_limit must be an int >= 5, got 4"),
        (
            lambda: AdaptiveLimit(initial_limit=300),
            r"initial_limit must be an int in \[1, 200\], got 300",
        ),
        (
            lambda: AdaptiveLimit(algorithm="vegas"),  # type: ignore[arg-type]
            "algorithm must be a Gradient2, Vegas, AIMD or other LimitAlgorithm, got 'vegas'",
        ),
        (lambda: AdaptiveLimit(drop_on=42), "drop_on must be an exception class"),  # type: ignore[arg-type]
        (lambda: AdaptiveLimit(ignore_on="x"), "ignore_on must be an exception class"),  # type: ignore[arg-type]
        (lambda: AdaptiveLimit(name=""), "name must be a non-empty str or None"),
        (lambda: AdaptiveLimit(random=1), "random must be a random.Random or None"),  # type: ignore[arg-type]
        (
            lambda: Gradient2(rtt_tolerance=0.9),
            r"rtt_tolerance must be a number in \[1, inf\), got 0.9",
        ),
        (lambda: Gradient2(smoothing=0), r"smoothing must be a number in \(0, 1\], got 0"),
        (lambda: Gradient2(queue_size=-1), r"queue_size must be a number in \[0, inf\), got -1"),
        (lambda: Gradient2(long_window=0), "long_window must be an int >= 1, got 0"),
        (lambda: Vegas(alpha=-1), r"alpha must be a number in \[0, inf\), got -1"),
        (lambda: Vegas(increase=2), "increase must be a function"),  # type: ignore[arg-type]
        (lambda: Vegas(smoothing=1.5), r"smoothing must be a number in \(0, 1\], got 1.5"),
        (lambda: Vegas(probe_multiplier=0), "probe_multiplier must be an int >= 1, got 0"),
        (
            lambda: AIMD(backoff_ratio=1.0),
            r"backoff_ratio must be a number in \[0.5, 1\), got 1.0",
        ),
        (lambda: AIMD(timeout=0), "timeout must be a duration > 0 seconds, got 0"),
    ],
)
def test_bad_options(build: Callable[[], object], message: str) -> None:
    """Bad options name themselves, their value and the allowed range."""
    with pytest.raises(bt.ConfigError, match=message):
        build()


def test_a_start_that_returns_no_state_is_refused() -> None:
    """An algorithm whose start() returns something without update() is a ConfigError."""

    class Bad:
        def start(self, **kwargs: Any) -> object:
            return object()

    with pytest.raises(bt.ConfigError, match="start\\(\\) returns a LimitState"):
        AdaptiveLimit(algorithm=Bad())  # type: ignore[arg-type]
