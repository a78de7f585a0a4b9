"""GCRA, the generic cell rate algorithm: an exact rate limit in one stored number.

Each key keeps a *theoretical arrival time* (TAT): the time at which the bucket would be
full again if no more requests came. A request of ``cost`` units at time ``now`` moves it
to ``max(TAT, now) + cost * interval``; it is admitted if that new TAT is at most
``burst * interval`` ahead of ``now`` (plus ``max_wait`` for a request willing to wait for
its slot). Admitted requests then satisfy, over *any* window of length ``W``::

    admitted units <= W / interval + burst

which is what the hypothesis test in ``tests/test_ratelimit.py`` checks. The step itself is
written once in Python, as :meth:`buttress.MemoryStore.acquire_sync` (inline there: it runs
on every request), and once in Lua for Redis (``stores/redis/gcra.lua``); the contract
tests run both against the same expectations.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["EPSILON", "Decision", "RateSpec", "make"]

# Float slack: floors of ratios like 0.30000000000000004 / 0.1 must not drop a unit, and a
# request that fits exactly must not be refused for 1e-16 s.
EPSILON = 1e-9


class RateSpec(NamedTuple):
    """The parameters of one rate limit, in the units the stores work with.

    ``interval`` is seconds per unit (``per / rate``); ``burst`` units are allowed at once
    when the bucket is full.
    """

    interval: float
    burst: int


Source = Literal["store", "local", "fail_open", "fail_closed"]


class Decision(NamedTuple):
    """The answer of a rate limiter for one request (an immutable named tuple).

    Attributes:
        allowed: whether the request may go ahead.
        limit: the burst size (units allowed at once when idle).
        remaining: unit-cost requests that would be admitted right now after this one.
        retry_after: when refused, seconds until this request (with its cost) would be
            admitted; ``0.0`` when allowed.
        reset_after: seconds until the bucket is full again (no request counts any more).
        wait: seconds the caller must wait before going ahead: ``0.0`` except for an
            ``acquire`` that reserved a future slot (the limiter sleeps it for you).
        source: who decided: ``"store"`` (the configured store), ``"local"`` (the
            in-process fallback), ``"fail_open"`` / ``"fail_closed"`` (the store failed and
            ``on_store_error`` decided).

    A named tuple rather than a dataclass because a decision is made on every request:
    building one costs a fifth of what a frozen dataclass costs.

    Example::

        d = await limiter.try_acquire(user_id)
        if not d.allowed:
            raise HTTPException(429, headers={"Retry-After": str(math.ceil(d.retry_after))})
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    wait: float = 0.0
    source: Source = "store"


_new = tuple.__new__


def make(
    allowed: bool,
    limit: int,
    remaining: int,
    retry_after: float,
    reset_after: float,
    wait: float = 0.0,
    source: Source = "store",
) -> Decision:
    """Build a Decision without the NamedTuple's Python-level ``__new__`` (hot paths)."""
    return _new(Decision, (allowed, limit, remaining, retry_after, reset_after, wait, source))
