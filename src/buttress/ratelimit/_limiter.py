"""RateLimiter: an exact GCRA limit per key, in memory or shared through a store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from .. import _validate as v
from .._backoff import Backoff
from .._breaker import CircuitBreaker
from .._clock import Clock, resolve
from .._deadline import get_current
from .._errors import (
    CircuitOpenError,
    DeadlineExceededError,
    RateLimitedError,
    StoreError,
    TimeoutError,
)
from .._events import GLOBAL_LISTENERS, CallRejected, Listener, StoreFellBack, emit
from .._policy import AsyncLink, Policy, SyncLink, next_index, pipeline
from .._timeout import Timeout
from ..stores._memory import MemoryStore
from ..stores._protocol import Store
from ._gcra import Decision, RateSpec, make

__all__ = ["RateLimiter", "RateLimiterStats"]

_MAX_KEY = 100  # longer user-supplied key parts are replaced by their hash
_STORE_FAILURES = (StoreError, CircuitOpenError, TimeoutError)


def _bounded(part: str) -> str:
    if len(part) <= _MAX_KEY:
        return part
    return "#" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    """A snapshot of a :class:`RateLimiter`: decisions since construction, how many were
    refused, and how many the store could not take (decided by ``on_store_error``)."""

    name: str
    rate: float
    per: float
    burst: int
    decisions: int
    refused: int
    fell_back: int


class RateLimiter(Policy):
    """An exact rate limit per key: ``rate`` units per ``per`` seconds, ``burst`` at once.

    The algorithm is GCRA (the generic cell rate algorithm, as in ATM networks and
    redis-cell): each key stores one number, and over any window of ``W`` seconds at most
    ``W * rate / per + burst`` units are admitted — no fixed-window edges where twice the
    rate slips through, no per-request log to keep.

    **Asking.** ``await try_acquire(key, cost=1)`` / ``try_acquire_sync`` answer at once
    with a :class:`Decision` (allowed, remaining, retry_after, reset_after). ``await
    acquire(key, cost=1, max_wait=...)`` / ``acquire_sync`` wait up to ``max_wait`` (default:
    the limiter's, clamped to the enclosing deadline) for a slot — reserving it in the store,
    so waiters are served in order — and raise :class:`~buttress.RateLimitedError` with
    ``retry_after`` when it cannot be had in time. As a **policy** (``call``, ``call_sync``,
    decorator, pipeline) it does ``acquire(key)`` before each call, where ``key`` is a fixed
    string or a function of the call's arguments.

    **Stores.** The default :class:`~buttress.MemoryStore` limits this process, on the
    injected clock. A :class:`~buttress.RedisStore` shares the limit between every process
    using the same Redis and limiter ``name`` (required then), on the Redis server's clock.
    When the shared store fails (down, slow beyond ``store_timeout``, garbage replies),
    ``on_store_error`` decides: ``"fail_open"`` (default) admits, ``"fail_closed"`` refuses,
    ``"local"`` falls back to an in-process limit with the same parameters (per process,
    so the fleet-wide rate is multiplied by the number of processes). Each such decision
    emits :class:`~buttress.events.StoreFellBack`. After store failures the store is skipped
    for a short, growing time (an internal circuit breaker) and then tried again, so
    recovery is automatic and a dead Redis does not add a timeout to every request.

    Args:
        rate: units per ``per``, ``> 0``.
        per: the period in seconds (or ``timedelta``), ``> 0``. Default 1.
        burst: units allowed at once when idle, ``>= 1``. Default 1.
        store: a :class:`~buttress.Store`. Default: a private :class:`MemoryStore`.
        key: for the policy form: a fixed key, or a function called with the call's
            arguments that returns the key. Default ``"default"``.
        max_wait: for ``acquire`` and the policy form, the longest wait for a slot,
            seconds, ``>= 0``. Default 0 (refuse at once).
        on_store_error: ``"fail_open"`` (default), ``"fail_closed"`` or ``"local"``.
        store_timeout: the longest an async call waits for a shared store, seconds,
            ``> 0``, on the real clock. Default 0.25. (Sync calls: set the client's
            ``socket_timeout``.)
        store_breaker: the :class:`~buttress.CircuitBreaker` that skips a failing shared
            store; ``"default"``: open after 2 consecutive store failures, for 0.5 s
            doubling to 5 s while it keeps failing; ``None``: always try the store.
        clock: the clock (also the MemoryStore's time). Default: the system clock.
        name: the limiter's name; part of the store key, so it must be the same in every
            process sharing the limit. Required with a shared store. Default
            ``"ratelimiter-N"``.
        listeners: event listeners (:class:`~buttress.events.CallRejected`,
            :class:`~buttress.events.StoreFellBack`).

    Raises:
        ConfigError: an option is out of range, or a shared store is given without
            ``name``; at call time, an empty key or a ``cost`` outside ``[1, burst]``.
        RateLimitedError: (policy form and ``acquire``) no slot within the wait allowed.

    Example::

        per_user = bt.RateLimiter(rate=10, per=1.0, burst=20)

        async def handle(user_id: str) -> Response:
            decision = await per_user.try_acquire(user_id)
            if not decision.allowed:
                return Response(429, headers={"Retry-After": f"{decision.retry_after:.0f}"})
            ...

        @bt.RateLimiter(rate=5, per=1.0, max_wait=2.0)    # smooth calls to a fragile API
        async def call_partner(payload: dict[str, object]) -> None: ...
    """

    def __init__(
        self,
        *,
        rate: float,
        per: float | timedelta = 1.0,
        burst: int = 1,
        store: Store | None = None,
        key: str | Callable[..., str] = "default",
        max_wait: float | timedelta = 0.0,
        on_store_error: Literal["fail_open", "fail_closed", "local"] = "fail_open",
        store_timeout: float | timedelta = 0.25,
        store_breaker: CircuitBreaker | Literal["default"] | None = "default",
        clock: Clock | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self.rate = v.number("rate", rate, low=0.0, low_open=True)
        self.per = v.seconds("per", per, allow_zero=False)
        self.burst = v.integer("burst", burst, minimum=1)
        self.spec = RateSpec(self.per / self.rate, self.burst)
        if store is None:
            store = MemoryStore()
        elif not isinstance(store, Store):
            raise v.fail("store", "a buttress Store (MemoryStore, RedisStore) or None", store)
        if store.shared and name is None:
            raise v.fail(
                "name",
                "set when the store is shared: every process must address the same limit",
                name,
            )
        self.store = store
        if isinstance(key, str):
            self._check_key(key)
        elif not callable(key):
            raise v.fail("key", "a non-empty str or a function returning one", key)
        self.key = key
        self.max_wait = v.seconds("max_wait", max_wait)
        self.on_store_error = v.choice(
            "on_store_error", on_store_error, ("fail_open", "fail_closed", "local")
        )
        self.store_timeout = v.seconds("store_timeout", store_timeout, allow_zero=False)
        self.clock = resolve(clock)
        self._now = self.clock.monotonic
        self.name = v.name_of(name, "ratelimiter", lambda: next_index("ratelimiter"))
        self._listeners = v.listeners(listeners)
        # Keys are namespaced by the limiter's name: limiters of one name on one store share
        # buckets, others never do. In Redis the namespace is a key prefix; a MemoryStore
        # gives the limiter its own table for it, bound here once, so a decision needs no
        # string concatenation (which costs a sixth of a local decision).
        namespace = f"rl:{_bounded(self.name)}"
        self._local_step: Callable[[str, RateSpec, int, float, float], Decision]
        if isinstance(store, MemoryStore):
            self._prefix = ""
            self._local_step = store.namespace(namespace).acquire_sync
        else:
            self._prefix = namespace + ":"
            self._local_step = store.acquire_sync
        self._shared = bool(store.shared)
        self._local = MemoryStore() if self.on_store_error == "local" else None
        # A shared store is reached through a breaker (skip it for a while after it fails,
        # then probe) and, for async calls, a timeout. Both bound real network I/O, so they
        # run on the real clock whatever ``clock`` is (a fake clock that jumps while a
        # socket read is pending would fire the timeout for nothing).
        if store_breaker == "default":
            store_breaker = CircuitBreaker(
                consecutive_failures=2,
                open_for=Backoff.exponential(base=0.5, cap=5.0, jitter="none"),
                record_on=(StoreError, TimeoutError),
                name=f"{self.name}.store",
            )
        elif store_breaker is not None and not isinstance(store_breaker, CircuitBreaker):
            raise v.fail("store_breaker", "a CircuitBreaker, None or 'default'", store_breaker)
        self.store_breaker = store_breaker
        guards: list[Policy] = [] if store_breaker is None else [store_breaker]
        self._guarded_async = pipeline(*guards, Timeout(self.store_timeout))
        self._guarded_sync = pipeline(*guards)
        self._decisions = 0
        self._refused = 0
        self._fell_back = 0
        self._link()

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self.rate!r}, per={self.per!r}, burst={self.burst}, "
            f"store={self.store!r}, name={self.name!r})"
        )

    def stats(self) -> RateLimiterStats:
        """Counters since construction."""
        return RateLimiterStats(
            self.name,
            self.rate,
            self.per,
            self.burst,
            self._decisions,
            self._refused,
            self._fell_back,
        )

    # -- validation of per-call arguments --------------------------------------------------

    @staticmethod
    def _check_key(key: object) -> str:
        if not isinstance(key, str) or not key:
            raise v.fail("key", "a non-empty str", key)
        return key

    def _check_cost(self, cost: object) -> int:
        if not isinstance(cost, int) or isinstance(cost, bool) or cost < 1 or cost > self.burst:
            # A cost above burst could never be admitted: say so instead of refusing forever.
            raise v.fail("cost", f"an int in [1, burst={self.burst}]", cost)
        return cost

    def _store_key(self, key: object) -> str:
        if not isinstance(key, str) or not key:
            raise v.fail("key", "a non-empty str", key)
        return self._prefix + (key if len(key) <= _MAX_KEY else _bounded(key))

    # -- the decision ------------------------------------------------------------------------

    def _count(self, decision: Decision) -> Decision:
        self._decisions += 1
        if not decision.allowed:
            self._refused += 1
        return decision

    def _fallback(
        self, key: str, cost: int, max_wait: float, now: float, error: BaseException
    ) -> Decision:
        mode = self.on_store_error
        self._fell_back += 1
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, StoreFellBack(self.name, mode, error))
        if mode == "local":
            assert self._local is not None
            decision = self._local.acquire_sync(key, self.spec, cost, max_wait, now)
            return decision._replace(source="local")
        if mode == "fail_open":
            return make(True, self.burst, self.burst - cost, 0.0, 0.0, 0.0, "fail_open")
        # While the store's breaker is open its retry_after says when it will be tried again.
        hint = getattr(error, "retry_after", None)
        retry_after = hint if isinstance(hint, float) else self.spec.interval * cost
        return make(False, self.burst, 0, retry_after, 0.0, 0.0, "fail_closed")

    async def try_acquire(self, key: str, cost: int = 1, _max_wait: float = 0.0) -> Decision:
        """Take ``cost`` units for ``key`` now, or say no; never waits.

        Raises:
            ConfigError: ``key`` is empty or not a str; ``cost`` is outside ``[1, burst]``.
        """
        # (``_max_wait`` is for acquire(), which reserves a future slot; one method, not a
        # helper behind it, because a Python call costs as much as the decision here.)
        max_wait = _max_wait
        # The common case inline (a short str key, a valid cost): this runs per request.
        if key.__class__ is str and 0 < len(key) <= _MAX_KEY:
            prefix = self._prefix
            store_key = prefix + key if prefix else key
        else:
            store_key = self._store_key(key)
        # cost=1 exits after two cheap tests (a bool is not an int here, so True is refused).
        if cost.__class__ is not int or (cost != 1 and not 1 <= cost <= self.burst):
            self._check_cost(cost)  # raises with the standard message
        now = self._now()
        if self._shared:
            try:
                decision = await self._guarded_async.call(
                    self.store.acquire, store_key, self.spec, cost, max_wait, now
                )
            except DeadlineExceededError:
                raise  # the caller's own budget ran out, not the store
            except _STORE_FAILURES as exc:
                decision = self._fallback(store_key, cost, max_wait, now, exc)
        else:
            decision = self._local_step(store_key, self.spec, cost, max_wait, now)
        self._decisions += 1
        if not decision[0]:
            self._refused += 1
        return decision

    def try_acquire_sync(self, key: str, cost: int = 1, _max_wait: float = 0.0) -> Decision:
        """The sync form of :meth:`try_acquire`."""
        max_wait = _max_wait
        if key.__class__ is str and 0 < len(key) <= _MAX_KEY:
            prefix = self._prefix
            store_key = prefix + key if prefix else key
        else:
            store_key = self._store_key(key)
        # cost=1 exits after two cheap tests (a bool is not an int here, so True is refused).
        if cost.__class__ is not int or (cost != 1 and not 1 <= cost <= self.burst):
            self._check_cost(cost)  # raises with the standard message
        now = self._now()
        if self._shared:
            try:
                decision = self._guarded_sync.call_sync(
                    self.store.acquire_sync, store_key, self.spec, cost, max_wait, now
                )
            except DeadlineExceededError:
                raise
            except _STORE_FAILURES as exc:
                decision = self._fallback(store_key, cost, max_wait, now, exc)
        else:
            decision = self._local_step(store_key, self.spec, cost, max_wait, now)
        self._decisions += 1
        if not decision[0]:
            self._refused += 1
        return decision

    def _wait_budget(self, max_wait: float | timedelta | None) -> float:
        budget = self.max_wait if max_wait is None else v.seconds("max_wait", max_wait)
        current = get_current()
        if current is not None:
            left = current[0] - current[1].monotonic()
            if left < budget:
                budget = left if left > 0.0 else 0.0
        return budget

    def _refusal(self, decision: Decision) -> RateLimitedError:
        if self._listeners or GLOBAL_LISTENERS:
            emit(self._listeners, CallRejected(self.name, "ratelimit", decision.retry_after))
        return RateLimitedError._lazy(
            self.name,
            decision.retry_after,
            "rate limit %r exceeded; retry after %.3f s",
            (self.name, decision.retry_after),
        )

    # -- the public API ----------------------------------------------------------------------

    async def acquire(
        self, key: str, cost: int = 1, *, max_wait: float | timedelta | None = None
    ) -> Decision:
        """Take ``cost`` units for ``key``, waiting up to ``max_wait`` seconds for them.

        ``max_wait`` defaults to the limiter's and is clamped to the enclosing deadline. The
        slot is reserved in the store before the wait, so waiters are served in arrival
        order; a waiter cancelled while sleeping leaves its slot unused.

        Raises:
            RateLimitedError: the units cannot be had within the wait allowed
                (``retry_after`` says when they could).
            ConfigError: bad ``key``, ``cost`` or ``max_wait``.
        """
        decision = await self.try_acquire(key, cost, self._wait_budget(max_wait))
        if not decision.allowed:
            raise self._refusal(decision)
        if decision.wait > 0.0:
            await self.clock.sleep(decision.wait)
        return decision

    def acquire_sync(
        self, key: str, cost: int = 1, *, max_wait: float | timedelta | None = None
    ) -> Decision:
        """The sync form of :meth:`acquire` (it blocks the thread while it waits)."""
        decision = self.try_acquire_sync(key, cost, self._wait_budget(max_wait))
        if not decision.allowed:
            raise self._refusal(decision)
        if decision.wait > 0.0:
            self.clock.sleep_sync(decision.wait)
        return decision

    async def acquire_many(self, requests: Sequence[tuple[str, int]]) -> list[Decision]:
        """Decide for many ``(key, cost)`` pairs in one store round trip (never waits).

        For batch jobs and gateways checking several limits at once; with a RedisStore it
        is one pipelined round trip instead of one per key.

        Raises:
            ConfigError: a bad key or cost (checked before anything is taken).
        """
        prepared = [(self._store_key(k), self._check_cost(c)) for k, c in requests]
        now = self.clock.monotonic()
        if not self._shared:
            step = self._local_step
            decisions = [step(key, self.spec, cost, 0.0, now) for key, cost in prepared]
        else:
            try:
                decisions = await self._guarded_async.call(
                    self.store.acquire_many, prepared, self.spec, now
                )
            except DeadlineExceededError:
                raise
            except _STORE_FAILURES as exc:
                decisions = [self._fallback(k, c, 0.0, now, exc) for k, c in prepared]
        return [self._count(d) for d in decisions]

    def acquire_many_sync(self, requests: Sequence[tuple[str, int]]) -> list[Decision]:
        """The sync form of :meth:`acquire_many`."""
        prepared = [(self._store_key(k), self._check_cost(c)) for k, c in requests]
        now = self.clock.monotonic()
        if not self._shared:
            step = self._local_step
            decisions = [step(key, self.spec, cost, 0.0, now) for key, cost in prepared]
        else:
            try:
                decisions = self._guarded_sync.call_sync(
                    self.store.acquire_many_sync, prepared, self.spec, now
                )
            except DeadlineExceededError:
                raise
            except _STORE_FAILURES as exc:
                decisions = [self._fallback(k, c, 0.0, now, exc) for k, c in prepared]
        return [self._count(d) for d in decisions]

    # -- runners -----------------------------------------------------------------------------

    def _async_link(self, inner: AsyncLink | None) -> AsyncLink:
        fixed = self.key if isinstance(self.key, str) else None
        keyfn = self.key
        acquire = self.acquire

        async def run(fn: Any, args: Any, kwargs: Any) -> Any:
            await acquire(fixed if fixed is not None else keyfn(*args, **kwargs))  # type: ignore[operator]
            return await (fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs))

        return run

    def _sync_link(self, inner: SyncLink | None) -> SyncLink:
        fixed = self.key if isinstance(self.key, str) else None
        keyfn = self.key
        acquire = self.acquire_sync

        def run(fn: Any, args: Any, kwargs: Any) -> Any:
            acquire(fixed if fixed is not None else keyfn(*args, **kwargs))  # type: ignore[operator]
            return fn(*args, **kwargs) if inner is None else inner(fn, args, kwargs)

        return run
