"""Events of the chaos tools, following the conventions of :mod:`buttress._events`.

They are delivered through the same machinery (per-policy listeners first, then the global
ones added with :func:`buttress.add_listener`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import Event

__all__ = ["FaultInjected", "ToxicApplied"]


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """A chaos policy injected a fault into one call.

    ``kind`` is ``"exception"`` (:class:`~buttress.chaos.Fault`; ``exception`` holds what
    was raised), ``"latency"`` (:class:`~buttress.chaos.Latency`; ``delay`` is the seconds
    slept), ``"outcome"`` (:class:`~buttress.chaos.Outcome`; ``value`` is the fake result;
    the real call was not made) or ``"behavior"`` (:class:`~buttress.chaos.Behavior`).
    """

    kind: str
    delay: float = 0.0
    exception: BaseException | None = None
    value: object = None


@dataclass(frozen=True, slots=True)
class ToxicApplied(Event):
    """A fault proxy's toxic started acting on one connection (it won its ``toxicity``
    draw). ``policy`` is the proxy's name, ``toxic`` the toxic's name, ``type`` its type
    (``"latency"``, ``"reset_peer"``, ...), ``stream`` ``"upstream"`` or ``"downstream"``
    and ``connection`` the connection's number on that proxy (1, 2, ...)."""

    toxic: str
    type: str
    stream: str
    connection: int
