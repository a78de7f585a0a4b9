"""The local tier of a TieredCache: what it needs from an in-process cache."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["LocalTier"]


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
