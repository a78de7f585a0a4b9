"""The client-side load balancer: strategies, outlier ejection, health, panic, failover."""

from __future__ import annotations

import asyncio
import math
import random as _random
import threading
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from .. import _validate as v
from .._clock import Clock, resolve
from .._errors import DeadlineExceededError, RejectedError
from .._events import GLOBAL_LISTENERS, Event, Listener, emit
from .._policy import next_index
from ._endpoint import Endpoint
from ._errors import NoHealthyEndpointError
from ._events import (
    EndpointEjected,
    EndpointHealthChanged,
    EndpointRestored,
    PanicEntered,
    PanicExited,
    PriorityLoadChanged,
)
from ._health import HealthCheck, HealthStatus
from ._outlier import OutlierDetection

__all__ = [
    "STRATEGIES",
    "Balancer",
    "BalancerStats",
    "EndpointStats",
    "KeyHasher",
    "Pick",
]

P = ParamSpec("P")
R = TypeVar("R")

STRATEGIES = ("p2c_ewma", "p2c_least_requests", "round_robin", "random", "hash")
"""The strategy names :class:`Balancer` accepts."""

# Outcomes of one request, as recorded.
SUCCESS, FAILURE, REJECTED, IGNORED = 0, 1, 2, 3
_OUTCOMES = {"success": SUCCESS, "failure": FAILURE, "rejected": REJECTED, "ignored": IGNORED}

# Finagle's cost for an endpoint with requests out but no latency measured yet: large, so
# a fresh endpoint is not flooded before its first answer says how fast it is.
_UNKNOWN_COST = 1e9

_DEFAULT_OUTLIER = OutlierDetection()


@runtime_checkable
class KeyHasher(Protocol):
    """What the ``"hash"`` strategy needs: a consistent hash over endpoint addresses.

    ``buttress.hashing``'s ``Rendezvous``, ``HashRing``, ``Maglev``... all fit; so does
    any object with these two methods.

    Example::

        from buttress.hashing import HashRing

        bt.Balancer(addrs, strategy="hash", hasher=lambda addresses: HashRing(addresses))
    """

    def node_for(self, key: Any) -> Any:
        """The address ``key`` maps to."""
        ...

    def nodes_for(self, key: Any, n: int) -> Sequence[Any]:
        """The first ``n`` distinct addresses for ``key``, in preference order."""
        ...


class _State:
    """Per-endpoint mutable state; touched only under the balancer's lock."""

    __slots__ = (
        "address",
        "consecutive",
        "cost",
        "ejected",
        "ejected_until",
        "ejections",
        "endpoint",
        "failures",
        "hc_fail",
        "hc_ok",
        "healthy",
        "in_flight",
        "inv_weight",
        "multiplier",
        "rejections",
        "requests",
        "rr_current",
        "sr_ok",
        "sr_total",
        "stamp",
        "weight",
    )

    def __init__(self, endpoint: Endpoint, healthy: bool, now: float) -> None:
        self.endpoint = endpoint
        self.address = endpoint.address
        self.weight = endpoint.weight
        self.inv_weight = 1.0 / endpoint.weight if endpoint.weight > 0 else math.inf
        self.in_flight = 0
        self.cost = 0.0  # peak-EWMA latency, seconds, as of ``stamp``
        self.stamp = now
        self.requests = self.failures = self.rejections = 0
        self.consecutive = 0
        self.ejected = False
        self.ejected_until = -math.inf
        self.ejections = 0  # total, for stats
        self.multiplier = 0  # Envoy's ejection multiplier: grows on ejection, decays
        self.sr_ok = self.sr_total = 0  # success-rate counters of the current interval
        self.healthy = healthy  # active health checks' verdict
        self.hc_ok = self.hc_fail = 0
        self.rr_current = 0.0


class _Pool:
    """The endpoints one pick may choose among, with what the strategies precompute."""

    __slots__ = ("cum", "n", "states", "total", "uniform")

    def __init__(self, states: Sequence[_State]) -> None:
        self.states = tuple(states)
        self.n = len(self.states)
        weights = [s.weight for s in self.states]
        self.uniform = len(set(weights)) <= 1
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """A snapshot of one endpoint in a :class:`Balancer`.

    ``available`` is whether a pick may choose it right now (healthy, not ejected,
    weight > 0); ``latency`` is its peak-EWMA latency estimate in seconds (decayed to
    now); ``ejected_for`` the seconds left of its ejection (0 when not ejected).
    """

    address: str
    weight: float
    priority: int
    available: bool
    healthy: bool
    ejected: bool
    ejected_for: float
    ejections: int
    in_flight: int
    requests: int
    failures: int
    rejections: int
    consecutive_failures: int
    latency: float


@dataclass(frozen=True, slots=True)
class BalancerStats:
    """A snapshot of a :class:`Balancer`: its endpoints, whether it is in panic, and the
    share of traffic each priority group gets (``(priority, share)`` pairs).

    Example::

        stats = balancer.stats()
        print(stats.available, "of", len(stats.endpoints), "endpoints available")
    """

    name: str
    strategy: str
    endpoints: tuple[EndpointStats, ...]
    panic: bool
    loads: tuple[tuple[int, float], ...]

    @property
    def available(self) -> int:
        """How many endpoints a pick may choose right now."""
        return sum(1 for e in self.endpoints if e.available)


class Pick:
    """One request's hold on an endpoint; made by :meth:`Balancer.pick`.

    Entering it (``with`` or ``async with``) chooses an endpoint, counts the request as
    in flight and returns the :class:`~buttress.Endpoint`; leaving it records the latency
    and the outcome. The outcome is read from the exception leaving the block (see
    :class:`Balancer`), unless set explicitly inside the block with :meth:`fail`,
    :meth:`reject`, :meth:`succeed` or :meth:`ignore` — for answers that are failures
    without raising, such as an HTTP 503.

    Args:
        balancer: the balancer to pick from.
        key: the affinity key for the ``"hash"`` strategy, or ``None``.

    Raises:
        NoHealthyEndpointError: (on entering) no endpoint may take the request.
        RuntimeError: the pick is entered a second time.

    Example::

        pick = balancer.pick()
        async with pick as ep:
            response = await client.get(f"http://{ep.address}/items")
            if response.status_code >= 500:
                pick.fail()
    """

    __slots__ = ("_balancer", "_key", "_outcome", "_started", "_state", "endpoint")

    def __init__(self, balancer: Balancer, key: Any = None) -> None:
        self._balancer = balancer
        self._key = key
        self._outcome = -1
        self._state: _State | None = None
        self.endpoint: Endpoint | None = None
        """The chosen endpoint, once entered."""

    def fail(self) -> None:
        """Record this request as a failure (it counts towards ejection)."""
        self._outcome = FAILURE

    def reject(self) -> None:
        """Record this request as rejected by the endpoint (a fast 429): no ejection,
        but the latency cost is raised to the balancer's ``failure_penalty``."""
        self._outcome = REJECTED

    def succeed(self) -> None:
        """Record this request as a success, whatever leaves the block."""
        self._outcome = SUCCESS

    def ignore(self) -> None:
        """Record nothing but the end of the request (it is no longer in flight)."""
        self._outcome = IGNORED

    def __enter__(self) -> Endpoint:
        if self._state is not None:
            raise RuntimeError("a Pick can be entered once; call balancer.pick() per request")
        state, self._started = self._balancer._acquire(self._key)
        self._state = state
        self.endpoint = endpoint = state.endpoint
        return endpoint

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        state = self._state
        if state is None:
            return
        outcome = self._outcome
        if outcome < 0:
            outcome = SUCCESS if exc is None else self._balancer._classify(exc)
        self._balancer._finish(state, self._started, outcome)

    async def __aenter__(self) -> Endpoint:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Balancer:
    """Spread requests over endpoints; keep them away from slow, failing and dead ones.

    **Strategies** (``strategy=``):

    * ``"p2c_ewma"`` (default) — power of two choices over *peak EWMA* latency, as in
      Finagle and Linkerd: draw two endpoints (by weight), send to the one with the lower
      ``latency * (in_flight + 1) / weight``. The latency estimate jumps up to any slower
      sample at once and decays towards new samples (and, while idle, towards zero) with
      time constant ``decay``, so a slow endpoint is shunned quickly and probed again later.
    * ``"p2c_least_requests"`` — two choices over ``(in_flight + 1) / weight``.
    * ``"round_robin"`` — smooth weighted round robin (nginx): exact proportions, evenly
      interleaved.
    * ``"random"`` — a weighted random draw.
    * ``"hash"`` — key affinity: ``pick(key=...)`` goes to ``hasher.node_for(key)``, or
      to the next of ``hasher.nodes_for(key, n)`` that is available.

    **Outcomes.** Each request is tracked from :meth:`pick` (or :meth:`call`) to its end:
    in-flight count and latency. An exception leaving the block is an outcome: one in
    ``ignore_on`` (default: the caller's own :class:`~buttress.DeadlineExceededError`),
    cancellation and other ``BaseException`` record nothing but the end; one in
    ``reject_on`` (default :class:`~buttress.RejectedError`: the endpoint, or a policy
    for it, refused fast) is a *rejection*; one in ``failure_on`` (default any
    ``Exception``) a *failure*; any other exception, or none, a success. Failures and
    rejections are recorded with a latency of at least ``failure_penalty``, so an
    endpoint that fails fast (a 429, a refused connection) looks slow, not attractive.
    An endpoint back from an ejection (or from unhealthy) starts with no estimate, as a
    new endpoint does.

    **Passive health.** ``outlier=`` (:class:`~buttress.OutlierDetection`, on by default)
    ejects endpoints with consecutive failures or an outlying success rate, for a time
    growing with repeated ejections, never more than a maximum share at once.

    **Active health.** ``health_check=`` (:class:`~buttress.HealthCheck`) probes every
    endpoint in the background while the balancer is started (``async with balancer:``).

    **Priority groups and failover.** Endpoints carry a ``priority`` (0 first). As in
    Envoy, a group's *health* is ``min(1, overprovisioning * healthy/total)``; the first
    group takes that share of traffic and the rest spills to the next groups. The
    overprovisioning factor (default 1.4) is a dead band: losing a few endpoints of a
    group (up to 1 - 1/1.4 ≈ 29 %) moves no traffic. ``failback_after`` adds hysteresis
    in time: a drop in health moves traffic at once, a rise only once it has held that
    long, so a flapping group does not pull traffic back and forth.

    **Panic.** When the summed health of all groups falls below ``panic_threshold``
    (default 0.5), the balancer stops trusting health: with ``on_panic="all"`` it spreads
    load over every endpoint of weight > 0 (ejected and unhealthy ones included) rather
    than crush the few survivors; with ``"fail"`` it raises
    :class:`~buttress.NoHealthyEndpointError`. ``panic_threshold=0`` disables panic: with
    no endpoint available every pick fails.

    **Concurrency.** Thread-safe and task-safe; one short lock per pick and per
    completion, never held across the request or a listener.

    Args:
        endpoints: addresses (``"host:port"``, ``"http://host:port"``) or
            :class:`~buttress.Endpoint` objects; at least one, addresses unique.
        strategy: one of :data:`STRATEGIES`. Default ``"p2c_ewma"``.
        outlier: outlier detection options, or ``None`` to disable. Default
            ``OutlierDetection()``.
        health_check: active health checking, or ``None`` (default).
        panic_threshold: healthy share below which the balancer panics, ``[0, 1]``.
            Default 0.5.
        on_panic: ``"all"`` (default) or ``"fail"``.
        overprovisioning: the priority-group factor, ``>= 1``. Default 1.4.
        failback_after: seconds a group's (and the total's) health must hold, from when
            the balancer sees it rise (at a pick, a completion, a check or ``stats()``),
            before the rise counts: traffic fails over at once but fails back only then.
            ``>= 0``. Default 0 (at once, as Envoy).
        decay: the EWMA time constant, seconds ``> 0``. Default 10.
        failure_penalty: the least latency recorded for a failure or rejection, seconds
            ``>= 0``. Default 1.
        hasher: for ``"hash"``: a :class:`KeyHasher` over the endpoint addresses, or a
            callable building one from the list of addresses (``HashRing``, ``Maglev``...
            from :mod:`buttress.hashing`). Default: ``buttress.hashing.Rendezvous``
            weighted by the endpoints' weights.
        failure_on: exceptions that are failures. Default ``(Exception,)``.
        reject_on: exceptions that are rejections. Default ``(RejectedError,)``.
        ignore_on: exceptions that record nothing. Default ``(DeadlineExceededError,)``.
        clock: the clock. Default: the system clock.
        random: the ``random.Random`` for draws. Default: a fresh one.
        name: for events and stats. Default ``"balancer-N"``.
        listeners: event listeners (:class:`~buttress.events.EndpointEjected`, ...).

    Raises:
        ConfigError: no endpoints, a duplicate address, a negative weight, an unknown
            strategy, an option out of range.
        NoHealthyEndpointError: (at pick time) no endpoint may take the request.

    Example::

        balancer = bt.Balancer(["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"])
        async with balancer.pick() as ep:
            response = await client.get(f"http://{ep.address}/users/42")
        # or: response = await balancer.call(lambda ep: client.get(f"http://{ep.address}/"))
    """

    def __init__(
        self,
        endpoints: Iterable[str | Endpoint],
        strategy: str = "p2c_ewma",
        *,
        outlier: OutlierDetection | None = _DEFAULT_OUTLIER,
        health_check: HealthCheck | None = None,
        panic_threshold: float = 0.5,
        on_panic: str = "all",
        overprovisioning: float = 1.4,
        failback_after: float | timedelta = 0.0,
        decay: float | timedelta = 10.0,
        failure_penalty: float | timedelta = 1.0,
        hasher: KeyHasher | Callable[[list[str]], KeyHasher] | None = None,
        failure_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        reject_on: type[BaseException] | tuple[type[BaseException], ...] = (RejectedError,),
        ignore_on: type[BaseException] | tuple[type[BaseException], ...] = (DeadlineExceededError,),
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if isinstance(endpoints, str | bytes) or not isinstance(endpoints, Iterable):
            raise v.fail("endpoints", "an iterable of addresses or Endpoints", endpoints)
        parsed: list[Endpoint] = []
        seen: set[str] = set()
        for item in endpoints:
            if isinstance(item, str):
                item = Endpoint(item)
            elif not isinstance(item, Endpoint):
                raise v.fail("endpoints", "addresses (str) or Endpoint objects", item)
            if item.address in seen:
                raise v.fail("endpoints", "unique addresses (duplicate endpoint)", item.address)
            seen.add(item.address)
            parsed.append(item)
        if not parsed:
            raise v.fail("endpoints", "at least one endpoint", list(parsed))
        self.endpoints: tuple[Endpoint, ...] = tuple(parsed)
        self.strategy = v.choice("strategy", strategy, STRATEGIES)
        if outlier is not None and not isinstance(outlier, OutlierDetection):
            raise v.fail("outlier", "an OutlierDetection or None", outlier)
        self.outlier = outlier
        if health_check is not None and not isinstance(health_check, HealthCheck):
            raise v.fail("health_check", "a HealthCheck or None", health_check)
        self.health_check = health_check
        self.panic_threshold = v.number("panic_threshold", panic_threshold, low=0.0, high=1.0)
        self.on_panic = v.choice("on_panic", on_panic, ("all", "fail"))
        self.overprovisioning = v.number("overprovisioning", overprovisioning, low=1.0)
        self.failback_after = v.seconds("failback_after", failback_after)
        self.decay = v.seconds("decay", decay, allow_zero=False)
        self.failure_penalty = v.seconds("failure_penalty", failure_penalty)
        self.failure_on = v.exception_types("failure_on", failure_on)
        self.reject_on = v.exception_types("reject_on", reject_on) if reject_on != () else ()
        self.ignore_on = v.exception_types("ignore_on", ignore_on) if ignore_on != () else ()
        self.clock = resolve(clock)
        self.random = v.rng(random)
        self.name = v.name_of(name, "balancer", lambda: next_index("balancer"))
        self._listeners = v.listeners(listeners)
        self.hasher: KeyHasher | None = None
        if self.strategy == "hash":
            self.hasher = _build_hasher(hasher, parsed)
        elif hasher is not None:
            raise v.fail("hasher", "None unless strategy='hash'", hasher)

        now = self.clock.monotonic()
        initially = health_check is None or health_check.initially_healthy
        self._initially = initially
        self._states = tuple(_State(ep, initially, now) for ep in parsed)
        self._regroup()
        self._lock = threading.Lock()
        self._pools: tuple[_Pool, ...] = ()
        self._pool_cum: list[float] = []
        self._single: _Pool | None = None
        self._available: frozenset[str] = frozenset()
        self._panic = False
        self._loads: tuple[tuple[int, float], ...] = ()
        # Per priority group: the health in force, and since when it has been higher.
        self._health: dict[int, float] = {}
        self._rising: dict[int, float] = {}
        self._next_change = -math.inf  # refresh at the first pick
        self._next_eval = now + (outlier.interval if outlier is not None else math.inf)
        self._rr = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._choose = {
            "p2c_ewma": self._p2c_ewma,
            "p2c_least_requests": self._p2c_least,
            "round_robin": self._round_robin,
            "random": self._random_pick,
            "hash": self._random_pick,  # the fallback when no key is given
        }[self.strategy]
        with self._lock:
            self._refresh(now)  # events of the initial state are not news

    def __repr__(self) -> str:
        return (
            f"Balancer({len(self._states)} endpoints, strategy={self.strategy!r}, "
            f"name={self.name!r})"
        )

    def _regroup(self) -> None:
        self._by_address = {s.address: s for s in self._states}
        priorities = sorted({s.endpoint.priority for s in self._states})
        self._groups = tuple(
            (p, tuple(s for s in self._states if s.endpoint.priority == p)) for p in priorities
        )

    # -- membership -------------------------------------------------------------------------

    def add(self, endpoint: str | Endpoint) -> None:
        """Add an endpoint (service discovery found a new replica).

        It starts with no latency estimate, healthy unless the health check says
        ``initially_healthy=False``; if the balancer is started, its health checks start
        too. Thread-safe.

        Raises:
            ConfigError: the address is already there, ``endpoint`` is not an address or
                an :class:`~buttress.Endpoint`, or the ``"hash"`` strategy's hasher has
                no ``add(node, weight)``.

        Example::

            balancer.add(bt.Endpoint("10.0.0.4:8080", weight=2))
        """
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint)
        elif not isinstance(endpoint, Endpoint):
            raise v.fail("endpoint", "an address (str) or an Endpoint", endpoint)
        now = self.clock.monotonic()
        with self._lock:
            if endpoint.address in self._by_address:
                raise v.fail("endpoint", "a new address (duplicate endpoint)", endpoint.address)
            if self.hasher is not None and endpoint.weight > 0:
                add = getattr(self.hasher, "add", None)
                if add is None:
                    raise v.fail("hasher", "a hasher with add(node, weight) to add", self.hasher)
                add(endpoint.address, endpoint.weight)
            state = _State(endpoint, self._initially, now)
            self._states = (*self._states, state)
            self.endpoints = (*self.endpoints, endpoint)
            self._regroup()
            events = self._refresh(now)
        self._emit_all(events)
        loop = self._loop
        if loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self._spawn(state)
            else:
                loop.call_soon_threadsafe(self._spawn, state)

    def remove(self, address: str) -> None:
        """Remove the endpoint at ``address`` (service discovery lost a replica).

        Requests in flight on it finish normally; no new request goes to it; its health
        checks stop. Removing every endpoint is allowed: picks then raise
        :class:`~buttress.NoHealthyEndpointError`. Thread-safe.

        Raises:
            ConfigError: no endpoint has that address, or the ``"hash"`` strategy's
                hasher has no ``remove(node)``.

        Example::

            balancer.remove("10.0.0.4:8080")
        """
        now = self.clock.monotonic()
        with self._lock:
            state = self._by_address.get(address)
            if state is None:
                raise v.fail("address", "the address of an endpoint of this balancer", address)
            if self.hasher is not None and state.weight > 0:
                remove = getattr(self.hasher, "remove", None)
                if remove is None:
                    raise v.fail("hasher", "a hasher with remove(node) to remove", self.hasher)
                remove(address)
            self._states = tuple(s for s in self._states if s is not state)
            self.endpoints = tuple(ep for ep in self.endpoints if ep.address != address)
            self._regroup()
            events = self._refresh(now)
        self._emit_all(events)
        task = self._tasks.pop(address, None)
        loop = self._loop
        if task is not None and loop is not None:
            loop.call_soon_threadsafe(task.cancel)

    # -- picking ----------------------------------------------------------------------------

    def pick(self, key: Any = None) -> Pick:
        """A :class:`Pick` to enter (``with`` / ``async with``) around one request.

        Args:
            key: the affinity key for the ``"hash"`` strategy (a user id, a cache key);
                ignored by the other strategies. Without a key ``"hash"`` picks at random.

        Raises:
            NoHealthyEndpointError: (on entering) no endpoint may take the request.

        Example::

            with balancer.pick(key=user_id) as ep:
                return session.get(f"http://{ep.address}/users/{user_id}")
        """
        return Pick(self, key)

    async def call(
        self, fn: Callable[..., Awaitable[R]], *args: Any, key: Any = None, **kwargs: Any
    ) -> R:
        """Run ``await fn(endpoint, *args, **kwargs)`` on a chosen endpoint, tracked.

        Raises:
            NoHealthyEndpointError: no endpoint may take the request.
            Exception: whatever ``fn`` raises (recorded as the outcome first).

        Example::

            user = await balancer.call(fetch_user, 42)   # async def fetch_user(ep, uid)
        """
        with Pick(self, key) as endpoint:
            return await fn(endpoint, *args, **kwargs)

    def call_sync(self, fn: Callable[..., R], *args: Any, key: Any = None, **kwargs: Any) -> R:
        """Run ``fn(endpoint, *args, **kwargs)`` on a chosen endpoint, tracked.

        Raises:
            NoHealthyEndpointError: no endpoint may take the request.
            Exception: whatever ``fn`` raises (recorded as the outcome first).

        Example::

            user = balancer.call_sync(fetch_user, 42)   # def fetch_user(ep, uid)
        """
        with Pick(self, key) as endpoint:
            return fn(endpoint, *args, **kwargs)

    def _acquire(self, key: Any) -> tuple[_State, float]:
        now = self.clock.monotonic()
        with self._lock:
            if now < self._next_change:
                pool = self._single
                if pool is not None and key is None:  # the hot path: one pool, no key
                    state = self._choose(pool, now)
                    state.in_flight += 1
                    return state, now
                events: list[Event] = []
            else:
                events = self._refresh(now)
            pool = self._single or self._pick_pool()
            if pool is None or pool.n == 0:
                found = None
            elif key is not None and self.hasher is not None:
                found = self._by_key(key)
            else:
                found = self._choose(pool, now)
            if found is not None:
                found.in_flight += 1
            else:
                retry_after = self._retry_after(now)
        if events:
            self._emit_all(events)
        if found is None:
            raise NoHealthyEndpointError._lazy(
                self.name, retry_after, "balancer %r has no endpoint available", (self.name,)
            )
        return found, now

    def _pick_pool(self) -> _Pool | None:
        if not self._pools:
            return None
        i = bisect_right(self._pool_cum, self.random.random() * self._pool_cum[-1])
        return self._pools[min(i, len(self._pools) - 1)]

    def _retry_after(self, now: float) -> float | None:
        ends = [s.ejected_until - now for s in self._states if s.ejected]
        return min(ends) if ends else None

    def _two(self, pool: _Pool) -> tuple[_State, _State]:
        rand = self.random.random
        n = pool.n
        states = pool.states
        if pool.uniform:
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            return states[i], states[j]
        cum, total = pool.cum, pool.total
        i = min(bisect_right(cum, rand() * total), n - 1)
        # Draw the second by weight among the others: draw over the total less the first.
        wi = states[i].weight
        r = rand() * (total - wi)
        lo = cum[i - 1] if i else 0.0
        if r >= lo:
            r += wi
        j = min(bisect_right(cum, r), n - 1)
        if j == i:  # float edge: fall back to a neighbour
            j = (i + 1) % n
        return states[i], states[j]

    def _p2c_ewma(self, pool: _Pool, now: float) -> _State:
        n = pool.n
        if n == 1:
            return pool.states[0]
        if pool.uniform:  # inlined _two(): this is the default strategy's hot path
            rand = self.random.random
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a, b = pool.states[i], pool.states[j]
        else:
            a, b = self._two(pool)
        ca, cb = a.cost, b.cost
        # cost x (in flight + 1) / weight, the estimate decayed to now; with no estimate
        # yet, Finagle's penalty while requests are out (a fresh endpoint is not flooded).
        if ca:
            if now > a.stamp:
                ca *= math.exp((a.stamp - now) / self.decay)
            ca *= (a.in_flight + 1) * a.inv_weight
        elif a.in_flight:
            ca = _UNKNOWN_COST * a.in_flight
        if cb:
            if now > b.stamp:
                cb *= math.exp((b.stamp - now) / self.decay)
            cb *= (b.in_flight + 1) * b.inv_weight
        elif b.in_flight:
            cb = _UNKNOWN_COST * b.in_flight
        return a if ca <= cb else b

    def _p2c_least(self, pool: _Pool, now: float) -> _State:
        if pool.n == 1:
            return pool.states[0]
        a, b = self._two(pool)
        return a if (a.in_flight + 1) * a.inv_weight <= (b.in_flight + 1) * b.inv_weight else b

    def _round_robin(self, pool: _Pool, now: float) -> _State:
        states = pool.states
        if pool.uniform:
            i = self._rr
            self._rr = i + 1
            return states[i % pool.n]
        # Smooth weighted round robin (nginx): exact shares, evenly interleaved.
        best = states[0]
        for s in states:
            s.rr_current += s.weight
            if s.rr_current > best.rr_current:
                best = s
        best.rr_current -= pool.total
        return best

    def _random_pick(self, pool: _Pool, now: float) -> _State:
        if pool.uniform:
            return pool.states[int(self.random.random() * pool.n)]
        i = bisect_right(pool.cum, self.random.random() * pool.total)
        return pool.states[min(i, pool.n - 1)]

    def _by_key(self, key: Any) -> _State | None:
        hasher = self.hasher
        assert hasher is not None
        available = self._available
        first = hasher.node_for(key)
        if first in available:
            return self._by_address[first]
        for address in hasher.nodes_for(key, len(self._states)):
            if address in available:
                return self._by_address[address]
        return None

    # -- recording --------------------------------------------------------------------------

    def _classify(self, exc: BaseException | None) -> int:
        if exc is None:
            return SUCCESS
        if not isinstance(exc, Exception):
            return IGNORED  # cancellation, KeyboardInterrupt: says nothing of the endpoint
        if self.ignore_on and isinstance(exc, self.ignore_on):
            return IGNORED
        if self.reject_on and isinstance(exc, self.reject_on):
            return REJECTED
        if isinstance(exc, self.failure_on):
            return FAILURE
        return SUCCESS

    def _finish(self, s: _State, started: float, outcome: int) -> None:
        now = self.clock.monotonic()
        with self._lock:
            s.in_flight -= 1
            if outcome == SUCCESS:
                rtt = now - started
                s.consecutive = 0
                s.sr_ok += 1
                s.sr_total += 1
            elif outcome == IGNORED:
                return
            else:
                rtt = now - started
                if rtt < self.failure_penalty:
                    rtt = self.failure_penalty
                if outcome == FAILURE:
                    s.failures += 1
                    s.consecutive += 1
                    s.sr_total += 1
                else:
                    s.rejections += 1
            # Peak EWMA: a slower sample replaces the estimate at once; a faster one pulls
            # it down with a weight that grows with the time since the last sample.
            cost = s.cost
            if rtt >= cost:
                s.cost = rtt
            elif now > s.stamp:
                w = math.exp((s.stamp - now) / self.decay)
                s.cost = cost * w + rtt * (1.0 - w)
            s.stamp = now
            s.requests += 1
            if self.outlier is None or (
                outcome != FAILURE and now < self._next_eval and now < self._next_change
            ):
                return
            events = self._judge(s, now, outcome)
        if events:
            self._emit_all(events)

    def _judge(self, s: _State, now: float, outcome: int) -> list[Event]:
        """Outlier detection after a completion (under the lock): the slow path."""
        od = self.outlier
        assert od is not None
        events: list[Event] = []
        if now >= self._next_change:
            events += self._refresh(now)
        if (
            outcome == FAILURE
            and od.consecutive_failures is not None
            and s.consecutive >= od.consecutive_failures
            and not s.ejected
        ):
            events += self._eject(s, now, "consecutive_failures")
        if now >= self._next_eval:
            events += self._evaluate(now)
        return events

    def _eject(self, s: _State, now: float, reason: str) -> list[Event]:
        od = self.outlier
        assert od is not None
        if od.base_ejection_time <= 0.0:
            s.consecutive = 0
            return []  # ejection disabled: zero means zero
        states = self._states
        ejected = sum(1 for x in states if x.ejected)
        # At most max_ejection_percent of the endpoints, but one may always go (Envoy).
        if ejected and (ejected + 1) * 100.0 > od.max_ejection_percent * len(states):
            return []
        s.multiplier += 1
        s.ejections += 1
        seconds = min(
            od.base_ejection_time * s.multiplier, max(od.base_ejection_time, od.max_ejection_time)
        )
        s.consecutive = 0
        s.ejected = True
        s.ejected_until = now + seconds
        events: list[Event] = [EndpointEjected(self.name, s.address, reason, seconds, s.ejections)]
        events += self._refresh(now)
        return events

    def _evaluate(self, now: float) -> list[Event]:
        """The success-rate detector and the multiplier decay, once per interval."""
        od = self.outlier
        assert od is not None
        self._next_eval = now + od.interval
        events: list[Event] = []
        if od.success_rate:
            judged = [
                s
                for s in self._states
                if not s.ejected and s.sr_total >= od.success_rate_request_volume
            ]
            if len(judged) >= od.success_rate_minimum_hosts:
                rates = [s.sr_ok / s.sr_total for s in judged]
                mean = sum(rates) / len(rates)
                stdev = math.sqrt(sum((r - mean) ** 2 for r in rates) / len(rates))
                limit = mean - od.success_rate_stdev_factor * stdev
                for s, rate in zip(judged, rates, strict=True):
                    if rate < limit:
                        events += self._eject(s, now, "success_rate")
        for s in self._states:
            s.sr_ok = s.sr_total = 0
            if not s.ejected and s.multiplier > 0:
                s.multiplier -= 1
        return events

    # -- the candidate sets -----------------------------------------------------------------

    def _refresh(self, now: float) -> list[Event]:
        """Recompute who may be picked: restore expired ejections, priority loads, panic.

        Called under the lock whenever health changes or an ejection runs out.
        """
        events: list[Event] = []
        next_change = math.inf
        for s in self._states:
            if s.ejected:
                if s.ejected_until <= now:
                    s.ejected = False
                    # Back from an ejection it starts afresh, like a new endpoint: its
                    # failure-inflated estimate would otherwise keep it idle for minutes.
                    s.cost = 0.0
                    events.append(EndpointRestored(self.name, s.address, "expired"))
                elif s.ejected_until < next_change:
                    next_change = s.ejected_until
        self._next_change = next_change

        over = self.overprovisioning
        healths: list[float] = []
        members: list[list[_State]] = []
        delay = self.failback_after
        initial = 1.0 if self._initially else 0.0
        for priority, group in self._groups:
            weighted = [s for s in group if s.weight > 0]
            ok = [s for s in weighted if s.healthy and not s.ejected]
            health = min(1.0, over * len(ok) / len(weighted)) if weighted else 0.0
            # Failback hysteresis: health drops count at once, rises only once they have
            # held for failback_after seconds, so a flapping group does not pull traffic
            # back and forth.
            held = self._health.get(priority, initial)
            if health <= held or delay <= 0.0:
                self._health[priority] = health
                self._rising[priority] = math.inf
            else:
                since = self._rising.get(priority, math.inf)
                if since == math.inf:
                    since = self._rising[priority] = now
                if now - since >= delay:
                    self._health[priority] = health
                    self._rising[priority] = math.inf
                else:
                    next_change = min(next_change, since + delay)
                    self._next_change = next_change
                    health = held
            healths.append(health)
            members.append(ok)
        total_health = min(1.0, sum(healths))
        panic = total_health < self.panic_threshold
        if panic != self._panic:
            self._panic = panic
            if panic:
                events.append(PanicEntered(self.name, total_health, self.on_panic))
            else:
                events.append(PanicExited(self.name, total_health))

        pools: list[_Pool] = []
        shares: list[float] = []
        loads: list[tuple[int, float]] = []
        if panic:
            if self.on_panic == "all":
                everyone = [s for s in self._states if s.weight > 0]
                if everyone:
                    pools.append(_Pool(everyone))
                    shares.append(1.0)
                    loads = [(p, 1.0 if i == 0 else 0.0) for i, (p, _) in enumerate(self._groups)]
        elif total_health > 0.0:
            # Envoy's priority load: each group takes its health, up to what is left, then
            # the loads are normalised when the total health is below 100 %.
            left = 1.0
            for (priority, _), health, ok in zip(self._groups, healths, members, strict=True):
                share = min(health, left)
                left -= share
                share /= total_health
                loads.append((priority, share))
                if share > 0.0 and ok:
                    pools.append(_Pool(ok))
                    shares.append(share)
        self._pools = tuple(pools)
        self._pool_cum = list(accumulate(shares))
        self._single = pools[0] if len(pools) == 1 else None
        self._available = frozenset(s.address for pool in pools for s in pool.states)
        loaded = tuple(loads)
        if len(self._groups) > 1 and loaded != self._loads and self._loads:
            events.append(PriorityLoadChanged(self.name, loaded))
        self._loads = loaded
        return events

    def _emit_all(self, events: list[Event]) -> None:
        if self._listeners or GLOBAL_LISTENERS:
            for event in events:
                emit(self._listeners, event)

    # -- active health checks ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the background health checks (a no-op without ``health_check``).

        The first check of every endpoint runs at once. Idempotent.

        Raises:
            RuntimeError: called with no running event loop.

        Example::

            await balancer.start()
            try:
                ...
            finally:
                await balancer.stop()
        """
        if self.health_check is None or self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        for s in self._states:
            self._spawn(s)

    def _spawn(self, s: _State) -> None:
        loop = self._loop
        if loop is None or s.address in self._tasks:
            return
        self._tasks[s.address] = loop.create_task(
            self._check_loop(s), name=f"{self.name}:health:{s.address}"
        )

    async def stop(self) -> None:
        """Stop the background health checks and wait for them; idempotent.

        Example::

            await balancer.stop()
        """
        tasks = list(self._tasks.values())
        self._tasks = {}
        self._loop = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        checker = self.health_check.checker if self.health_check is not None else None
        aclose = getattr(checker, "aclose", None)
        if tasks and aclose is not None:
            await aclose()

    async def __aenter__(self) -> Balancer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def check_now(self) -> dict[str, HealthStatus]:
        """Run one health check of every endpoint now, concurrently, and apply the results.

        Returns each address's result. Works whether or not the balancer is started.

        Raises:
            ConfigError: the balancer has no ``health_check``.

        Example::

            results = await balancer.check_now()
        """
        if self.health_check is None:
            raise v.fail("health_check", "set to use check_now()", None)
        states = self._states
        results = await asyncio.gather(*(self._check_once(s) for s in states))
        for s, status in zip(states, results, strict=True):
            self._apply_check(s, status)
        return {s.address: status for s, status in zip(states, results, strict=True)}

    async def _check_loop(self, s: _State) -> None:
        hc = self.health_check
        assert hc is not None
        while True:
            self._apply_check(s, await self._check_once(s))
            base = hc.interval
            if not s.healthy and hc.unhealthy_interval is not None:
                base = hc.unhealthy_interval
            delay = base * (1.0 + hc.jitter * (2.0 * self.random.random() - 1.0))
            await self.clock.sleep(delay)

    async def _check_once(self, s: _State) -> HealthStatus:
        hc = self.health_check
        assert hc is not None
        task = asyncio.ensure_future(hc.checker(s.endpoint))
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            task.cancel()

        handle = self.clock.call_later(hc.timeout, expire)
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if timed_out and (current is None or not current.cancelling()):
                return HealthStatus.UNHEALTHY
            raise
        except Exception:
            return HealthStatus.UNHEALTHY
        finally:
            handle.cancel()
        if isinstance(result, HealthStatus):
            return result
        return HealthStatus.HEALTHY if result else HealthStatus.UNHEALTHY

    def _apply_check(self, s: _State, status: HealthStatus) -> None:
        hc = self.health_check
        assert hc is not None
        now = self.clock.monotonic()
        events: list[Event] = []
        changed = False
        with self._lock:
            if status is HealthStatus.HEALTHY:
                s.hc_fail = 0
                s.hc_ok += 1
                if not s.healthy and s.hc_ok >= hc.healthy_threshold:
                    s.healthy = changed = True
                    s.cost = 0.0  # a fresh start, as after an ejection
                    events.append(EndpointHealthChanged(self.name, s.address, True, "threshold"))
                if hc.uneject and s.ejected:
                    s.ejected = False
                    s.ejected_until = now
                    s.cost = 0.0
                    changed = True
                    events.append(EndpointRestored(self.name, s.address, "health_check"))
            else:
                s.hc_ok = 0
                s.hc_fail += 1
                immediate = status is HealthStatus.DRAINING
                if s.healthy and (immediate or s.hc_fail >= hc.unhealthy_threshold):
                    s.healthy = False
                    changed = True
                    reason = "immediate" if immediate else "threshold"
                    events.append(EndpointHealthChanged(self.name, s.address, False, reason))
            if changed:
                events += self._refresh(now)
        if events:
            self._emit_all(events)

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> BalancerStats:
        """A snapshot of every endpoint, the panic state and the priority loads.

        Example::

            for ep in balancer.stats().endpoints:
                print(ep.address, ep.available, ep.latency)
        """
        now = self.clock.monotonic()
        events: list[Event] = []
        with self._lock:
            if now >= self._next_change:
                events = self._refresh(now)
            available = self._available
            endpoints = tuple(
                EndpointStats(
                    address=s.address,
                    weight=s.weight,
                    priority=s.endpoint.priority,
                    available=s.address in available,
                    healthy=s.healthy,
                    ejected=s.ejected,
                    ejected_for=max(0.0, s.ejected_until - now) if s.ejected else 0.0,
                    ejections=s.ejections,
                    in_flight=s.in_flight,
                    requests=s.requests,
                    failures=s.failures,
                    rejections=s.rejections,
                    consecutive_failures=s.consecutive,
                    latency=(
                        s.cost * math.exp((s.stamp - now) / self.decay) if now > s.stamp else s.cost
                    ),
                )
                for s in self._states
            )
            snapshot = BalancerStats(self.name, self.strategy, endpoints, self._panic, self._loads)
        if events:
            self._emit_all(events)
        return snapshot


def _build_hasher(
    hasher: KeyHasher | Callable[[list[str]], KeyHasher] | None, endpoints: list[Endpoint]
) -> KeyHasher:
    addresses = [ep.address for ep in endpoints]
    if hasher is None:
        from ..hashing import Rendezvous

        weights = {ep.address: ep.weight for ep in endpoints if ep.weight > 0}
        if not weights:
            raise v.fail("endpoints", "at least one endpoint of weight > 0", endpoints)
        return Rendezvous(weights)
    if isinstance(hasher, KeyHasher):
        return hasher
    if callable(hasher):
        built = hasher(addresses)
        if isinstance(built, KeyHasher):
            return built
    raise v.fail(
        "hasher",
        "an object with node_for(key) and nodes_for(key, n), or a callable building one",
        hasher,
    )
