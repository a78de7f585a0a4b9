"""The in-process cache: adaptive W-TinyLFU with expiry, loading and write policies.

Layout (Caffeine's design, in Python):

* ``_data``: key -> entry (the one lookup a hit needs).
* Three access-ordered queues, each an ``OrderedDict`` key -> node (C-level moves):
  the admission *window* (LRU), and the main space split into *probation* and
  *protected* (a segmented LRU). New entries enter the window; the window's LRU entries
  become candidates for the main space, admitted by TinyLFU only when they have been
  used more often lately than probation's LRU victim.
* The frequency history (TinyLFU's counts): each entry counts its own accesses; a key
  not in the cache has its recent count in ``_counts`` (hash -> count), written when
  its entry leaves and taken back when the key returns. Every ``10 * max_size``
  accesses all counts are halved and the ones seen once forgotten (TinyLFU's aging),
  so the count is a recent frequency; a count is compared saturated at 16, as a 4-bit
  counter plus a doorkeeper bit would be. This replaces the count-min sketch of the
  paper and Caffeine: in CPython, hashing a key into four counters and updating them
  conservatively costs ~60 bytecodes per miss, a dict pop ~8, and the exact counts
  admit no worse. Memory: the doorkeeper set the sketch needed already held one hash
  per key seen in the period; the history holds at most ``_HISTORY_CAP * max_size``
  hashes (it ages early when a scan of new keys would grow it further).
* A hill climber that moves capacity between window and main space every sample
  period, toward the split that gives the better hit ratio (recency-biased workloads
  grow the window, frequency-biased ones shrink it).
* An LRU guard: a small LRU simulated over a spatial sample of the keys (1 in 8, of
  ``max_size / 8`` entries, as in SHARDS) tells, over the same requests, whether plain
  recency would have done better this period; when it clearly would (by a point and two
  standard errors), the window grows by a quarter of the capacity. The climber alone
  reacts to the period-to-period change of the hit ratio, which on phase-changing
  workloads is mostly the workload's doing; the guard's paired comparison is not.
* A heap of expiry deadlines with lazy deletion (no full scans).

Hits do no reordering: ``get`` appends the entry to a read buffer and the buffered reads
are replayed (frequency count + queue move) in batches under the lock, on the next write
or when the buffer fills, as Caffeine does with its read buffers. Entries are plain lists
(see ``_KEY`` ... ``_SAMPLED``): cheaper to build than slotted objects.

Thread safety of the lock-free ``get`` (GIL builds): ``dict.get``, ``list.append`` and
attribute reads/writes are each atomic under the GIL. ``get`` only reads ``_data`` and
the node, and appends to the read buffer; every structural change happens under
``_lock``. A hit racing an eviction may return the value being evicted (it was present
when looked up: the read linearises before the eviction). The drain takes a prefix of
the buffer with ``buf[:n]`` / ``del buf[:n]``, so a concurrent append is never lost.
Counters updated without the lock (``_misses``) may undercount under heavy thread
contention; they only feed statistics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import inspect
import itertools
import math
import random as _random
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar, cast

from .. import _validate as v
from .._clock import Clock, resolve
from .._events import GLOBAL_LISTENERS, Event, Listener, emit
from .._policy import next_index
from ._errors import CacheError
from ._events import CacheEvicted, CacheLoadFailed
from ._write import CacheWriter

__all__ = ["Cache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_WINDOW, _PROBATION, _PROTECTED, _REMOVED = 0, 1, 2, -1
_READ_BUFFER = 128
_INF = math.inf

# Caffeine's tuning constants.
_INITIAL_WINDOW = 0.005  # of the maximum (Caffeine: 0.01)
_PROTECTED_SHARE = 0.80  # of the main space
_STEP_PERCENT = 0.045  # hill climber step, of the maximum (Caffeine: 0.0625)
_STEP_DECAY = 0.98
# Caffeine: 0.05. A change of the hit ratio this large restarts the step size; a large
# drop is mostly the workload's doing (a phase change), so the climber does not move on it.
_RESTART_THRESHOLD = 0.02
_ADMIT_HASHDOS_THRESHOLD = 6
_CLIMB_PERIOD = 10  # hill climber sample, in multiples of the maximum
_AGE_PERIOD = 15  # TinyLFU's aging sample, in multiples of the maximum (Caffeine: 10)
_FREQ_CAP = 15  # counts compare saturated, as Caffeine's 4-bit counters
_HISTORY_CAP = 16  # the frequency history holds at most this many hashes per entry
# The LRU guard (ours, not Caffeine's): see Cache._climb.
_LRU_SAMPLING = 8  # the LRU guard samples 1 key in 8 (fewer for small caches)
_LRU_MIN_SAMPLE = 256  # sampled requests needed for the guard to speak
_LRU_MIN_SIZE = 256  # below, a sampled LRU is too small to be a reliable witness
_LRU_MARGIN = 0.01  # LRU must win by a point
_LRU_STEP = 0.25  # of the maximum
_LRU_STREAK = 1  # judgements in a row LRU must win before the guard acts
_LRU_CHECKS = 4  # the guard judges 4 times per climber period (it reacts during warm-up)


# An entry is a plain list (cheaper to build than a slotted object): these are its fields.
_KEY, _VALUE, _QUEUE, _FREQ, _WEIGHT, _SLOTS = 0, 1, 2, 3, 4, 5
_EXPIRES = 6  # min(deadline, last access + expire_after_access)
_DEADLINE = 7  # write time + ttl
_SCHEDULED = 8  # the deadline of this entry's live heap entry
_WRITTEN, _LOADED_IN, _REFRESHING = 9, 10, 11
_SAMPLED = 12  # whether the LRU guard samples this key
_Node: TypeAlias = list[Any]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a cache's counters (:meth:`Cache.stats`).

    Attributes:
        name: the cache's name.
        hits: ``get``/``get_or_load`` calls that found a live entry.
        misses: calls that did not.
        hit_ratio: ``hits / (hits + misses)``, ``0.0`` before any request.
        evictions: entries dropped by the size policy.
        expirations: entries dropped because their time ran out.
        load_count: loader calls that finished (success or failure).
        load_failures: loader calls that raised.
        load_time: total seconds spent in loaders (by the cache's clock).
        refreshes: refresh-ahead loads started.
        size: live entries (expired ones that were not yet removed included).
        weight: their total weight (``== size`` without a weigher).
        max_size: the capacity (entries, or total weight with a weigher).
        window_max: the admission window's current capacity (moved by hill climbing).

    Example::

        s = cache.stats()
        metrics.gauge("cache.hit_ratio", s.hit_ratio, tags={"cache": s.name})
    """

    name: str
    hits: int
    misses: int
    hit_ratio: float
    evictions: int
    expirations: int
    load_count: int
    load_failures: int
    load_time: float
    refreshes: int
    size: int
    weight: int
    max_size: int
    window_max: int


class _Flight:
    """One load in progress; waiters share ``future``."""

    __slots__ = ("future", "led_by_task", "stale")

    def __init__(self, led_by_task: bool) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.stale = False
        self.led_by_task = led_by_task


class _Negative:
    __slots__ = ("exception", "until")

    def __init__(self, exception: BaseException, until: float) -> None:
        self.exception = exception
        self.until = until


_MISSING: Any = object()


class Cache(Generic[K, V]):
    """A bounded in-process cache with the adaptive W-TinyLFU policy (Caffeine's design).

    Args:
        max_size: capacity: entries, or total weight with ``weigher``. Default 10_000.
            ``0`` keeps nothing.
        ttl: time to live after each write, seconds or ``timedelta``; ``None`` (the
            default) never expires. ``set(..., ttl=)`` overrides it per entry.
        weigher: ``weigher(key, value) -> int >= 0``, the weight of an entry. Default:
            every entry weighs 1.
        expire_after_access: also expire an entry this long after its last read or
            write (time to idle). Default ``None``.
        refresh_after: with ``get_or_load``, an entry older than this is reloaded in the
            background while the old value keeps being served (one refresh per key).
            Default ``None``.
        early_expiration: XFetch's ``beta`` (> 0): ``get_or_load`` refreshes an entry
            early with a probability that rises as its deadline nears, scaled by how
            long its last load took (``beta=1`` is the paper's default). Default
            ``None`` (off).
        negative_ttl: with ``get_or_load``, keep a loader's exception this long and raise
            it again without calling the loader. Default ``None``: errors are never cached.
        writer: write-through or write-behind to a backing store
            (:class:`~buttress.cache.WriteThrough`, :class:`~buttress.cache.WriteBehind`).
            Default ``None``.
        clock: the time source. Default: the system clock.
        random: the random source (admission tie-breaks, XFetch). Default: a new one.
        name: for events and stats. Default ``"cache-N"``.
        listeners: event listeners (:class:`~buttress.cache.CacheEvicted`,
            :class:`~buttress.cache.CacheLoadFailed`,
            :class:`~buttress.cache.CacheWriteFailed`).

    Raises:
        ConfigError: an argument is out of range.

    ``get`` of a present key takes no lock and does no reordering (see the module notes);
    the sync API is thread-safe and the async one task-safe.

    Example::

        users = bt.Cache(max_size=50_000, ttl=300)
        user = users.get(uid)
        if user is None:
            user = await users.get_or_load(uid, fetch_user)
    """

    __slots__ = (
        "__weakref__",
        "_additions",
        "_both_hit",
        "_both_missed",
        "_check_step",
        "_climb_count",
        "_climb_hits",
        "_climb_period",
        "_clock",
        "_counts",
        "_data",
        "_dropped",
        "_due",
        "_eaa",
        "_early",
        "_expirations",
        "_flights",
        "_heap",
        "_history_cap",
        "_hits",
        "_inserts",
        "_inserts_seen",
        "_listeners",
        "_load_count",
        "_load_failures",
        "_load_time",
        "_lock",
        "_lru",
        "_lru_cap",
        "_lru_only",
        "_lru_rate",
        "_lru_streak",
        "_max",
        "_misses",
        "_negative",
        "_negative_ttl",
        "_next_check",
        "_now",
        "_ours_only",
        "_plain",
        "_prev_hit_rate",
        "_probation",
        "_protected",
        "_protected_max",
        "_protected_weight",
        "_random",
        "_reads",
        "_refresh_after",
        "_refreshes",
        "_sample_size",
        "_seq",
        "_stamp",
        "_steady",
        "_step",
        "_tasks",
        "_timed",
        "_ttl",
        "_weigher",
        "_weight",
        "_window",
        "_window_max",
        "_window_weight",
        "_writer",
        "name",
    )

    def __init__(
        self,
        max_size: int = 10_000,
        ttl: float | timedelta | None = None,
        *,
        weigher: Callable[[K, V], int] | None = None,
        expire_after_access: float | timedelta | None = None,
        refresh_after: float | timedelta | None = None,
        early_expiration: float | None = None,
        negative_ttl: float | timedelta | None = None,
        writer: CacheWriter | None = None,
        clock: Clock | None = None,
        random: _random.Random | None = None,
        name: str | None = None,
        listeners: tuple[Listener, ...] | list[Listener] = (),
    ) -> None:
        self._max = v.integer("max_size", max_size, minimum=0)
        self._ttl = v.optional_seconds("ttl", ttl)
        self._weigher = v.optional_callable("weigher", weigher)
        self._eaa = v.optional_seconds("expire_after_access", expire_after_access)
        self._refresh_after = v.optional_seconds("refresh_after", refresh_after)
        self._early = (
            None
            if early_expiration is None
            else v.number("early_expiration", early_expiration, low=0, low_open=True)
        )
        self._negative_ttl = v.optional_seconds("negative_ttl", negative_ttl)
        self._stamp = self._refresh_after is not None or self._early is not None
        if writer is not None and not isinstance(writer, CacheWriter):
            raise v.fail("writer", "a WriteThrough, a WriteBehind or None", writer)
        self._clock = resolve(clock)
        self._now = self._clock.monotonic
        self._random = v.rng(random)
        self.name = v.name_of(name, "cache", lambda: next_index("cache"))
        self._listeners = v.listeners(listeners)
        self._lock = threading.Lock()
        self._data: dict[Any, _Node] = {}
        self._window: OrderedDict[Any, _Node] = OrderedDict()
        self._probation: OrderedDict[Any, _Node] = OrderedDict()
        self._protected: OrderedDict[Any, _Node] = OrderedDict()
        self._reads: list[_Node] = []
        # The frequency history (TinyLFU): hash -> recent count of keys not in the cache
        # (entries carry their own count and fold it back in when they leave).
        self._counts: dict[int, int] = {}
        self._additions = 0  # accesses counted toward the next aging
        self._inserts = self._inserts_seen = 0
        self._dropped = 0  # entries removed by delete/clear (not evicted, not expired)
        self._steady = False  # full, and the window at its size: set()'s one-for-one path
        self._sample_size = max(_AGE_PERIOD * self._max, 160)
        self._history_cap = _HISTORY_CAP * max(self._max, 64)
        self._heap: list[tuple[float, int, _Node]] = []
        self._seq = itertools.count()
        self._timed = self._ttl is not None or self._eaa is not None
        self._flights: dict[Any, _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._negative: OrderedDict[Any, _Negative] = OrderedDict()
        self._weight = self._window_weight = self._protected_weight = 0
        self._window_max = self._max - int(self._max * (1 - _INITIAL_WINDOW))
        if self._max > 0 and self._window_max < 1:
            self._window_max = 1
        self._protected_max = int((self._max - self._window_max) * _PROTECTED_SHARE)
        self._step = -_STEP_PERCENT * self._max
        self._prev_hit_rate = -1.0  # no sample yet
        self._climb_hits = self._climb_count = 0  # hits, requests in the sample
        self._climb_period = max(int(_CLIMB_PERIOD * self._max), 16)
        # the LRU guard also judges between the climber's periods (_LRU_CHECKS per period)
        self._check_step = max(self._climb_period // _LRU_CHECKS, 16)
        self._next_check = self._check_step
        self._due = min(self._next_check, self._sample_size, self._history_cap >> 2)  # _periodic
        # The LRU guard: an LRU of max_size / rate over the keys whose hash is a
        # multiple of rate (spatial sampling), to tell when plain recency would do better.
        self._lru_rate = max(1, min(_LRU_SAMPLING, self._max // 64))
        self._lru_cap = max(1, self._max // self._lru_rate)
        self._lru: OrderedDict[Any, None] = OrderedDict()
        # the sampled requests, by outcome: LRU hit and we missed, we hit and LRU
        # missed, both hit, both missed (a paired comparison)
        self._lru_only = self._ours_only = self._both_hit = self._both_missed = 0
        self._lru_streak = 0  # consecutive periods LRU won
        self._hits = self._misses = self._expirations = 0
        self._load_count = self._load_failures = self._refreshes = 0
        self._load_time = 0.0
        self._writer = writer
        if writer is not None:
            writer._attach(self)
        # set() takes its inlined fast path while nothing needs a clock, a weigher or a writer
        self._plain = not self._timed and not self._stamp and weigher is None and writer is None

    def __repr__(self) -> str:
        return f"Cache(max_size={self._max}, ttl={self._ttl}, name={self.name!r})"

    @property
    def max_size(self) -> int:
        """The capacity: entries, or total weight with a weigher."""
        return self._max

    # -- the hot path -----------------------------------------------------------------------

    def get(self, key: K, default: Any = None) -> Any:
        """The value cached for ``key``, or ``default`` (``None``) when absent or expired.

        Takes no lock: the hit is recorded in a read buffer, replayed later in a batch.

        Example::

            price = cache.get(sku)
            if price is None: ...
        """
        node = self._data.get(key)
        if node is not None:
            if self._timed:
                now = self._now()
                if node[_EXPIRES] <= now:
                    self._misses += 1
                    return default
                if self._eaa is not None:
                    node[_EXPIRES] = min(node[_DEADLINE], now + self._eaa)
            reads = self._reads
            reads.append(node)
            if len(reads) >= 128:  # _READ_BUFFER (a literal: no global lookup on a hit)
                self._drain_locked()
            return node[1]  # _VALUE
        self._misses += 1
        return default

    def __getitem__(self, key: K) -> V:
        """``cache[key]``; raises ``KeyError`` when absent or expired."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return cast(V, value)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a live entry (does not count as an access)."""
        node = self._data.get(key)
        if node is None:
            return False
        return not self._timed or node[_EXPIRES] > self._now()

    # -- writes -----------------------------------------------------------------------------

    def set(self, key: K, value: V, ttl: float | timedelta | None = None) -> None:
        """Store ``value`` for ``key``, replacing any previous value.

        Args:
            key: a hashable key.
            value: the value.
            ttl: this entry's time to live; default: the cache's ``ttl``.

        Raises:
            ConfigError: ``ttl`` is negative, or the weigher returned a bad weight.
            CacheWriteError: write-through and the store failed (the cache is unchanged).
            CacheError: the cache is closed and has a writer.

        Example::

            cache.set("config", cfg, ttl=60)
        """
        if ttl is not None or not self._plain:
            life = self._ttl if ttl is None else v.seconds("ttl", ttl)
            writer = self._writer
            if writer is not None:
                writer._write(key, value)
            self._put(key, value, life)
            return
        # The common configuration (``_plain``: no expiry, weigher, refresh or writer):
        # the steps of _put, minus every test they make unnecessary, with the steady-state
        # eviction inlined. Every bytecode here is paid on every miss, so the bookkeeping
        # is folded: one insert counter stands for the aging and climbing counts (see
        # _periodic) and for the eviction count (see stats).
        evicted = None
        lock = self._lock
        lock.acquire()
        try:
            if self._reads:
                self._drain()
            if self._flights:
                flight = self._flights.pop(key, None)
                if flight is not None:
                    flight.stale = True
            if self._negative:
                self._negative.pop(key, None)
            data = self._data
            node = data.get(key)
            if node is not None:
                node[1] = value  # _VALUE
                self._on_access(node)
            else:
                h = hash(key)
                sampled = h % self._lru_rate == 0
                # fields: _KEY ... _SAMPLED; the count resumes from the key's history
                node = [
                    key, value, 0, self._counts.pop(h, 0) + 1, 1, h,
                    _INF, _INF, _INF, 0.0, 0.0, False, sampled,
                ]  # fmt: skip
                data[key] = node
                window = self._window
                window[key] = node
                if sampled:  # the LRU guard's sampled LRU (_lru_access, inlined)
                    lru = self._lru
                    if key in lru:  # a miss that LRU would have hit
                        lru.move_to_end(key)
                        self._lru_only += 1
                    else:
                        lru[key] = None
                        self._both_missed += 1
                        if len(lru) > self._lru_cap:
                            lru.popitem(last=False)
                n = self._inserts + 1
                self._inserts = n
                if n >= self._due:
                    self._periodic()
                probation = self._probation
                if self._steady and probation:
                    # The steady state (full, window at its size): the window's LRU entry
                    # (the candidate) duels probation's LRU entry (the victim) on
                    # frequency, compared saturated at _FREQ_CAP (15); one of them goes.
                    ckey, cand = window.popitem(last=False)
                    for vkey in probation:  # noqa: B007 (the first key: cheaper than next(iter()))
                        break
                    vic = probation[vkey]
                    cf = cand[3]  # _FREQ
                    vf = vic[3]
                    if (cf > vf and vf < 15) or (cf >= 6 and self._random.getrandbits(7) == 0):
                        # (a warm candidate sometimes wins: _ADMIT_HASHDOS_THRESHOLD, 6)
                        cand[2] = 1  # _PROBATION
                        probation[ckey] = cand
                        del probation[vkey]
                        del data[vkey]
                        evicted = vic
                    else:
                        del data[ckey]
                        evicted = cand
                    evicted[2] = -1  # _REMOVED
                    self._counts[evicted[5]] = evicted[3]  # saturated when aged
                else:
                    self._weight += 1
                    self._window_weight += 1
                    if self._weight > self._max or self._window_weight > self._window_max:
                        events: list[Event] | None = (
                            [] if (self._listeners or GLOBAL_LISTENERS) else None
                        )
                        self._evict(events)
                        if events:
                            evicted = events
                    self._steady = (
                        self._weight == self._max and self._window_weight == self._window_max
                    )
        finally:
            lock.release()
        if (self._listeners or GLOBAL_LISTENERS) and evicted is not None:
            self._announce(evicted)

    def _announce(self, evicted: _Node | list[Event]) -> None:
        # set()'s fast path passes the node it evicted, its slow path the events it made
        # (a node ends with its _SAMPLED bool; its key may be anything, even an Event)
        if isinstance(evicted[-1], Event):
            for event in evicted:
                emit(self._listeners, event)
        else:
            emit(self._listeners, CacheEvicted(self.name, evicted[0], evicted[1], "size"))

    __setitem__ = set

    def _weigh(self, key: Any, value: Any) -> int:
        weigher = self._weigher
        if weigher is None:
            return 1
        weight = weigher(key, value)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise v.fail("weigher(key, value)", "an int >= 0", weight)
        return weight

    def _put(self, key: Any, value: Any, life: float | None, loaded_in: float = 0.0) -> None:
        weight = 1 if self._weigher is None else self._weigh(key, value)
        timed = life is not None or self._eaa is not None
        now = self._now() if timed or self._stamp else 0.0
        events: list[Event] | None = [] if (self._listeners or GLOBAL_LISTENERS) else None
        lock = self._lock
        lock.acquire()
        try:
            if self._reads:
                self._drain()
            if self._flights:
                flight = self._flights.pop(key, None)
                if flight is not None:
                    flight.stale = True
            if self._negative:
                self._negative.pop(key, None)
            node = self._data.get(key)
            if node is None:
                slots = hash(key)
                freq = self._counts.pop(slots, 0) + 1
                self._inserts += 1
                # a list literal is faster to build than a slotted object (fields: _KEY...)
                node = [key, value, _WINDOW, freq, weight, slots, _INF, _INF, _INF, now]
                sampled = slots % self._lru_rate == 0
                node += (loaded_in, False, sampled)
                self._data[key] = self._window[key] = node
                self._weight += weight
                self._window_weight += weight
                if sampled:
                    self._lru_access(key)
            else:
                node[1] = value  # _VALUE
                delta = weight - node[4]
                if delta:
                    node[4] = weight
                    self._weight += delta
                    if node[2] == _WINDOW:
                        self._window_weight += delta
                    elif node[2] == _PROTECTED:
                        self._protected_weight += delta
                self._on_access(node)
                node[_WRITTEN] = now
                node[_LOADED_IN] = loaded_in
            if timed:
                self._timed = True
                self._plain = False
                deadline = _INF if life is None else now + life
                node[_DEADLINE] = deadline
                node[_EXPIRES] = deadline if self._eaa is None else min(deadline, now + self._eaa)
                self._schedule(node)
            elif self._timed and node[_EXPIRES] != _INF:
                node[_DEADLINE] = node[_EXPIRES] = _INF
            if self._timed:
                heap = self._heap
                if heap and heap[0][0] <= (now if timed else self._now()):
                    self._expire(now if timed else self._now(), events)
            if self._weight > self._max or self._window_weight > self._window_max:
                self._evict(events)
            self._steady = self._weight == self._max and self._window_weight == self._window_max
            if self._inserts >= self._due:
                self._periodic()
        finally:
            lock.release()
        if events:
            for event in events:
                emit(self._listeners, event)

    def delete(self, key: K) -> bool:
        """Remove ``key``; returns whether it was present (expired entries count as absent).

        Raises:
            CacheWriteError: write-through and the store failed (the cache is unchanged).

        Example::

            cache.delete(user_id)   # after the user changed
        """
        writer = self._writer
        if writer is not None:
            writer._delete(key)
        with self._lock:
            flight = self._flights.pop(key, None)
            if flight is not None:
                flight.stale = True
            self._negative.pop(key, None)
            node = self._data.get(key)
            if node is None:
                return False
            live = not self._timed or node[_EXPIRES] > self._now()
            self._unlink(node)
            self._dropped += 1
            return live

    def __delitem__(self, key: K) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def pop(self, key: K, default: Any = None) -> Any:
        """Remove ``key`` and return its value, or ``default`` when absent or expired."""
        with self._lock:
            node = self._data.get(key)
            if node is None or (self._timed and node[_EXPIRES] <= self._now()):
                return default
            value = node[_VALUE]
        self.delete(key)
        return value

    def clear(self) -> None:
        """Drop every entry (no events; the frequency history is kept)."""
        with self._lock:
            for flight in self._flights.values():
                flight.stale = True
            self._flights.clear()
            for node in self._data.values():
                node[_QUEUE] = _REMOVED
            self._dropped += len(self._data)
            self._data.clear()
            self._window.clear()
            self._probation.clear()
            self._protected.clear()
            self._heap.clear()
            self._negative.clear()
            del self._reads[:]
            self._weight = self._window_weight = self._protected_weight = 0
            self._steady = False

    # -- size, iteration, stats ---------------------------------------------------------------

    def cleanup(self) -> None:
        """Replay buffered reads and remove expired entries now (it happens on writes anyway)."""
        events: list[Event] | None = [] if (self._listeners or GLOBAL_LISTENERS) else None
        with self._lock:
            if self._reads:
                self._drain()
            if self._timed:
                self._expire(self._now(), events)
        if events:
            for event in events:
                emit(self._listeners, event)

    def __len__(self) -> int:
        """The number of live entries (expired ones are removed first)."""
        if self._timed:
            self.cleanup()
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        """The live keys, over a snapshot (expired entries are skipped)."""
        if self._timed:
            self.cleanup()
        with self._lock:
            nodes = list(self._data.values())
        for node in nodes:
            if node[_QUEUE] != _REMOVED and (not self._timed or node[_EXPIRES] > self._now()):
                yield node[_KEY]

    def keys(self) -> Iterator[K]:
        """Same as ``iter(cache)``."""
        return iter(self)

    def items(self) -> Iterator[tuple[K, V]]:
        """The live ``(key, value)`` pairs, over a snapshot."""
        if self._timed:
            self.cleanup()
        with self._lock:
            nodes = list(self._data.values())
        for node in nodes:
            if node[_QUEUE] != _REMOVED and (not self._timed or node[_EXPIRES] > self._now()):
                yield node[_KEY], node[_VALUE]

    @property
    def weight(self) -> int:
        """The total weight of the entries held (``len`` without a weigher)."""
        return self._weight

    def stats(self) -> CacheStats:
        """A frozen snapshot of the counters (see :class:`CacheStats`).

        Example::

            s = cache.stats()
            print(f"{s.hit_ratio:.1%} of {s.hits + s.misses} requests")
        """
        with self._lock:
            if self._reads:
                self._drain()
            hits, misses = self._hits, self._misses
            total = hits + misses
            return CacheStats(
                self.name,
                hits,
                misses,
                hits / total if total else 0.0,
                # every entry ever inserted is still here, or was dropped, expired or
                # evicted: set()'s fast path counts only the inserts
                self._inserts - len(self._data) - self._dropped - self._expirations,
                self._expirations,
                self._load_count,
                self._load_failures,
                self._load_time,
                self._refreshes,
                len(self._data),
                self._weight,
                self._max,
                self._window_max,
            )

    # -- maintenance (all under the lock) ------------------------------------------------------

    def _drain_locked(self) -> None:
        with self._lock:
            self._drain()

    def _drain(self) -> None:
        # The hot loop of every hit, amortised: field indices are literals (_QUEUE 2,
        # _FREQ 3, _KEY 0, _SAMPLED 12; _PROTECTED 2, _WINDOW 0, _PROBATION 1), and the
        # sampled-LRU update and the probation -> protected promotion are inlined.
        reads = self._reads
        n = len(reads)
        batch = reads[:n]
        del reads[:n]
        self._hits += n
        self._climb_hits += n
        self._climb_count += n
        window, protected, probation = self._window, self._protected, self._probation
        for node in batch:
            q = node[2]
            if q == 2:
                protected.move_to_end(node[0])
            elif q == 0:
                window.move_to_end(node[0])
            elif q == 1:  # a probation hit: to protected, demoting protected's LRU entries
                key = node[0]
                del probation[key]
                node[2] = 2
                protected[key] = node
                pw = self._protected_weight = self._protected_weight + node[4]  # _WEIGHT
                if pw > self._protected_max:
                    if pw == self._protected_max + 1 and node[4] == 1:  # (the usual case)
                        dkey, demoted = protected.popitem(last=False)
                        if demoted[4] == 1:
                            self._protected_weight = pw - 1
                            demoted[2] = 1
                            probation[dkey] = demoted
                        else:
                            protected[dkey] = demoted
                            protected.move_to_end(dkey, last=False)
                            self._demote()
                    else:
                        self._demote()
            else:  # removed since it was read
                continue
            node[3] += 1
            if node[12]:  # a sampled hit of ours, through the guard's LRU
                key = node[0]
                lru = self._lru
                if key in lru:
                    lru.move_to_end(key)
                    self._both_hit += 1
                else:
                    lru[key] = None
                    self._ours_only += 1
                    if len(lru) > self._lru_cap:
                        lru.popitem(last=False)
        self._additions += n
        self._due -= n
        if self._inserts >= self._due:
            self._periodic()

    def _periodic(self) -> None:
        """Aging and hill climbing, each due every so many accesses. set()'s fast path
        only counts inserts: ``_due`` is the insert count at which the next one is due,
        brought forward by the hits replayed meanwhile (see _drain)."""
        delta = self._inserts - self._inserts_seen
        self._inserts_seen = self._inserts
        self._additions += delta
        self._climb_count += delta
        # The history gains at most one hash per eviction: aging early when it outgrows
        # _HISTORY_CAP times the capacity bounds its memory (only scans get there).
        if self._additions >= self._sample_size or len(self._counts) > self._history_cap:
            self._age()
        if self._climb_count >= self._next_check:
            self._climb()
        ahead = min(
            self._sample_size - self._additions,
            self._next_check - self._climb_count,
            self._history_cap >> 2,
        )
        self._due = self._inserts + (ahead if ahead > 1 else 1)

    def _age(self) -> None:
        """TinyLFU's aging: halve the sketch and every resident entry's count."""
        self._counts = {
            h: ((f if f < _FREQ_CAP else _FREQ_CAP) - 1) >> 1
            for h, f in self._counts.items()
            if f > 2
        }
        self._additions //= 2
        for node in self._data.values():
            f = node[_FREQ]
            node[_FREQ] = (f if f < _FREQ_CAP else _FREQ_CAP) >> 1

    def _on_access(self, node: _Node) -> None:
        node[_FREQ] += 1
        self._additions += 1
        q = node[_QUEUE]
        if q == _WINDOW:
            self._window.move_to_end(node[_KEY])
        elif q == _PROTECTED:
            self._protected.move_to_end(node[_KEY])
        else:
            self._promote(node)

    def _promote(self, node: _Node) -> None:
        """A probation hit: move it to protected, demoting protected's LRU on overflow."""
        key = node[_KEY]
        del self._probation[key]
        node[_QUEUE] = _PROTECTED
        self._protected[key] = node
        self._protected_weight += node[_WEIGHT]
        if self._protected_weight > self._protected_max:
            self._demote()

    def _demote(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_weight > self._protected_max and protected:
            key, node = protected.popitem(last=False)
            self._protected_weight -= node[_WEIGHT]
            node[_QUEUE] = _PROBATION
            probation[key] = node

    def _unlink(self, node: _Node) -> None:
        key = node[_KEY]
        del self._data[key]
        q = node[_QUEUE]
        if q == _WINDOW:
            del self._window[key]
            self._window_weight -= node[_WEIGHT]
        elif q == _PROBATION:
            del self._probation[key]
        else:
            del self._protected[key]
            self._protected_weight -= node[_WEIGHT]
        self._weight -= node[_WEIGHT]
        self._steady = False
        node[_QUEUE] = _REMOVED
        self._counts[node[_SLOTS]] = node[_FREQ]  # saturated when aged

    def _evict(self, events: list[Event] | None) -> None:
        """Caffeine's eviction: window overflow -> probation candidates; then, while over
        capacity, each candidate duels probation's LRU victim on estimated frequency."""
        window, probation = self._window, self._probation
        if (
            self._weight == self._max + 1
            and self._window_weight == self._window_max + 1
            and self._weigher is None
            and probation
        ):
            # The steady state without a weigher: one cand against one vic.
            key, cand = window.popitem(last=False)
            self._window_weight -= 1
            vkey = next(iter(probation))
            vic = probation[vkey]
            cf = cand[3]  # _FREQ, compared saturated
            vf = vic[3]
            if cf > _FREQ_CAP:
                cf = _FREQ_CAP
            if vf > _FREQ_CAP:
                vf = _FREQ_CAP
            if cf > vf or (cf >= _ADMIT_HASHDOS_THRESHOLD and self._random.getrandbits(7) == 0):
                cand[2] = _PROBATION
                probation[key] = cand
                del probation[vkey]
                del self._data[vkey]
                evicted = vic
            else:
                del self._data[key]
                evicted = cand
            self._weight -= 1
            evicted[2] = _REMOVED
            self._counts[evicted[5]] = evicted[3]  # saturated when aged
            if events is not None:
                events.append(CacheEvicted(self.name, evicted[0], evicted[1], "size"))
            return
        candidates: list[_Node] = []
        while self._window_weight > self._window_max and window:
            key, node = window.popitem(last=False)
            self._window_weight -= node[4]  # _WEIGHT
            node[2] = _PROBATION  # _QUEUE
            probation[key] = node
            candidates.append(node)
        pick = 0
        count = len(candidates)
        while self._weight > self._max:
            candidate: _Node | None = None
            while pick < count:
                c = candidates[pick]
                if c[2] == _PROBATION:
                    candidate = c
                    break
                pick += 1
            victim: _Node | None = None
            if probation:
                for k in probation:
                    victim = probation[k]
                    break
            elif self._protected:
                for k in self._protected:
                    victim = self._protected[k]
                    break
            elif window:
                for k in window:
                    victim = window[k]
                    break
            if candidate is None or victim is None or victim is candidate:
                evict = victim if victim is not None else candidate
                if evict is None:
                    break
            else:
                cf = candidate[3]  # _FREQ, compared saturated
                vf = victim[3]
                if cf > _FREQ_CAP:
                    cf = _FREQ_CAP
                if vf > _FREQ_CAP:
                    vf = _FREQ_CAP
                if candidate[4] > self._max:
                    evict = candidate
                elif cf > vf:
                    evict = victim
                elif cf >= _ADMIT_HASHDOS_THRESHOLD and self._random.getrandbits(7) == 0:
                    evict = victim  # a warm candidate sometimes wins: defeats hash flooding
                else:
                    evict = candidate
            if candidate is not None:
                pick += 1
            self._unlink(evict)
            if events is not None:
                events.append(CacheEvicted(self.name, evict[0], evict[1], "size"))

    def _lru_access(self, key: Any) -> None:
        """A sampled miss of ours, through the guard's LRU."""
        lru = self._lru
        if key in lru:
            lru.move_to_end(key)
            self._lru_only += 1
        else:
            lru[key] = None
            self._both_missed += 1
            if len(lru) > self._lru_cap:
                lru.popitem(last=False)

    def _lru_wins(self) -> bool | None:
        """The LRU guard's verdict on the sampled requests since its last one (None: too
        few yet): did plain LRU clearly beat us? A paired comparison (McNemar): only the
        requests where exactly one of the two hit tell them apart."""
        lru_only, ours_only = self._lru_only, self._ours_only
        n = lru_only + ours_only + self._both_hit + self._both_missed
        if n < _LRU_MIN_SAMPLE or self._max < _LRU_MIN_SIZE:
            return None
        self._lru_only = self._ours_only = self._both_hit = self._both_missed = 0
        lead = lru_only - ours_only
        # LRU must win by a point, and by more than two standard errors
        wins = lead > _LRU_MARGIN * n and lead > 2.0 * math.sqrt(lru_only + ours_only)
        self._lru_streak = self._lru_streak + 1 if wins else 0
        return self._lru_streak >= _LRU_STREAK

    def _climb(self) -> None:
        """Caffeine's hill climber: every sample period, step the window size in the
        direction that improved the hit ratio (a large change restarts the step size; a
        large drop is not acted on). The LRU guard also judges at checkpoints between."""
        sample = self._climb_count
        if self._max < 2:
            self._climb_hits = self._climb_count = 0
            return
        if sample < self._climb_period:
            # a checkpoint inside the period: only the LRU guard may act
            self._next_check = sample + self._check_step
            if self._lru_wins():
                self._grow_window(int(_LRU_STEP * self._max))
                self._step = abs(self._step)
            self._steady = self._weight == self._max and self._window_weight == self._window_max
            return
        self._next_check = self._check_step
        hit_rate = self._climb_hits / sample
        change = hit_rate - self._prev_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            # restart big steps; a large drop is mostly the workload's doing (a phase
            # change), and the first period has no baseline: stay put on those
            step = _STEP_PERCENT * self._max * (1 if amount >= 0 else -1)
            if change < 0 or self._prev_hit_rate < 0:
                amount = 0.0
        else:
            step = _STEP_DECAY * amount
        if self._lru_wins():
            # Plain LRU beat us: recency dominates, grow the window in a big step and
            # keep growing while it helps.
            amount = max(amount, _LRU_STEP * self._max)
            step = abs(step)
        self._prev_hit_rate = hit_rate
        self._step = step
        self._climb_hits = self._climb_count = 0
        adjustment = int(amount)
        if adjustment > 0:
            self._grow_window(adjustment)
        elif adjustment < 0:
            self._shrink_window(-adjustment)
        self._steady = self._weight == self._max and self._window_weight == self._window_max

    def _grow_window(self, quota: int) -> None:
        quota = min(quota, self._protected_max)
        if quota <= 0:
            return
        self._protected_max -= quota
        self._window_max += quota
        self._demote()
        window = self._window
        for _ in range(1000):
            source = self._probation or self._protected
            if not source:
                break
            key = next(iter(source))
            node = source[key]
            if node[_WEIGHT] > quota:
                break
            quota -= node[_WEIGHT]
            del source[key]
            if node[_QUEUE] == _PROTECTED:
                self._protected_weight -= node[_WEIGHT]
            node[_QUEUE] = _WINDOW
            window[key] = node
            self._window_weight += node[_WEIGHT]
        self._window_max -= quota
        self._protected_max += quota

    def _shrink_window(self, quota: int) -> None:
        quota = min(quota, self._window_max - 1)
        if quota <= 0:
            return
        self._protected_max += quota
        self._window_max -= quota
        window, probation = self._window, self._probation
        for _ in range(1000):
            if not window:
                break
            key = next(iter(window))
            node = window[key]
            if node[_WEIGHT] > quota:
                break
            quota -= node[_WEIGHT]
            del window[key]
            self._window_weight -= node[_WEIGHT]
            node[_QUEUE] = _PROBATION
            probation[key] = node
        self._protected_max -= quota
        self._window_max += quota

    def _schedule(self, node: _Node) -> None:
        """Push a heap entry unless a live one already fires no later (lazy re-push)."""
        if node[_EXPIRES] < node[_SCHEDULED]:
            node[_SCHEDULED] = node[_EXPIRES]
            heap = self._heap
            heapq.heappush(heap, (node[_EXPIRES], next(self._seq), node))
            if len(heap) > 2 * len(self._data) + 64:
                self._compact()

    def _compact(self) -> None:
        heap = [
            (n[_SCHEDULED], s, n)
            for (t, s, n) in self._heap
            if n[_QUEUE] != _REMOVED and t == n[_SCHEDULED]
        ]
        heapq.heapify(heap)
        self._heap = heap

    def _expire(self, now: float, events: list[Event] | None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, node = heapq.heappop(heap)
            if node[_QUEUE] == _REMOVED or when != node[_SCHEDULED]:
                continue  # stale entry
            if node[_EXPIRES] > now:  # read since (time to idle) or rewritten later
                node[_SCHEDULED] = node[_EXPIRES]
                if node[_EXPIRES] != _INF:
                    heapq.heappush(heap, (node[_EXPIRES], next(self._seq), node))
                else:
                    node[_SCHEDULED] = _INF
                continue
            node[_SCHEDULED] = _INF
            self._unlink(node)
            self._expirations += 1
            if events is not None:
                events.append(CacheEvicted(self.name, node[_KEY], node[_VALUE], "expired"))

    # -- loading ------------------------------------------------------------------------------

    def _live(self, key: Any) -> _Node | None:
        """The live node for ``key`` recorded as a hit, or ``None`` recorded as a miss."""
        node = self._data.get(key)
        if node is not None:
            if self._timed:
                now = self._now()
                if node[_EXPIRES] <= now:
                    self._misses += 1
                    return None
                if self._eaa is not None:
                    node[_EXPIRES] = min(node[_DEADLINE], now + self._eaa)
            reads = self._reads
            reads.append(node)
            if len(reads) >= _READ_BUFFER:
                self._drain_locked()
            return node
        self._misses += 1
        return None

    def _wants_refresh(self, node: _Node) -> bool:
        if node[_REFRESHING]:
            return False
        if self._refresh_after is not None and self._now() - node[_WRITTEN] >= self._refresh_after:
            return True
        if self._early is not None and node[_DEADLINE] != _INF:
            # XFetch: refresh when now - delta * beta * ln(rand) >= deadline.
            r = self._random.random() or 1e-12
            gap = -node[_LOADED_IN] * self._early * math.log(r)
            if self._now() + gap >= node[_DEADLINE]:
                return True
        return False

    def _negative_hit(self, key: Any) -> BaseException | None:
        if not self._negative:
            return None
        with self._lock:
            entry = self._negative.get(key)
            if entry is None:
                return None
            if entry.until <= self._now():
                del self._negative[key]
                return None
            return entry.exception

    def _join(self, key: Any, by_task: bool) -> tuple[_Flight, bool]:
        """The flight for ``key`` and whether we lead it (must run the loader)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight(by_task)
            return flight, True

    def _finish(
        self,
        key: Any,
        flight: _Flight,
        value: Any,
        error: BaseException | None,
        started: float,
        refreshing: _Node | None = None,
    ) -> None:
        elapsed = max(self._now() - started, 0.0)
        cache_error = False
        with self._lock:
            self._load_count += 1
            self._load_time += elapsed
            if self._flights.get(key) is flight:
                del self._flights[key]
            if refreshing is not None:
                refreshing[_REFRESHING] = False
            if error is not None:
                self._load_failures += 1
                if (
                    self._negative_ttl is not None
                    and isinstance(error, Exception)
                    and not flight.stale
                ):
                    cache_error = True
                    self._negative[key] = _Negative(error, self._now() + self._negative_ttl)
                    self._negative.move_to_end(key)
                    while len(self._negative) > max(self._max, 1):
                        self._negative.popitem(last=False)
        if error is None:
            if not flight.stale:
                try:
                    self._put_loaded(key, value, elapsed)
                except Exception as exc:  # a bad weight, a failed write-through
                    flight.future.set_exception(exc)
                    return
            flight.future.set_result(value)
        else:
            if isinstance(error, Exception) and (self._listeners or GLOBAL_LISTENERS):
                emit(self._listeners, CacheLoadFailed(self.name, key, error, cache_error))
            flight.future.set_exception(error)

    def _put_loaded(self, key: Any, value: Any, elapsed: float) -> None:
        writer = self._writer
        if writer is not None and writer._on_load:
            writer._write(key, value)
        self._put(key, value, self._ttl, elapsed)

    def get_or_load_sync(self, key: K, loader: Callable[[K], V]) -> V:
        """The cached value, or ``loader(key)``'s result, cached (sync twin of
        :meth:`get_or_load`).

        Concurrent misses on one key (any threads) run ``loader`` once; the others wait
        for its result, or its exception, which is raised to each of them and not cached
        (unless ``negative_ttl``). With ``refresh_after``/``early_expiration`` a stale hit
        returns the old value and one background thread reloads it.

        Raises:
            Exception: whatever ``loader`` raised (or the cached error with ``negative_ttl``).

        Example::

            user = cache.get_or_load_sync(uid, db.fetch_user)
        """
        node = self._live(key)
        if node is not None:
            value = node[_VALUE]
            if self._stamp and self._wants_refresh(node):
                self._refresh_sync(key, node, loader)
            return cast(V, value)
        return cast(V, self._load_sync(key, loader))

    def _load_sync(self, key: Any, loader: Callable[[Any], Any]) -> Any:
        """The miss half of :meth:`get_or_load_sync` (the lookup was counted already)."""
        cached_error = self._negative_hit(key)
        if cached_error is not None:
            raise cached_error
        flight, leader = self._join(key, False)
        if not leader:
            if flight.led_by_task and _in_event_loop():
                # Blocking here could starve the loop that runs that load: load alone.
                return loader(key)
            return cast(V, flight.future.result())
        started = self._now()
        try:
            value = loader(key)
        except BaseException as exc:
            self._finish(key, flight, None, exc, started)
            raise
        self._finish(key, flight, value, None, started)
        return cast(V, flight.future.result())  # raises if the value could not be stored

    async def get_or_load(self, key: K, loader: Callable[[K], Awaitable[V] | V]) -> V:
        """The cached value, or ``await loader(key)``'s result, cached.

        ``loader`` may be ``async def`` or plain. Concurrent misses on one key (any tasks,
        any threads) run it once: the load runs in its own task, so a waiter being
        cancelled neither cancels it nor the other waiters; the cancellation reaches that
        waiter. A loader error reaches every waiter and is not cached (unless
        ``negative_ttl``). With ``refresh_after``/``early_expiration`` a stale hit returns
        the old value while one background task reloads it.

        Raises:
            Exception: whatever ``loader`` raised (or the cached error with ``negative_ttl``).

        Example::

            user = await cache.get_or_load(uid, fetch_user)
        """
        node = self._live(key)
        if node is not None:
            value = node[_VALUE]
            if self._stamp and self._wants_refresh(node):
                self._refresh_async(key, node, loader)
            return cast(V, value)
        cached_error = self._negative_hit(key)
        if cached_error is not None:
            raise cached_error
        flight, leader = self._join(key, True)
        if leader:
            self._spawn(self._run_load(key, flight, loader, None))
        return cast(V, await _wait(flight.future))

    def _spawn(self, load: Coroutine[Any, Any, None]) -> None:
        """Run a load in its own task, referenced until done (the loop only keeps weak
        references to tasks)."""
        task = asyncio.get_running_loop().create_task(load)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_load(
        self,
        key: Any,
        flight: _Flight,
        loader: Callable[[Any], Any],
        refreshing: _Node | None,
    ) -> None:
        started = self._now()
        try:
            value = loader(key)
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            self._finish(key, flight, None, exc, started, refreshing)
            if not isinstance(exc, Exception):
                raise
            return
        self._finish(key, flight, value, None, started, refreshing)

    def _start_refresh(self, key: Any, node: _Node, by_task: bool) -> _Flight | None:
        with self._lock:
            if node[_REFRESHING] or node[_QUEUE] == _REMOVED or key in self._flights:
                return None
            node[_REFRESHING] = True
            self._refreshes += 1
            flight = self._flights[key] = _Flight(by_task)
            return flight

    def _refresh_async(self, key: Any, node: _Node, loader: Callable[[Any], Any]) -> None:
        flight = self._start_refresh(key, node, True)
        if flight is not None:
            flight.future.add_done_callback(_consume)
            self._spawn(self._run_load(key, flight, loader, node))

    def _refresh_sync(self, key: Any, node: _Node, loader: Callable[[Any], Any]) -> None:
        flight = self._start_refresh(key, node, False)
        if flight is None:
            return
        flight.future.add_done_callback(_consume)

        def run() -> None:
            started = self._now()
            try:
                value = loader(key)
            except BaseException as exc:
                self._finish(key, flight, None, exc, started, node)
                return
            self._finish(key, flight, value, None, started, node)

        threading.Thread(target=run, name=f"{self.name}-refresh", daemon=True).start()

    # -- lifecycle ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending write-behind entry now (a no-op without write-behind).

        Raises:
            CacheWriteError: some writes still failed after the retries.

        Example::

            cache.flush()   # before a checkpoint: everything acknowledged is stored
        """
        if self._writer is not None:
            self._writer._flush()

    def close(self) -> None:
        """Flush pending writes and stop the writer; the cache still serves reads.

        Raises:
            CacheWriteError: write-behind entries could not be stored (they are in
                ``pending``; nothing acknowledged is dropped silently).

        Example::

            with bt.Cache(10_000, writer=WriteBehind(store)) as cache:
                serve(cache)
            # closed: every queued write was stored, or CacheWriteError says which not
        """
        if self._writer is not None:
            self._writer._close()

    def _closed_error(self) -> CacheError:
        return CacheError(f"cache {self.name!r} is closed", cache=self.name)

    def __enter__(self) -> Cache[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _consume(future: concurrent.futures.Future[Any]) -> None:
    """Mark a refresh's outcome retrieved (nobody waits on a refresh)."""
    if not future.cancelled():
        future.exception()


async def _wait(future: concurrent.futures.Future[Any]) -> Any:
    """Await a shared flight; cancelling this waiter leaves the flight running."""
    if future.done():
        return future.result()
    loop = asyncio.get_running_loop()
    mine: asyncio.Future[Any] = loop.create_future()

    def relay(done: concurrent.futures.Future[Any]) -> None:
        def settle() -> None:
            if mine.done():
                return
            exc = done.exception()
            if isinstance(exc, asyncio.CancelledError):
                mine.cancel()  # the load's task was cancelled (its loop is shutting down)
            elif exc is not None:
                mine.set_exception(exc)
            else:
                mine.set_result(done.result())

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the waiter's loop is closed
            pass

    future.add_done_callback(relay)
    return await mine
