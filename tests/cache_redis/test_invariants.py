"""Pure invariants of the Redis tier, checked with hypothesis (no Redis needed)."""

from __future__ import annotations

import redis.asyncio
from hypothesis import given
from hypothesis import strategies as st

from buttress.cache import TieredCache
from buttress.cache._redis_shared import MAX_KEY, bounded

keys = st.sampled_from(["a", "b", "c", None])  # None: "everything" (clear, resubscribe)


@given(st.lists(keys, max_size=40), st.lists(keys, max_size=40), st.sampled_from("abc"))
def test_a_read_keeps_its_value_iff_nothing_invalidated_its_key(
    before: list[str | None], during: list[str | None], key: str
) -> None:
    """_unchanged(gen, key) is false exactly when an invalidation of ``key`` (or of
    everything) happened after ``gen`` was read."""
    cache = TieredCache(redis.asyncio.Redis(), name="model")
    for k in before:
        cache._bump(k)
    gen = cache._gen
    for k in during:
        cache._bump(k)
    expected = not any(k is None or k == key for k in during)
    assert cache._unchanged(gen, key) == expected


def test_too_many_invalidations_to_tell_means_no() -> None:
    """Past the remembered window the answer is the safe one."""
    cache = TieredCache(redis.asyncio.Redis(), name="model")
    gen = cache._gen
    for _ in range(2000):
        cache._bump("other")
    assert not cache._unchanged(gen, "k")


@given(st.text(min_size=1, max_size=400), st.text(min_size=1, max_size=400))
def test_bounded_keys(one: str, two: str) -> None:
    """Short keys are kept; long keys (and keys starting with '#') become '#' + SHA-256,
    so distinct keys always get distinct stored forms."""
    for key in (one, two):
        stored = bounded(key)
        if len(key) <= MAX_KEY and not key.startswith("#"):
            assert stored == key
        else:
            assert stored.startswith("#")
            assert len(stored) == 65
    if one != two:
        assert bounded(one) != bounded(two)
    assert bounded("#" + "0" * 64) != "#" + "0" * 64
