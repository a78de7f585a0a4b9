"""Balancer: strategies, outcomes, outlier ejection, panic, priorities (virtual time)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress.balance import (
    Balancer,
    Endpoint,
    EndpointEjected,
    EndpointRestored,
    NoHealthyEndpointError,
    OutlierDetection,
    PanicEntered,
    PanicExited,
    PriorityLoadChanged,
)
from buttress.testing import FakeClock

ADDRS = ["a:1", "b:1", "c:1"]


def make(
    addrs: list[str | Endpoint] | None = None,
    *,
    clock: FakeClock | None = None,
    seed: int = 1,
    events: list[object] | None = None,
    **kwargs: object,
) -> Balancer:
    listeners = [events.append] if events is not None else []
    return Balancer(
        list(ADDRS) if addrs is None else addrs,
        clock=clock or FakeClock(),
        random=random.Random(seed),
        listeners=listeners,
        **kwargs,  # type: ignore[arg-type]
    )


def serve(
    b: Balancer, clock: FakeClock, latency: dict[str, float], fail: set[str] = frozenset()
) -> str:  # type: ignore[assignment]
    """One sequential request: the chosen endpoint takes ``latency[address]`` seconds."""
    pick = b.pick()
    with pick as ep:
        clock.advance(latency.get(ep.address, 0.01))
        if ep.address in fail:
            pick.fail()
    return ep.address


# -- construction -----------------------------------------------------------------------


def test_no_endpoints_is_a_config_error() -> None:
    """An empty endpoint list is refused at construction."""
    with pytest.raises(bt.ConfigError, match="endpoints must be at least one endpoint"):
        Balancer([])


def test_duplicate_endpoint_is_a_config_error() -> None:
    """The same address twice is refused, naming the address."""
    with pytest.raises(bt.ConfigError, match=r"duplicate endpoint.*'a:1'"):
        Balancer(["a:1", "b:1", Endpoint("a:1", weight=2)])


def test_negative_weight_is_a_config_error() -> None:
    """A negative weight is refused with the argument's name and value."""
    with pytest.raises(bt.ConfigError, match="weight must be a number in \\[0, inf\\), got -1"):
        Endpoint("a:1", weight=-1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "fastest"}, "strategy must be one of"),
        ({"panic_threshold": 1.5}, "panic_threshold must be"),
        ({"on_panic": "maybe"}, "on_panic must be one of"),
        ({"decay": 0}, "decay must be"),
        ({"overprovisioning": 0.5}, "overprovisioning must be"),
        ({"hasher": object()}, "hasher must be None unless"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    """Every option is validated at construction."""
    with pytest.raises(bt.ConfigError, match=message):
        Balancer(ADDRS, **kwargs)  # type: ignore[arg-type]


def test_endpoint_parses_host_and_port() -> None:
    """Addresses may be host:port or URLs; host, port and scheme are parsed."""
    ep = Endpoint("https://example.com")
    assert (ep.scheme, ep.host, ep.port) == ("https", "example.com", 443)
    ep = Endpoint("127.0.0.1:8080")
    assert (ep.scheme, ep.host, ep.port) == ("http", "127.0.0.1", 8080)
    with pytest.raises(bt.ConfigError, match="numeric port"):
        Endpoint("host:port")


def test_constructible_before_an_event_loop() -> None:
    """A balancer can be built and used in plain sync code."""
    b = Balancer(ADDRS)
    assert b.call_sync(lambda ep: ep.address) in ADDRS


# -- strategies -------------------------------------------------------------------------


def test_round_robin_cycles() -> None:
    """Equal-weight round robin visits every endpoint in turn."""
    b = make(strategy="round_robin")
    seen = [b.call_sync(lambda ep: ep.address) for _ in range(6)]
    assert Counter(seen) == dict.fromkeys(ADDRS, 2)
    assert seen[:3] == seen[3:]


def test_smooth_weighted_round_robin_is_exact_and_interleaved() -> None:
    """Weights 5:1:1 give exactly 5:1:1 per cycle, with no run of five."""
    b = make([Endpoint("a:1", 5), Endpoint("b:1", 1), Endpoint("c:1", 1)], strategy="round_robin")
    seen = [b.call_sync(lambda ep: ep.address) for _ in range(7)]
    assert Counter(seen) == {"a:1": 5, "b:1": 1, "c:1": 1}
    assert "a:1" * 5 not in "".join(s[0] for s in seen)


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=5),
    strategy=st.sampled_from(["random", "round_robin", "p2c_least_requests"]),
    seed=st.integers(0, 1000),
)
def test_weights_are_respected_in_the_long_run(
    weights: list[int], strategy: str, seed: int
) -> None:
    """Over many picks each endpoint's share approaches its weight share."""
    eps = [Endpoint(f"e{i}:1", w) for i, w in enumerate(weights)]
    b = make(eps, strategy=strategy, seed=seed)
    picks = [b.pick() for _ in range(4000)]
    # Hold every pick open for least-requests so in-flight counts drive the weights.
    chosen = Counter(p.__enter__().address for p in picks)
    for p in picks:
        p.__exit__(None, None, None)
    total = sum(weights)
    for ep in eps:
        assert abs(chosen[ep.address] / 4000 - ep.weight / total) < 0.04


def test_zero_weight_gets_no_traffic() -> None:
    """Weight 0 means no traffic: a drained endpoint."""
    b = make([Endpoint("a:1", 0), "b:1", "c:1"], strategy="random")
    assert "a:1" not in {b.call_sync(lambda ep: ep.address) for _ in range(200)}


def test_p2c_ewma_avoids_the_slow_endpoint() -> None:
    """Peak EWMA steers traffic away from a slow endpoint."""
    clock = FakeClock()
    b = make(clock=clock)
    latency = {"a:1": 0.5, "b:1": 0.01, "c:1": 0.01}
    seen = Counter(serve(b, clock, latency) for _ in range(300))
    assert seen["a:1"] < 20
    assert b.stats().endpoints[0].latency > 0.1


def test_p2c_ewma_probes_a_slow_endpoint_again_after_decay() -> None:
    """An endpoint once slow gets traffic again after its estimate decays."""
    clock = FakeClock()
    b = make(clock=clock, decay=1.0)
    latency = {"a:1": 0.5, "b:1": 0.01, "c:1": 0.01}
    for _ in range(50):
        serve(b, clock, latency)
    latency["a:1"] = 0.01
    clock.advance(30.0)
    seen = Counter(serve(b, clock, latency) for _ in range(300))
    assert seen["a:1"] > 60


def test_fast_rejections_do_not_attract_traffic() -> None:
    """An endpoint answering 429 fast is penalised, not preferred for its speed."""
    clock = FakeClock()
    b = make(clock=clock)

    def once() -> str:
        pick = b.pick()
        with pick as ep:
            if ep.address == "a:1":
                clock.advance(0.0001)
                pick.reject()
            else:
                clock.advance(0.02)
        return ep.address

    seen = Counter(once() for _ in range(300))
    assert seen["a:1"] < 30
    assert not b.stats().endpoints[0].ejected  # a rejection does not eject


def test_rejected_error_counts_as_rejection() -> None:
    """A RejectedError leaving the block is recorded as a rejection, not a failure."""
    b = make(strategy="round_robin")
    for _ in range(3):
        with pytest.raises(bt.RateLimitedError), b.pick():
            raise bt.RateLimitedError("slow down")
    assert sum(e.rejections for e in b.stats().endpoints) == 3
    assert sum(e.failures for e in b.stats().endpoints) == 0


def test_p2c_least_requests_prefers_idle() -> None:
    """With one endpoint busy, least-requests sends to the idle ones."""
    b = make(strategy="p2c_least_requests")
    held = [b.pick() for _ in range(3)]
    eps = [p.__enter__().address for p in held]
    assert sorted(eps) == sorted(ADDRS)  # spread over all three
    for p in held:
        p.__exit__(None, None, None)
    assert all(e.in_flight == 0 for e in b.stats().endpoints)


def test_hash_strategy_is_sticky_and_fails_over() -> None:
    """Key affinity: a key sticks to one endpoint and moves only when it is ejected."""
    b = make(strategy="hash", outlier=OutlierDetection(consecutive_failures=1))
    home = {k: b.call_sync(lambda ep: ep.address, key=k) for k in range(100)}
    assert {b.call_sync(lambda ep: ep.address, key=k) for k in range(100) if home[k] == "a:1"} == {
        "a:1"
    }
    assert len(set(home.values())) == 3
    with pytest.raises(ValueError), b.pick(key=next(k for k in home if home[k] == "a:1")):
        raise ValueError("boom")
    moved = {k: b.call_sync(lambda ep: ep.address, key=k) for k in range(100)}
    assert all(moved[k] == home[k] for k in home if home[k] != "a:1")
    assert all(moved[k] != "a:1" for k in home)


def test_hash_strategy_with_a_hash_ring_factory() -> None:
    """A factory from buttress.hashing builds the hasher over the addresses."""
    from buttress.hashing import HashRing

    b = make(strategy="hash", hasher=lambda addrs: HashRing(addrs))
    ring = HashRing(ADDRS)
    assert all(
        b.call_sync(lambda ep: ep.address, key=f"k{i}") == ring.node_for(f"k{i}") for i in range(50)
    )


def test_hash_default_is_weighted_rendezvous() -> None:
    """The default hasher is buttress.hashing.Rendezvous with the endpoint weights."""
    from buttress.hashing import Rendezvous

    b = make([Endpoint("a:1", 3), "b:1", "c:1"], strategy="hash")
    hrw = Rendezvous({"a:1": 3.0, "b:1": 1.0, "c:1": 1.0})
    assert all(b.call_sync(lambda ep: ep.address, key=i) == hrw.node_for(i) for i in range(50))


def test_hash_strategy_accepts_any_hasher() -> None:
    """Any object with node_for/nodes_for works as the hasher."""

    class Fixed:
        def node_for(self, key: object) -> str:
            return "c:1"

        def nodes_for(self, key: object, n: int) -> list[str]:
            return ["c:1", "b:1", "a:1"][:n]

    b = make(strategy="hash", hasher=Fixed())
    assert b.call_sync(lambda ep: ep.address, key="x") == "c:1"


# -- in-flight and outcomes -------------------------------------------------------------


async def test_async_pick_tracks_in_flight_and_releases_on_cancel() -> None:
    """In-flight counts rise inside the block and fall after it, cancellation included."""
    b = make(strategy="round_robin")
    started = asyncio.Event()

    async def hold() -> None:
        async with b.pick():
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold())
    await started.wait()
    assert sum(e.in_flight for e in b.stats().endpoints) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = b.stats()
    assert sum(e.in_flight for e in stats.endpoints) == 0
    assert sum(e.requests for e in stats.endpoints) == 0  # cancellation records nothing


async def test_call_passes_the_endpoint() -> None:
    """call() runs fn(endpoint, *args) and returns its result."""
    b = make()

    async def fn(ep: Endpoint, x: int) -> tuple[str, int]:
        return ep.address, x

    address, x = await b.call(fn, 7)
    assert address in ADDRS and x == 7


def test_deadline_exceeded_records_nothing() -> None:
    """The caller's own deadline running out says nothing of the endpoint."""
    b = make(outlier=OutlierDetection(consecutive_failures=1))
    for _ in range(5):
        with pytest.raises(bt.DeadlineExceededError), b.pick():
            raise bt.DeadlineExceededError("late")
    assert b.stats().available == 3


# -- outlier detection ------------------------------------------------------------------


def test_consecutive_failures_eject_then_restore(clock: FakeClock) -> None:
    """N failures in a row eject an endpoint for base_ejection_time; then it returns."""
    events: list[object] = []
    b = make(
        clock=clock,
        events=events,
        strategy="round_robin",
        outlier=OutlierDetection(
            consecutive_failures=3, base_ejection_time=30.0, max_ejection_percent=50
        ),
    )
    for _ in range(9):
        serve(b, clock, {}, fail={"a:1"})
    ejected = [e for e in events if isinstance(e, EndpointEjected)]
    assert [(e.endpoint, e.reason, e.seconds) for e in ejected] == [
        ("a:1", "consecutive_failures", 30.0)
    ]
    assert {serve(b, clock, {}) for _ in range(20)} == {"b:1", "c:1"}
    clock.advance(30.0)
    assert "a:1" in {serve(b, clock, {}) for _ in range(20)}
    assert any(isinstance(e, EndpointRestored) and e.reason == "expired" for e in events)


def test_ejection_time_grows_with_repeated_ejections(clock: FakeClock) -> None:
    """The second ejection lasts base x 2, capped at max_ejection_time."""
    events: list[object] = []
    b = make(
        ["a:1"],
        clock=clock,
        events=events,
        panic_threshold=0.0,
        outlier=OutlierDetection(
            consecutive_failures=1, base_ejection_time=10.0, max_ejection_time=15.0, interval=1000.0
        ),
    )
    for _ in range(3):
        serve(b, clock, {}, fail={"a:1"})
        with pytest.raises(NoHealthyEndpointError) as info:
            b.pick().__enter__()
        assert info.value.retry_after is not None
        clock.advance(info.value.retry_after)
    assert [e.seconds for e in events if isinstance(e, EndpointEjected)] == [10.0, 15.0, 15.0]


def test_success_rate_outlier_is_ejected(clock: FakeClock) -> None:
    """An endpoint whose success rate is far below the others' is ejected."""
    events: list[object] = []
    addrs = [f"e{i}:1" for i in range(6)]
    b = make(
        addrs,
        clock=clock,
        events=events,
        strategy="round_robin",
        outlier=OutlierDetection(
            consecutive_failures=None,
            interval=10.0,
            success_rate_request_volume=20,
            max_ejection_percent=50,
        ),
    )
    rng = random.Random(3)
    for _ in range(600):
        pick = b.pick()
        with pick as ep:
            clock.advance(0.02)
            if ep.address == "e0:1" and rng.random() < 0.5:
                pick.fail()
    ejected = [e for e in events if isinstance(e, EndpointEjected)]
    assert [(e.endpoint, e.reason) for e in ejected] == [("e0:1", "success_rate")]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=8),
    percent=st.sampled_from([0.0, 10.0, 34.0, 50.0, 100.0]),
    failing=st.sets(st.integers(0, 7)),
    seed=st.integers(0, 100),
)
def test_max_ejected_share_is_respected(
    n: int, percent: float, failing: set[int], seed: int
) -> None:
    """Never more than max(1, floor(n x percent / 100)) endpoints are ejected at once."""
    clock = FakeClock()
    addrs = [f"e{i}:1" for i in range(n)]
    b = make(
        addrs,
        clock=clock,
        seed=seed,
        outlier=OutlierDetection(consecutive_failures=2, max_ejection_percent=percent),
    )
    bad = {f"e{i}:1" for i in failing}
    limit = max(1, int(n * percent / 100 + 1e-9))
    for _ in range(200):
        serve(b, clock, {}, fail=bad)
        assert sum(e.ejected for e in b.stats().endpoints) <= limit


@settings(max_examples=40, deadline=None)
@given(
    strategy=st.sampled_from(["p2c_ewma", "p2c_least_requests", "round_robin", "random"]),
    failing=st.sets(st.integers(0, 4), max_size=2),
    seed=st.integers(0, 1000),
)
def test_never_picks_an_ejected_endpoint_unless_panic(
    strategy: str, failing: set[int], seed: int
) -> None:
    """Outside panic, a pick never lands on an ejected endpoint."""
    clock = FakeClock()
    addrs = [f"e{i}:1" for i in range(5)]
    b = make(
        addrs,
        clock=clock,
        seed=seed,
        strategy=strategy,
        outlier=OutlierDetection(consecutive_failures=2, max_ejection_percent=40),
    )
    bad = {f"e{i}:1" for i in failing}
    for _ in range(150):
        before = b.stats()
        address = serve(b, clock, {}, fail=bad)
        if not before.panic:
            assert address not in {e.address for e in before.endpoints if e.ejected}
        clock.advance(0.5)


# -- panic and priorities ---------------------------------------------------------------


def test_panic_spreads_over_all(clock: FakeClock) -> None:
    """Below the panic threshold, traffic goes to every endpoint, ejected ones included."""
    events: list[object] = []
    b = make(
        clock=clock,
        events=events,
        strategy="round_robin",
        panic_threshold=0.8,
        outlier=OutlierDetection(consecutive_failures=1, max_ejection_percent=100),
    )
    serve(b, clock, {}, fail=set(ADDRS))  # ejects one: health 1.4 * 2/3 = 0.93
    assert not b.stats().panic
    for _ in range(4):
        serve(b, clock, {}, fail=set(ADDRS))
    stats = b.stats()
    assert stats.panic
    assert {serve(b, clock, {}) for _ in range(6)} == set(ADDRS)
    assert any(isinstance(e, PanicEntered) and e.mode == "all" for e in events)
    clock.advance(60.0)
    b.stats()
    assert any(isinstance(e, PanicExited) for e in events)


def test_panic_fail_mode_raises(clock: FakeClock) -> None:
    """With on_panic='fail', a panicking balancer refuses requests."""
    b = make(
        clock=clock,
        strategy="round_robin",
        on_panic="fail",
        outlier=OutlierDetection(consecutive_failures=1, max_ejection_percent=100),
    )
    for _ in range(2):  # two of three ejected: health 1.4 * 1/3 < 0.5
        serve(b, clock, {}, fail=set(ADDRS))
    with pytest.raises(NoHealthyEndpointError) as info:
        b.call_sync(lambda ep: None)
    assert isinstance(info.value, bt.RejectedError)
    assert info.value.retry_after == pytest.approx(30.0, abs=0.1)


def test_priority_failover_with_overprovisioning(clock: FakeClock) -> None:
    """Losing one of four primaries moves nothing; losing half spills to the secondary."""
    events: list[object] = []
    eps = [Endpoint(f"p{i}:1") for i in range(4)] + [Endpoint("s0:1", priority=1)]
    b = make(
        eps,
        clock=clock,
        events=events,
        strategy="random",
        outlier=OutlierDetection(consecutive_failures=1, max_ejection_percent=100),
    )
    assert b.stats().loads == ((0, 1.0), (1, 0.0))

    def fail_on(address: str) -> None:
        while True:
            pick = b.pick()
            with pick as ep:
                if ep.address == address:
                    pick.fail()
                    return

    fail_on("p0:1")
    assert b.stats().loads == ((0, 1.0), (1, 0.0))  # 1.4 * 3/4 >= 1: no failover
    fail_on("p1:1")
    loads = dict(b.stats().loads)
    assert loads[0] == pytest.approx(0.7)
    assert loads[1] == pytest.approx(0.3)
    seen = Counter(b.call_sync(lambda ep: ep.address) for _ in range(2000))
    assert 0.25 < seen["s0:1"] / 2000 < 0.35
    assert any(isinstance(e, PriorityLoadChanged) for e in events)
    clock.advance(31.0)
    assert b.stats().loads == ((0, 1.0), (1, 0.0))


# -- concurrency ------------------------------------------------------------------------


def test_many_threads_keep_the_counts_exact() -> None:
    """Picks from many threads at once: every request counted, none left in flight."""
    import threading

    b = Balancer([f"e{i}:1" for i in range(5)], outlier=OutlierDetection(consecutive_failures=50))
    per_thread = 2000

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(per_thread):
            pick = b.pick()
            with pick:
                if rng.random() < 0.1:
                    pick.fail()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = b.stats()
    assert sum(e.in_flight for e in stats.endpoints) == 0
    assert sum(e.requests for e in stats.endpoints) == 8 * per_thread


async def test_many_tasks_keep_the_counts_exact() -> None:
    """Concurrent tasks: in-flight counts peak above one and end at zero."""
    b = make(strategy="p2c_least_requests")
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with b.pick():
            peak = max(peak, sum(e.in_flight for e in b.stats().endpoints))
            await asyncio.sleep(0)

    await asyncio.gather(*(one() for _ in range(50)))
    assert peak > 1
    assert sum(e.in_flight for e in b.stats().endpoints) == 0


def test_failback_waits_for_failback_after(clock: FakeClock) -> None:
    """Failover is immediate; failback only once the primary's health has held."""
    eps = [Endpoint("p0:1"), Endpoint("p1:1"), Endpoint("s0:1", priority=1)]
    b = make(
        eps,
        clock=clock,
        strategy="round_robin",
        failback_after=10.0,
        panic_threshold=0.0,
        outlier=OutlierDetection(
            consecutive_failures=1, base_ejection_time=5.0, max_ejection_percent=100
        ),
    )
    with pytest.raises(OSError), b.pick() as ep:
        assert ep.address == "p0:1"
        raise OSError("reset")
    assert dict(b.stats().loads) == pytest.approx({0: 0.7, 1: 0.3})
    clock.advance(6.0)  # the ejection is over, but the primary has not held for 10 s
    stats = b.stats()
    assert stats.endpoints[0].available
    assert dict(stats.loads) == pytest.approx({0: 0.7, 1: 0.3})
    clock.advance(9.5)  # 10 s since the rise was seen (at t = 6) is t = 16
    assert dict(b.stats().loads) == pytest.approx({0: 0.7, 1: 0.3})
    clock.advance(0.5)
    assert dict(b.stats().loads) == pytest.approx({0: 1.0, 1: 0.0})
    with pytest.raises(bt.ConfigError, match="failback_after must be"):
        Balancer(ADDRS, failback_after=-1)


# -- membership -------------------------------------------------------------------------


def test_add_and_remove_endpoints() -> None:
    """Added endpoints get traffic; removed ones get none; bad calls are ConfigErrors."""
    b = make(strategy="round_robin")
    b.add(Endpoint("d:1", weight=1))
    assert {b.call_sync(lambda ep: ep.address) for _ in range(8)} == {*ADDRS, "d:1"}
    b.remove("a:1")
    assert {b.call_sync(lambda ep: ep.address) for _ in range(6)} == {"b:1", "c:1", "d:1"}
    assert [ep.address for ep in b.endpoints] == ["b:1", "c:1", "d:1"]
    with pytest.raises(bt.ConfigError, match="duplicate endpoint"):
        b.add("b:1")
    with pytest.raises(bt.ConfigError, match="address must be the address of an endpoint"):
        b.remove("zz:1")
    for address in ("b:1", "c:1", "d:1"):
        b.remove(address)
    with pytest.raises(NoHealthyEndpointError):
        b.call_sync(lambda ep: None)


def test_a_request_in_flight_on_a_removed_endpoint_finishes() -> None:
    """Removing an endpoint does not break the requests already sent to it."""
    b = make(["a:1", "b:1"], strategy="round_robin")
    pick = b.pick()
    with pick as ep:
        b.remove(ep.address)
    assert [e.address for e in b.stats().endpoints] == ["b:1"]


def test_hash_membership_moves_few_keys() -> None:
    """With the hash strategy, adding an endpoint moves only the keys it takes."""
    b = make(strategy="hash")
    before = {k: b.call_sync(lambda ep: ep.address, key=k) for k in range(300)}
    b.add("d:1")
    after = {k: b.call_sync(lambda ep: ep.address, key=k) for k in range(300)}
    moved = [k for k in before if before[k] != after[k]]
    assert all(after[k] == "d:1" for k in moved)
    assert 30 < len(moved) < 120  # about a quarter


async def test_added_endpoint_is_health_checked(clock: FakeClock) -> None:
    """An endpoint added while started gets its own health checks; a removed one stops."""
    from buttress.balance import HealthCheck

    seen: list[str] = []

    async def check(ep: Endpoint) -> bool:
        seen.append(ep.address)
        return True

    b = make(clock=clock, health_check=HealthCheck(check, interval=1.0, jitter=0.0))
    async with b:
        b.add("d:1")
        await clock.sleep(2.5)
        assert seen.count("d:1") == 3
        b.remove("a:1")
        await asyncio.sleep(0)
        count = seen.count("a:1")
        await clock.sleep(3.0)
        assert seen.count("a:1") == count


def test_zero_base_ejection_time_never_ejects(clock: FakeClock) -> None:
    """base_ejection_time=0 means no ejection at all (zero means zero)."""
    events: list[object] = []
    b = make(
        clock=clock,
        events=events,
        outlier=OutlierDetection(consecutive_failures=1, base_ejection_time=0),
    )
    for _ in range(10):
        serve(b, clock, {}, fail=set(ADDRS))
    assert not any(isinstance(e, EndpointEjected) for e in events)
    assert b.stats().available == 3
