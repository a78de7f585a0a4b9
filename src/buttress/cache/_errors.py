"""The errors a cache raises, under :class:`~buttress.ButtressError`::

ButtressError
└── CacheError              a cache was used in a state that does not allow it
    └── CacheWriteError     the backing store refused writes the cache had acknowledged

A loader's own exception is never wrapped: ``get_or_load`` raises it as is, to every
caller waiting on that load.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import ButtressError

__all__ = ["CacheError", "CacheWriteError"]


class CacheError(ButtressError):
    """A cache could not do what was asked (e.g. a write after :meth:`Cache.close`).

    ``cache`` is the ``name`` of the cache.

    Example::

        cache.close()
        try:
            cache.set("k", 1)
        except bt.CacheError as exc:
            print(exc)   # cache 'users' is closed
    """

    def __init__(self, message: str = "", *, cache: str = "") -> None:
        super().__init__(message)
        self.cache = cache

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), self.cache))


def _rebuild(cls: type[CacheError], message: str, cache: str) -> CacheError:
    return cls(message, cache=cache)


class CacheWriteError(CacheError):
    """Writing to the backing store failed.

    Raised by ``set``/``delete`` with write-through (the cache is left unchanged), and by
    ``flush()``/``close()`` with write-behind when writes it had accepted could still not
    be stored after every retry: ``pending`` holds them (key -> value, or
    :data:`~buttress.cache.DELETED` for a delete), so nothing acknowledged is lost
    silently. The store's exception is the ``__cause__``.

    Example::

        try:
            cache.close()
        except bt.CacheWriteError as exc:
            save_somewhere_else(exc.pending)
    """

    def __init__(
        self, message: str = "", *, cache: str = "", pending: Mapping[object, object] | None = None
    ) -> None:
        super().__init__(message, cache=cache)
        self.pending: dict[object, object] = dict(pending or {})

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_write, (type(self), str(self), self.cache, self.pending))


def _rebuild_write(
    cls: type[CacheWriteError], message: str, cache: str, pending: dict[object, object]
) -> CacheWriteError:
    return cls(message, cache=cache, pending=pending)
