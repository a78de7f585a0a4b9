"""Events of the Redis-backed caches (besides :class:`~buttress.events.StoreFellBack`)."""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = ["NearCacheFlushed"]


@dataclass(frozen=True, slots=True)
class NearCacheFlushed(Event):
    """A :class:`~buttress.TieredCache` emptied its local tier because invalidations may
    have been missed: ``reason`` is ``"resubscribed"`` (the pub/sub connection came back
    after a loss) or ``"cleared"`` (another process cleared the cache); ``entries`` is how
    many entries the local tier held (``-1`` if it cannot say)."""

    reason: str
    entries: int
