"""The local tier of a TieredCache: what it needs from an in-process cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from .._clock import Clock

__all__ = ["LocalTier", "SimpleLocalTier"]


@runtime_checkable
class LocalTier(Protocol):
    """The in-process cache in front of Redis in a :class:`~buttress.TieredCache`.

    :class:`~buttress.Cache` fits, and so does anything with these four methods.
    ``get`` must return ``default`` for a missing or expired key (``None`` is a value),
    ``set`` must honour ``ttl`` (seconds, or ``None`` for the tier's own default).

    Example::

        class DictTier:
            def __init__(self) -> None:
                self.data: dict[str, object] = {}
            def get(self, key: str, default: object = None) -> object:
                return self.data.get(key, default)
            def set(self, key: str, value: object, ttl: float | None = None) -> None:
                self.data[key] = value
            def delete(self, key: str) -> object:
                return self.data.pop(key, None)
            def clear(self) -> None:
                self.data.clear()
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        ...

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        ...

    def delete(self, key: str) -> Any:
        """Forget ``key``."""
        ...

    def clear(self) -> None:
        """Forget everything."""
        ...


class SimpleLocalTier:
    """A small thread-safe LRU with per-entry expiry on an injected clock: the fallback
    local tier when :class:`~buttress.Cache` is not available.

    Args:
        max_size: entries kept, ``>= 1``.
        clock: the clock that expires entries.
    """

    __slots__ = ("_data", "_lock", "_now", "max_size")

    def __init__(self, max_size: int, clock: Clock) -> None:
        self.max_size = max_size
        self._now = clock.monotonic
        self._data: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return default
            if entry[1] <= self._now():
                del self._data[key]
                return default
            self._data.move_to_end(key)
            return entry[0]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = float("inf") if ttl is None else self._now() + ttl
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            if len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def delete(self, key: str) -> Any:
        with self._lock:
            entry = self._data.pop(key, None)
        return None if entry is None else entry[0]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
