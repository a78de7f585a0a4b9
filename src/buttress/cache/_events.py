"""The events a cache emits (see :mod:`buttress.events` for listeners).

Each is a frozen dataclass subclassing :class:`~buttress.events.Event`; ``policy`` is the
cache's ``name``. With no listener registered (on the cache or globally) no event object
is built: the cost is one truthiness check, on the eviction path only, never on a hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = ["CacheEvicted", "CacheLoadFailed", "CacheWriteFailed"]


@dataclass(frozen=True, slots=True)
class CacheEvicted(Event):
    """The cache dropped ``key`` by itself. ``cause`` is ``"size"`` (the eviction policy
    chose it to make room) or ``"expired"`` (its time-to-live or time-to-idle passed).
    Explicit deletes and overwrites are not evictions and emit nothing."""

    key: object
    value: object
    cause: str


@dataclass(frozen=True, slots=True)
class CacheLoadFailed(Event):
    """A loader of ``get_or_load`` raised ``exception`` for ``key``; every caller waiting on
    that load receives it. ``cached`` is true when it was kept as a negative entry."""

    key: object
    exception: BaseException
    cached: bool


@dataclass(frozen=True, slots=True)
class CacheWriteFailed(Event):
    """The backing store failed to write ``count`` entries (attempt ``attempt``).

    ``mode`` is ``"through"`` or ``"behind"``. With write-behind, ``gave_up`` is true when
    the retries are spent and the entries were put back in the queue (``flush()`` and
    ``close()`` then raise :class:`~buttress.cache.CacheWriteError`).
    """

    mode: str
    count: int
    attempt: int
    exception: BaseException
    gave_up: bool
