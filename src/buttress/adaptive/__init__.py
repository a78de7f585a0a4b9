"""Adaptive load shedding: a concurrency limit learnt from latency, and a client throttle.

* :class:`AdaptiveLimit` admits a call while fewer than ``limit`` run and rejects the rest
  with :class:`~buttress.OverloadedError`; the limit follows the observed latency and
  drops through one of the algorithms :class:`Gradient2`, :class:`Vegas` or
  :class:`AIMD` (the definitions of Netflix's concurrency-limits).
* :class:`AdaptiveThrottle` rejects calls locally with the probability
  ``max(0, (requests - k * accepts) / (requests + 1))`` of Google's SRE book, so a client
  stops sending what its backend is refusing.

The names are re-exported from :mod:`buttress`. :class:`LimitAlgorithm` and
:class:`LimitState` are the protocols to write another algorithm against.

Example::

    import buttress as bt

    policy = bt.pipeline(bt.AdaptiveThrottle(k=2.0), bt.AdaptiveLimit(algorithm=bt.Vegas()))
    answer = await policy.call(fetch, url)
"""

from ._algorithms import AIMD, Gradient2, LimitAlgorithm, LimitState, Vegas, log10_limit
from ._limit import AdaptiveLimit, AdaptiveLimitStats
from ._throttle import AdaptiveThrottle, AdaptiveThrottleStats

__all__ = [
    "AIMD",
    "AdaptiveLimit",
    "AdaptiveLimitStats",
    "AdaptiveThrottle",
    "AdaptiveThrottleStats",
    "Gradient2",
    "LimitAlgorithm",
    "LimitState",
    "Vegas",
    "log10_limit",
]
