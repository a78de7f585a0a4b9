"""Model-based tests: the cache against a plain dict (hypothesis stateful testing)."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from buttress.cache import Cache
from buttress.cache._core import _WEIGHT
from buttress.testing import FakeClock

from ..racing import run_racing

KEYS = st.integers(min_value=0, max_value=30)


class CacheModel(RuleBasedStateMachine):
    """Every ``get`` returns the last value set for the key, or nothing once the key was
    evicted; never a value after a delete or after its expiry; the size stays bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.max_size = 8
        self.cache: Cache[int, int] = Cache(
            self.max_size, ttl=None, clock=self.clock, random=random.Random(1)
        )
        self.model: dict[int, tuple[int, float]] = {}  # key -> (value, expires)

    def _live(self, key: int) -> bool:
        entry = self.model.get(key)
        return entry is not None and entry[1] > self.clock.monotonic()

    @rule(key=KEYS, value=st.integers(), ttl=st.one_of(st.none(), st.integers(1, 5)))
    def set(self, key: int, value: int, ttl: int | None) -> None:
        self.cache.set(key, value, ttl=ttl)
        expires = float("inf") if ttl is None else self.clock.monotonic() + ttl
        self.model[key] = (value, expires)

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        got = self.cache.get(key)
        if not self._live(key):
            assert got is None
            self.model.pop(key, None)
        elif got is None:
            del self.model[key]  # evicted: it must stay gone until set again
        else:
            assert got == self.model[key][0]

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        expected = self._live(key) and key in self.cache._data
        assert self.cache.delete(key) == expected
        self.model.pop(key, None)
        assert key not in self.cache

    @rule(seconds=st.integers(0, 3))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    @invariant()
    def bounded(self) -> None:
        assert len(self.cache) <= self.max_size
        assert self.cache.weight <= self.max_size

    @invariant()
    def iteration_is_live(self) -> None:
        for key in self.cache:
            assert self._live(key)
            assert self.cache.get(key) == self.model[key][0]

    @invariant()
    def queues_consistent(self) -> None:
        c = self.cache
        c.cleanup()
        queued = set(c._window) | set(c._probation) | set(c._protected)
        assert queued == set(c._data)
        assert len(c._window) + len(c._probation) + len(c._protected) == len(c._data)
        assert c._window_weight == len(c._window)
        assert c._protected_weight == len(c._protected)


CacheModel.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestCacheModel = CacheModel.TestCase


class WeightedModel(RuleBasedStateMachine):
    """With a weigher, the total weight never exceeds ``max_size``."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: Cache[int, int] = Cache(20, weigher=lambda k, v: v, random=random.Random(2))
        self.model: dict[int, int] = {}

    @rule(key=KEYS, weight=st.integers(0, 25))
    def set(self, key: int, weight: int) -> None:
        self.cache.set(key, weight)
        self.model[key] = weight

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        got = self.cache.get(key)
        if key not in self.model:
            assert got is None
        elif got is None:
            del self.model[key]
        else:
            assert got == self.model[key]

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        self.cache.delete(key)
        self.model.pop(key, None)

    @invariant()
    def bounded(self) -> None:
        c = self.cache
        assert c.weight <= 20
        assert c.weight == sum(n[_WEIGHT] for n in c._data.values())
        assert c._window_weight == sum(n[_WEIGHT] for n in c._window.values())
        assert c._protected_weight == sum(n[_WEIGHT] for n in c._protected.values())


WeightedModel.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestWeightedModel = WeightedModel.TestCase


@pytest.mark.parametrize(("size", "keys"), [(64, 200), (512, 1500)])
def test_threads_hammering_one_cache_keep_it_consistent(size: int, keys: int) -> None:
    """Lock-free hits (buffered, or moving their key themselves: at 512 entries the LRU
    guard samples 1 key in 8) racing writes, deletes, buffer drains and window resizing
    from other threads."""
    import threading

    cache: Cache[int, int] = Cache(size, random=random.Random(3))
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(20_000):
                key = rng.randrange(keys)
                roll = rng.random()
                if roll < 0.7:
                    value = cache.get(key)
                    assert value is None or value == key
                elif roll < 0.95:
                    cache.set(key, key)
                else:
                    cache.delete(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # switch threads as often as possible: provoke the races
    run_racing(threading.Thread(target=worker, args=(seed,)) for seed in range(4))
    assert not errors
    cache.cleanup()
    assert len(cache) <= size
    queued = set(cache._window) | set(cache._probation) | set(cache._protected)
    assert queued == set(cache._data)
    assert cache._window_weight == len(cache._window)
    assert cache._protected_weight == len(cache._protected)
    assert cache.weight == len(cache._data)
    # each entry's _QUEUE field: its queue, None for probation
    for q, queue in ((cache._window, cache._window), (None, cache._probation)):
        assert all(node[2] is q for node in queue.values())
    assert all(node[2] is cache._protected for node in cache._protected.values())
    s = cache.stats()
    assert s.hits + s.misses > 0
