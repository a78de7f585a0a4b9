"""Rate limiting: an exact GCRA limit per key, local or shared through a store."""

from ._gcra import Decision, RateSpec
from ._limiter import RateLimiter, RateLimiterStats

__all__ = ["Decision", "RateLimiter", "RateLimiterStats", "RateSpec"]
