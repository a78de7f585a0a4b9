"""Expiry: ttl per cache and per entry, time to idle, no expired entry ever visible."""

from __future__ import annotations

from datetime import timedelta

from buttress.cache import Cache, CacheEvicted
from buttress.testing import FakeClock


def test_ttl_per_cache_and_per_entry(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(100, ttl=10, clock=clock)
    cache.set("a", 1)
    cache.set("b", 2, ttl=timedelta(seconds=2))
    cache.set("c", 3, ttl=30)
    clock.advance(1.9)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, 3)
    clock.advance(0.1)
    assert cache.get("b") is None
    assert "b" not in cache
    assert sorted(cache) == ["a", "c"]
    assert len(cache) == 2
    clock.advance(8)
    assert cache.get("a") is None
    assert list(cache.items()) == [("c", 3)]
    clock.advance(20)
    assert len(cache) == 0
    assert cache.stats().expirations == 3


def test_rewrite_resets_the_deadline(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, ttl=5, clock=clock)
    cache.set("k", 1)
    clock.advance(4)
    cache.set("k", 2)
    clock.advance(4)
    assert cache.get("k") == 2
    clock.advance(1)
    assert cache.get("k") is None


def test_shorter_ttl_on_rewrite_wins(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, ttl=100, clock=clock)
    cache.set("k", 1)
    cache.set("k", 2, ttl=1)
    clock.advance(1)
    assert len(cache) == 0


def test_no_ttl_entry_in_a_timed_cache_never_expires(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, clock=clock)
    cache.set("short", 1, ttl=1)
    cache.set("forever", 2)
    clock.advance(10_000)
    assert list(cache) == ["forever"]


def test_expire_after_access_is_a_time_to_idle(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, expire_after_access=2, clock=clock)
    cache.set("k", 1)
    for _ in range(10):
        clock.advance(1.5)
        assert cache.get("k") == 1
    clock.advance(2)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_ttl_caps_time_to_idle(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, ttl=5, expire_after_access=2, clock=clock)
    cache.set("k", 1)
    for _ in range(3):
        clock.advance(1.5)
        assert cache.get("k") == 1
    clock.advance(0.5)  # t = 5: the write deadline, though it was read at 4.5
    assert cache.get("k") is None


def test_expiry_events_and_no_heap_growth(clock: FakeClock) -> None:
    seen: list[CacheEvicted] = []
    cache: Cache[int, int] = Cache(1000, ttl=1, clock=clock, listeners=[seen.append])
    for i in range(10):
        cache.set(i, i)
    clock.advance(1)
    assert len(cache) == 0
    assert sorted(e.key for e in seen) == list(range(10))
    assert {e.cause for e in seen} == {"expired"}
    for round_ in range(200):  # rewrites with earlier deadlines leave stale heap entries
        for i in range(10):
            cache.set(i, round_, ttl=1 + (200 - round_) / 1000)
    assert len(cache._heap) <= 2 * len(cache) + 64


def test_ttl_zero_keeps_nothing_visible(clock: FakeClock) -> None:
    cache: Cache[str, int] = Cache(10, ttl=0, clock=clock)
    cache.set("k", 1)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_size_eviction_event(clock: FakeClock) -> None:
    seen: list[CacheEvicted] = []
    cache: Cache[int, int] = Cache(5, listeners=[seen.append])
    for i in range(20):
        cache.set(i, i)
    assert len(cache) == 5
    assert len(seen) == 15
    assert {e.cause for e in seen} == {"size"}
    assert cache.stats().evictions == 15


def test_size_eviction_event_for_any_key() -> None:
    """Keys that are themselves events are reported like any other key."""
    seen: list[CacheEvicted] = []
    cache: Cache[CacheEvicted, int] = Cache(2, listeners=[seen.append])
    keys = [CacheEvicted("k", i, i, "size") for i in range(6)]
    for i, key in enumerate(keys):
        cache.set(key, i)
    assert len(seen) == 4
    assert all(e.key in keys and e.cause == "size" for e in seen)


def test_a_plain_cache_turning_timed_keeps_its_entries(clock: FakeClock) -> None:
    """Entries written on set()'s untimed fast path get the timing fields when the first
    per-entry ttl arrives: they stay readable, never expire, and can be given a ttl."""
    cache: Cache[int, int] = Cache(100, clock=clock)
    for k in range(50):
        cache.set(k, k)  # the short entries of the fast path
    cache.get(3)
    cache.set(1000, 1, ttl=5)  # the cache turns timed
    assert cache.get(3) == 3
    assert cache.get(1000) == 1
    cache.set(7, 70, ttl=2)  # an old entry rewritten with a ttl
    clock.advance(3)
    assert cache.get(7) is None
    assert cache.get(1000) == 1
    clock.advance(3)
    assert cache.get(1000) is None
    assert sorted(cache) == [k for k in range(50) if k != 7]
    for k in range(2000, 2200):  # evictions among mixed entries
        cache.set(k, k)
    assert len(cache) <= 100
