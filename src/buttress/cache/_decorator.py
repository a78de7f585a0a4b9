"""``@cached(cache)``: memoise a function (``def`` or ``async def``) in a :class:`Cache`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, TypeVar, cast

from .. import _validate as v
from ._core import Cache

__all__ = ["cached"]

P = ParamSpec("P")
R = TypeVar("R")


class _KwMark:
    __slots__ = ()


_KW = _KwMark()


def _default_key(*args: Any, **kwargs: Any) -> Hashable:
    if not kwargs:
        return args if len(args) != 1 else (args[0],)
    return (*args, _KW, *sorted(kwargs.items()))


def cached(
    cache: Cache[Any, Any], *, key: Callable[..., Hashable] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Memoise a function in ``cache`` through :meth:`Cache.get_or_load` (async) or
    :meth:`Cache.get_or_load_sync` (sync): concurrent calls with the same key run the
    function once, errors are not cached, and the signature is kept for type checkers.

    Args:
        cache: the :class:`Cache` to use.
        key: ``key(*args, **kwargs) -> Hashable``, the cache key of a call. Default: the
            positional arguments and the sorted keyword arguments, as a tuple (share a
            cache between functions only with a ``key`` that tells them apart).

    Raises:
        ConfigError: ``cache`` is not a Cache or ``key`` is not callable.

    Example::

        users = bt.Cache(10_000, ttl=60)

        @bt.cached(users, key=lambda uid, **_: uid)
        async def fetch_user(uid: int, *, verbose: bool = False) -> User: ...
    """
    if not isinstance(cache, Cache):
        raise v.fail("cache", "a buttress.cache.Cache", cache)
    make_key = v.optional_callable("key", key) or _default_key

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await cache.get_or_load(
                    make_key(*args, **kwargs), lambda _k: fn(*args, **kwargs)
                )

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return cast(
                R,
                cache.get_or_load_sync(make_key(*args, **kwargs), lambda _k: fn(*args, **kwargs)),
            )

        return sync_wrapper

    return decorate
