"""Stores: where patterns keep state that must be shared or must survive a call.

* :class:`MemoryStore` — in this process (the default).
* :class:`RedisStore` — in Redis, shared by every process that uses it (needs the
  ``redis`` extra; imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._memory import MemoryStore
from ._protocol import Store

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["MemoryStore", "RedisStore", "Store"]


def __getattr__(name: str) -> Any:
    # RedisStore imports redis-py: only when asked for.
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
