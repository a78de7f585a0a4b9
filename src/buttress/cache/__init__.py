"""Caches: the Redis-backed tier (RedisCache, TieredCache) and its codecs."""

from ._codec import Codec, JsonCodec, PickleCodec
from ._local import LocalTier
from ._redis import RedisCache, RedisCacheStats
from ._redis_events import NearCacheFlushed
from ._tiered import TieredCache, TieredCacheStats

__all__ = [
    "Codec",
    "JsonCodec",
    "LocalTier",
    "NearCacheFlushed",
    "PickleCodec",
    "RedisCache",
    "RedisCacheStats",
    "TieredCache",
    "TieredCacheStats",
]
