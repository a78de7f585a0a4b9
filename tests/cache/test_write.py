"""Write-through and write-behind to a backing store."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Any

import pytest

import buttress as bt
from buttress.cache import (
    DELETED,
    Cache,
    CacheError,
    CacheWriteError,
    CacheWriteFailed,
    WriteBehind,
    WriteThrough,
)
from buttress.testing import FakeClock


class Store:
    """A dict behind a lock; ``fail`` makes the next N calls raise."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.fail = 0
        self.calls: list[dict[Any, Any] | list[Any]] = []
        self.lock = threading.Lock()

    def write_many(self, items: Mapping[Any, Any]) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise ConnectionError("store down")
            self.calls.append(dict(items))
            self.data.update(items)

    def delete_many(self, keys: Collection[Any]) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise ConnectionError("store down")
            self.calls.append(list(keys))
            for key in keys:
                self.data.pop(key, None)


def test_write_through_stores_first(clock: FakeClock) -> None:
    store = Store()
    cache: Cache[str, int] = Cache(10, writer=WriteThrough(store), clock=clock)
    cache.set("a", 1)
    assert store.data == {"a": 1}
    cache.delete("a")
    assert store.data == {}


def test_write_through_failure_leaves_the_cache_unchanged(clock: FakeClock) -> None:
    store = Store()
    seen: list[CacheWriteFailed] = []
    cache: Cache[str, int] = Cache(
        10, writer=WriteThrough(store, attempts=2), clock=clock, listeners=[seen.append]
    )
    cache.set("a", 1)
    store.fail = 2
    with pytest.raises(CacheWriteError) as info:
        cache.set("a", 2)
    assert isinstance(info.value.__cause__, ConnectionError)
    assert info.value.pending == {"a": 2}
    assert cache.get("a") == 1
    assert [(e.mode, e.attempt, e.gave_up) for e in seen] == [
        ("through", 1, False),
        ("through", 2, True),
    ]
    store.fail = 1  # one failure, then the retry succeeds
    cache.set("a", 3)
    assert (cache.get("a"), store.data["a"]) == (3, 3)


def test_write_through_ignore_policy(clock: FakeClock) -> None:
    store = Store()
    cache: Cache[str, int] = Cache(10, writer=WriteThrough(store, on_error="ignore"), clock=clock)
    store.fail = 1
    cache.set("a", 1)
    assert cache.get("a") == 1
    assert store.data == {}


def test_write_behind_batches_and_coalesces(clock: FakeClock) -> None:
    store = Store()
    cache: Cache[int, int] = Cache(100, writer=WriteBehind(store, delay=60), clock=clock)
    for i in range(100):
        cache.set(i % 10, i)
    cache.delete(3)
    cache.flush()
    assert store.data == {i: 90 + i for i in range(10) if i != 3}
    assert sum(len(c) for c in store.calls) == 10  # 100 writes coalesced to 10 entries


def test_write_behind_respects_batch_size(clock: FakeClock) -> None:
    store = Store()
    writer = WriteBehind(store, batch_size=7, delay=60)
    cache: Cache[int, int] = Cache(100, writer=writer, clock=clock)
    for i in range(30):
        cache.set(i, i)
    cache.close()
    assert store.data == {i: i for i in range(30)}
    assert max(len(c) for c in store.calls) <= 7
    assert writer.pending == 0


def test_write_behind_retries_with_backoff_through_failures(clock: FakeClock) -> None:
    store = Store()
    seen: list[CacheWriteFailed] = []
    writer = WriteBehind(store, delay=60, attempts=5, backoff=bt.Backoff.constant(1.0))
    cache: Cache[int, int] = Cache(100, writer=writer, clock=clock, listeners=[seen.append])
    for i in range(5):
        cache.set(i, i)
    store.fail = 3
    cache.flush()
    assert store.data == {i: i for i in range(5)}
    assert [e.attempt for e in seen] == [1, 2, 3]
    assert not any(e.gave_up for e in seen)
    assert clock.monotonic() == pytest.approx(3.0)  # three backoff sleeps, on the clock


def test_write_behind_never_drops_an_acknowledged_write(clock: FakeClock) -> None:
    store = Store()
    writer = WriteBehind(store, delay=60, attempts=2, backoff=bt.Backoff.constant(0.1))
    cache: Cache[str, int] = Cache(100, writer=writer, clock=clock)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.delete("c")
    store.fail = 10**6
    with pytest.raises(CacheWriteError) as info:
        cache.flush()
    assert info.value.pending == {"a": 1, "b": 2, "c": DELETED}
    cache.set("a", 10)  # a newer write supersedes the failed one
    store.fail = 0
    cache.flush()
    assert store.data == {"a": 10, "b": 2}
    store.fail = 10**6
    cache.set("d", 4)
    with pytest.raises(CacheWriteError) as info:
        cache.close()
    assert info.value.pending == {"d": 4}
    with pytest.raises(CacheError, match="is closed"):
        cache.set("e", 5)
    assert cache.get("d") == 4  # reads still work after close


def test_write_behind_flushes_by_itself() -> None:
    store = Store()
    cache: Cache[int, int] = Cache(100, writer=WriteBehind(store, delay=0))
    cache.set(1, 1)
    for _ in range(500):
        if store.data:
            break
        threading.Event().wait(0.01)
    assert store.data == {1: 1}
    cache.close()


def test_writer_options_are_validated() -> None:
    store = Store()
    with pytest.raises(bt.ConfigError, match="store must be an object with write_many"):
        WriteThrough(object())  # type: ignore[arg-type]
    with pytest.raises(bt.ConfigError, match="attempts must be an int >= 1, got 0"):
        WriteBehind(store, attempts=0)
    with pytest.raises(bt.ConfigError, match="batch_size must be an int >= 1, got 0"):
        WriteBehind(store, batch_size=0)
    with pytest.raises(bt.ConfigError, match="delay must be a duration"):
        WriteBehind(store, delay=-1)
    with pytest.raises(bt.ConfigError, match="on_error must be one of"):
        WriteThrough(store, on_error="retry")
    with pytest.raises(bt.ConfigError, match=r"backoff must be a bt\.Backoff or None"):
        WriteThrough(store, backoff=1.0)  # type: ignore[arg-type]
    writer = WriteThrough(store)
    Cache(1, writer=writer)
    with pytest.raises(bt.ConfigError, match="writer must be a writer not already used"):
        Cache(1, writer=writer)


async def test_loaded_value_that_cannot_be_written_fails_every_waiter(clock: FakeClock) -> None:
    store = Store()
    cache: Cache[str, int] = Cache(10, writer=WriteThrough(store, write_loaded=True), clock=clock)
    store.fail = 1
    with pytest.raises(CacheWriteError):
        cache.get_or_load_sync("a", lambda k: 1)
    assert "a" not in cache
    store.fail = 1
    with pytest.raises(CacheWriteError):
        await cache.get_or_load("b", lambda k: 2)
    assert await cache.get_or_load("b", lambda k: 3) == 3
    assert store.data == {"b": 3}
