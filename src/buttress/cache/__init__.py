"""An in-process cache that approaches the optimum: adaptive W-TinyLFU (Caffeine's
design), expiry without scans, single-flight loading with refresh-ahead, and
write-through/write-behind to a backing store. See ``docs/cache.md``.

Example::

    from buttress.cache import Cache, cached

    users = Cache(max_size=50_000, ttl=300)

    @cached(users)
    async def fetch_user(uid: int) -> User: ...
"""

from typing import TYPE_CHECKING, Any

from . import _core
from ._codec import Codec, JsonCodec, PickleCodec
from ._compiled import restore_class_docs
from ._core import Cache, CacheStats
from ._decorator import cached
from ._errors import CacheError, CacheWriteError
from ._events import CacheEvicted, CacheLoadFailed, CacheWriteFailed
from ._local import LocalTier
from ._redis_events import NearCacheFlushed
from ._write import DELETED, BackingStore, CacheWriter, WriteBehind, WriteThrough

restore_class_docs(_core, ("Cache", "CacheStats"))  # when compiled (wheels): see _compiled

if TYPE_CHECKING:
    from ._redis import RedisCache, RedisCacheStats
    from ._tiered import TieredCache, TieredCacheStats

__all__ = [
    "DELETED",
    "BackingStore",
    "Cache",
    "CacheError",
    "CacheEvicted",
    "CacheLoadFailed",
    "CacheStats",
    "CacheWriteError",
    "CacheWriteFailed",
    "CacheWriter",
    "Codec",
    "JsonCodec",
    "LocalTier",
    "NearCacheFlushed",
    "PickleCodec",
    "RedisCache",
    "RedisCacheStats",
    "TieredCache",
    "TieredCacheStats",
    "WriteBehind",
    "WriteThrough",
    "cached",
]


# The Redis tier imports redis-py (the ``redis`` extra): only when one of its names is used.
_REDIS_NAMES = {
    "RedisCache": "._redis",
    "RedisCacheStats": "._redis",
    "TieredCache": "._tiered",
    "TieredCacheStats": "._tiered",
}


def __getattr__(name: str) -> Any:
    module = _REDIS_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
