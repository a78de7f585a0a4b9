"""MemoryStore: the in-process store, the default of every store-backed pattern."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..ratelimit._gcra import EPSILON, Decision, RateSpec

__all__ = ["Buckets", "MemoryStore"]

_FIRST_SWEEP = 1024


class Buckets:
    """One namespace of a :class:`MemoryStore`: rate-limit buckets under one lock.

    Not built directly: :meth:`MemoryStore.namespace` hands out one per name (the same
    object for the same name). A RateLimiter on a MemoryStore binds its namespace once,
    so a decision needs no key concatenation.
    """

    __slots__ = ("_lock", "_sweep_at", "_tats")

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sweep_at = _FIRST_SWEEP

    def __len__(self) -> int:
        return len(self._tats)

    def acquire_sync(
        self,
        key: str,
        spec: RateSpec,
        cost: int,
        max_wait: float,
        now: float,
        _new: Callable[..., Any] = tuple.__new__,
        _decision: type[Decision] = Decision,
        _eps: float = EPSILON,
    ) -> Decision:
        """One GCRA step on ``key`` under the store's lock (see ``ratelimit/_gcra.py``).

        The step is inline, not a helper call: it runs on every request, and on CPython a
        call with its arguments costs as much as the arithmetic. (The trailing parameters
        bind constants as fast locals; do not pass them.)
        """
        interval, burst = spec
        lock = self._lock
        lock.acquire()  # not `with`: on 3.11 the context protocol costs twice as much
        try:
            tats = self._tats
            tat = tats.get(key)
            if tat is None or tat <= now:
                if cost <= burst:
                    # An idle bucket (the common case) admits at once with exact integers:
                    # the general formula below gives the same, at twice the cost.
                    ahead = cost * interval
                    tats[key] = now + ahead
                    if tat is None and len(tats) >= self._sweep_at:  # only a new key grows
                        self._sweep(now)
                    return _new(  # type: ignore[no-any-return]
                        _decision, (True, burst, burst - cost, 0.0, ahead, 0.0, "store")
                    )
                behind = 0.0  # exactly: an idle bucket has no rounding error to carry
                base = now
            else:
                behind = tat - now
                base = tat
            # How far the new TAT would pass the bucket's capacity; > 0: it does not fit now.
            excess = behind + (cost - burst) * interval
            if excess <= max_wait + _eps:
                tats[key] = base + cost * interval
                if tat is None and len(tats) >= self._sweep_at:  # only a new key grows it
                    self._sweep(now)
                ahead = behind + cost * interval
                remaining = int(burst - ahead / interval + _eps)  # int() floors (> 0)
                return _new(  # type: ignore[no-any-return]
                    _decision,
                    (
                        True,
                        burst,
                        remaining if remaining > 0 else 0,
                        0.0,
                        ahead,
                        excess if excess > 0.0 else 0.0,
                        "store",
                    ),
                )
        finally:
            lock.release()
        remaining = int(burst - behind / interval + _eps)
        return _new(  # type: ignore[no-any-return]
            _decision,
            (False, burst, remaining if remaining > 0 else 0, excess, behind, 0.0, "store"),
        )

    def _sweep(self, now: float) -> None:
        # Caller holds the lock. A TAT in the past is a full bucket: forget it.
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._tats))


class MemoryStore:
    """State in this process: dicts under locks. Fast, exact, and not shared.

    Rate-limit buckets that are full again (their TAT has passed) hold no information, so
    they are dropped in sweeps that run when the number of keys has doubled since the
    last one: memory stays proportional to the keys active within one bucket period, and
    the cost per operation stays O(1) amortised.

    Keys live in namespaces (:meth:`namespace`): a RateLimiter uses ``"rl:<its name>"``,
    so limiters of different names never share a bucket and limiters of the same name on
    the same store share all of them, as they would in Redis. The protocol methods
    (:meth:`acquire`, ...) work on the default namespace ``""``.

    Time is the caller's clock (``now``): with a :class:`~buttress.testing.FakeClock`
    everything is deterministic.

    Example::

        store = bt.MemoryStore()
        per_user = bt.RateLimiter(rate=10, per=1.0, burst=20, store=store, name="user")
        per_ip = bt.RateLimiter(rate=100, store=store, name="ip")   # one store, two limits
    """

    shared = False

    def __init__(self) -> None:
        self._namespaces: dict[str, Buckets] = {}
        self._namespaces_lock = threading.Lock()
        self._default = self.namespace("")

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self)})"

    def __len__(self) -> int:
        """Keys currently stored in all namespaces (full buckets may linger until a sweep)."""
        return sum(len(buckets) for buckets in list(self._namespaces.values()))

    def namespace(self, name: str) -> Buckets:
        """The buckets of namespace ``name`` (created on first use; the same object after)."""
        with self._namespaces_lock:
            buckets = self._namespaces.get(name)
            if buckets is None:
                buckets = self._namespaces[name] = Buckets()
            return buckets

    def acquire_sync(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """One GCRA step on ``key`` in the default namespace."""
        return self._default.acquire_sync(key, spec, cost, max_wait, now)

    async def acquire(
        self, key: str, spec: RateSpec, cost: int, max_wait: float, now: float
    ) -> Decision:
        """Same as :meth:`acquire_sync` (no I/O to wait for)."""
        return self._default.acquire_sync(key, spec, cost, max_wait, now)

    def acquire_many_sync(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """One GCRA step per ``(key, cost)``, in order (each atomic on its own key)."""
        step = self._default.acquire_sync
        return [step(key, spec, cost, 0.0, now) for key, cost in requests]

    async def acquire_many(
        self, requests: Sequence[tuple[str, int]], spec: RateSpec, now: float
    ) -> list[Decision]:
        """Same as :meth:`acquire_many_sync`."""
        return self.acquire_many_sync(requests, spec, now)
