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
  its entry leaves and taken back when the key returns. Every ``12 * max_size``
  accesses all counts are halved and the ones seen once forgotten (TinyLFU's aging),
  so the count is a recent frequency; a count is compared saturated at 15, as a 4-bit
  counter would be, and a tie at the cap goes to the candidate (see ``_FREQ_CAP``).
  This replaces the count-min sketch of the paper and Caffeine: in CPython, hashing a
  key into four counters and updating them conservatively costs ~60 bytecodes per
  miss, a dict pop ~8, and the exact counts admit no worse. Memory: the doorkeeper set
  the sketch needed already held one hash per key seen in the period; the history holds
  at most ``_HISTORY_CAP * max_size`` hashes (it ages early when a scan of new keys
  would grow it further).
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

A hit takes no lock. It counts itself (the entry's frequency and the hit counter) and,
for an entry in the window or in protected, moves its key to the MRU end with
``OrderedDict.move_to_end`` (one C call, on the queue the entry holds: no test of which
queue it is), and the LRU guard's too when it samples the key.
A probation hit (a promotion, several steps) is appended to a read buffer instead and
replayed under the lock in batches, on the next write or when the buffer fills, as
Caffeine does with all its reads; while protected has no room at all (the climber gave
it to the window), a probation hit is a ``move_to_end`` in probation, which is where a
promotion would have left it. The lock is a token mutex (``_mutex``): taking and giving
it back are a ``list.pop`` and a ``list.append`` when uncontended. Entries are plain
lists (see ``_KEY`` ... ``_REFRESHING``): cheaper to build than slotted objects.

Thread safety of the lock-free ``get`` (GIL builds): ``dict.get``, ``list.append``,
``OrderedDict.move_to_end`` and attribute reads/writes are each atomic under the GIL.
``get`` never changes which queue holds a key; every structural change happens under
``_lock``. A hit racing a demotion may find its key gone from the queue it read
(``KeyError``, ignored: the entry moved on anyway); the guard's LRU, a statistical
witness, tolerates the same races. A hit racing an eviction may return
the value being evicted (it was present when looked up: the read linearises before the
eviction). The drain takes a prefix of the buffer with ``buf[:n]`` / ``del buf[:n]``, so
a concurrent append is never lost. Counters updated without the lock (``_hits``,
``_misses``, an entry's frequency) may undercount under heavy thread contention; they
feed statistics and the policy's estimates, which tolerate it.
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
from typing import Any, Generic, TypeAlias, TypeVar, cast, final

from .. import _validate as v
from .._clock import Clock, resolve
from .._events import GLOBAL_LISTENERS, Event, Listener, emit
from .._policy import next_index
from ._errors import CacheError
from ._events import CacheEvicted, CacheLoadFailed
from ._mutex import Mutex
from ._write import CacheWriter

__all__ = ["Cache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# An entry's queue field (_QUEUE) holds the queue itself for window and protected entries
# (a hit moves the key with ``node[2].move_to_end(key)``, no test of which queue it is),
# ``_PROBATION`` (None) for probation entries (a hit there is a promotion) and ``_GONE``
# for removed ones (an empty queue: its ``move_to_end`` raises ``KeyError``).
_PROBATION = None
_GONE: OrderedDict[Any, Any] = OrderedDict()
_READ_BUFFER = 128
_INF = math.inf

# Caffeine's tuning constants.
_INITIAL_WINDOW = 0.005  # of the maximum (Caffeine: 0.01)
_PROTECTED_SHARE = 0.80  # of the main space
# Hill climber step, of the maximum (Caffeine: 0.0625). Small: on phase-changing
# workloads (OLTP) most of the climber's moves answer the workload, not the last step,
# and small steps keep that noise from walking the window far from the split it found.
_STEP_PERCENT = 0.025
_STEP_DECAY = 0.98
# Caffeine: 0.05. A change of the hit ratio this large restarts the step size; a large
# drop is mostly the workload's doing (a phase change), so the climber does not move on it.
_RESTART_THRESHOLD = 0.02
_ADMIT_HASHDOS_THRESHOLD = 6
_CLIMB_PERIOD = 10  # hill climber sample, in multiples of the maximum
# _periodic takes this share (4/5) of the inserts it foresees until its point. Caffeine
# has no such constant (its maintenance runs on every write); here it decides how often
# set() leaves its fast path (1/2: ~8 calls per check step), and on phase-changing traces
# the climber's walk is sensitive to when it judges: over the 23 benchmark rows, 1/2,
# 3/4, 4/5 and 1 move OLTP's hit ratio by up to a point either way (4/5 had the best
# worst-row margin against theine; see docs/cache.md).
_FORESEE = (4, 5)
_AGE_PERIOD = 12  # TinyLFU's aging sample, in multiples of the maximum (Caffeine: 10)
# Counts compare saturated, as Caffeine's 4-bit counters. Saturation hides which of two
# entries is hotter, so a tie at the cap goes to the candidate (the more recent one):
# a victim at the cap would otherwise stay until aging brought it down, however stale.
_FREQ_CAP = 15
# The frequency history holds at most this many hashes per entry (16 until 2026-11-22:
# no benchmark trace but OLTP's scans reaches 8; at 4, multi2 512 gains 0.14 points and
# no row loses its goal; memory a quarter).
_HISTORY_CAP = 4
# The LRU guard (ours, not Caffeine's): see Cache._climb.
_LRU_SAMPLING = 8  # the LRU guard samples 1 key in 8 (fewer for small caches)
_LRU_MIN_SAMPLE = 256  # sampled requests needed for the guard to speak
_LRU_MIN_SIZE = 256  # below, a sampled LRU is too small to be a reliable witness
_LRU_NEVER = 1 << 64  # the sampling rate below _LRU_MIN_SIZE: no hash but 0 is a multiple
_LRU_MARGIN = 0.01  # LRU must win by a point
_LRU_STEP = 0.25  # of the maximum
_LRU_STREAK = 1  # judgements in a row LRU must win before the guard acts
_LRU_CHECKS = 4  # the guard judges 4 times per climber period (it reacts during warm-up)


# An entry is a plain list (cheaper to build than a slotted object): these are its fields.
# set()'s fast path builds the short form (the first _SHORT fields); an entry gets the
# timing fields (_TAIL) when its cache first needs them (see _widen).
_KEY, _VALUE, _QUEUE, _FREQ, _HASH = 0, 1, 2, 3, 4
_SAMPLED = 5  # whether the LRU guard samples this key
_WEIGHT = 6
_SHORT = 7
_EXPIRES = 7  # min(deadline, last access + expire_after_access)
_DEADLINE = 8  # write time + ttl
_SCHEDULED = 9  # the deadline of this entry's live heap entry
_WRITTEN, _LOADED_IN, _REFRESHING = 10, 11, 12
_TAIL = (_INF, _INF, _INF, 0.0, 0.0, False)  # _EXPIRES ... _REFRESHING, untimed
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


@final
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

    ``get`` of a present key takes no lock; most hits move their key themselves, a
    probation hit is replayed later in a batch (see the module notes). The sync API is
    thread-safe and the async one task-safe.

    ``Cache`` is final: subclassing it raises ``TypeError`` (wheels compile it, and a
    compiled class cannot have Python subclasses); wrap one instead.

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
        "_budget",
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
        "_hits_seen",
        "_inserts",
        "_inserts_seen",
        "_listeners",
        "_listening",
        "_load_count",
        "_load_failures",
        "_load_time",
        "_lock",
        "_lru",
        "_lru_cap",
        "_lru_only",
        "_lru_rate",
        "_lru_streak",
        "_marks",
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
        "_simple",
        "_stamp",
        "_steady",
        "_step",
        "_tasks",
        "_timed",
        "_token",
        "_ttl",
        "_unread",
        "_waiters",
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
        self._listening = bool(self._listeners)
        self._lock = Mutex()
        self._token, self._waiters = self._lock.token, self._lock.waiters  # (set inlines it)
        self._data: dict[Any, _Node] = {}
        self._window: OrderedDict[Any, _Node] = OrderedDict()
        self._probation: OrderedDict[Any, _Node] = OrderedDict()
        self._protected: OrderedDict[Any, _Node] = OrderedDict()
        self._reads: list[_Node] = []
        self._unread = False  # whether _reads may hold entries (set()'s cheap test)
        # The frequency history (TinyLFU): hash -> recent count of keys not in the cache
        # (entries carry their own count and fold it back in when they leave).
        self._counts: dict[int, int] = {}
        self._additions = 0  # accesses counted toward the next aging
        self._inserts = self._inserts_seen = self._hits_seen = 0
        # (inserts, hits) at the last two marks, a check step apart (see _periodic)
        self._marks = ((0, 0), (0, 0))
        self._dropped = 0  # entries removed by delete/clear (not evicted, not expired)
        # set()'s one-for-one path: while the cache is full with the window at its size,
        # ``_steady`` counts down the inserts it may take before periodic work is due (a
        # run of ``_budget``; see _resteady). 0: take the general path.
        self._steady = self._budget = 0
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
        self._due = 1  # the insert count at which _periodic is next due (it foresees the rest)
        # The LRU guard: an LRU of max_size / rate over the keys whose hash is a
        # multiple of rate (spatial sampling), to tell when plain recency would do better.
        self._lru_rate = max(1, min(_LRU_SAMPLING, self._max // 64))
        if self._max < _LRU_MIN_SIZE:
            # the guard never speaks for caches this small (see _lru_wins): sample no key
            # but those hashing to 0 (h % 2**64 == 0), sparing every other access its work
            self._lru_rate = _LRU_NEVER
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
        # set() takes its inlined fast path while nothing needs a clock, a weigher or a
        # writer (``_simple``) and no load or cached load error is pending (``_plain``)
        self._simple = not self._timed and not self._stamp and weigher is None and writer is None
        self._plain = self._simple

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The compiled build (wheels) cannot have Python subclasses; refusing them here
        # too keeps code that runs on a pure-Python install running on a wheel.
        raise TypeError(
            f"class {cls.__name__}: Cache cannot be subclassed; wrap one instead (its "
            "extension points are weigher=, writer=, listeners= and clock=)"
        )

    def __repr__(self) -> str:
        return f"Cache(max_size={self._max}, ttl={self._ttl}, name={self.name!r})"

    @property
    def max_size(self) -> int:
        """The capacity: entries, or total weight with a weigher."""
        return self._max

    # -- the hot path -----------------------------------------------------------------------

    def get(self, key: K, default: Any = None) -> Any:
        """The value cached for ``key``, or ``default`` (``None``) when absent or expired.

        Takes no lock (see the module notes).

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
            # field indices are literals here (no global lookups on a hit): _FREQ 3,
            # _QUEUE 2, _SAMPLED 5, _VALUE 1
            node[3] = node[3] + 1  # (x = x + 1: two bytecodes fewer than x += 1 here)
            self._hits = self._hits + 1
            q = node[2]  # the window or protected (or _GONE), or None: probation
            if q is not None:
                try:
                    q.move_to_end(key)
                except KeyError:  # moved or removed meanwhile by a writer: its order is moot
                    pass
            elif not self._protected_max:
                # A probation hit while protected has no room (the climber gave it all to
                # the window): promoting it would demote it straight back to probation's
                # MRU end, which is where this puts it (the main space is one LRU).
                try:
                    self._probation.move_to_end(key)
                except KeyError:  # left probation meanwhile
                    pass
            else:  # a probation hit (a promotion: under the lock)
                reads = self._reads
                reads.append(node)
                self._unread = True
                if len(reads) >= 128:  # _READ_BUFFER
                    self._drain_locked()
                return node[1]
            if node[5]:  # a key the LRU guard samples: a hit of ours, through its LRU
                lru = self._lru
                try:
                    if key in lru:
                        lru.move_to_end(key)
                        self._both_hit += 1
                    else:
                        lru[key] = None
                        self._ours_only += 1
                        if len(lru) > self._lru_cap:
                            lru.popitem(False)
                except KeyError:  # a writer moved the guard's LRU meanwhile
                    pass
            return node[1]
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
        token = self._token  # the lock (see _mutex: taking it is a list.pop)
        try:
            token.pop()
        except IndexError:
            self._lock.wait()
        if ttl is not None or not self._plain:
            # (checked under the lock: a cache turns timed, or a load starts, under it)
            self._lock.release()
            self._set_slow(key, value, ttl)
            return
        # The common configuration (``_plain``: no expiry, weigher, refresh or writer, and
        # no load pending): the steps of _put, minus every test they make unnecessary, with
        # the steady-state eviction inlined. Every bytecode here is paid on every miss:
        # field indices are literals (_FREQ 3, _QUEUE 2, _HASH 4), the eviction count is
        # derived (see stats), the aging and climbing counts too (see _periodic).
        evicted = None
        try:
            if self._unread:  # (a bool: testing the list's truth is a C call)
                self._drain()
            h = hash(key)
            sampled = h % self._lru_rate == 0
            # Built before looking: ``setdefault`` inserts it in the lookup that tells a
            # new key from an update (which drops it). Fields _KEY ... _WEIGHT (the short
            # form); the count resumes from the history.
            data, window, counts = self._data, self._window, self._counts
            count = counts.pop(h, 0)
            new = [key, value, window, count + 1, h, sampled, 1]
            node = data.setdefault(key, new)
            if node is not new:  # an update
                if count:  # another key's history (a resident key has none): put it back
                    counts[h] = count
                node[1] = value  # _VALUE
                self._on_access(node)
            else:
                window[key] = new
                if sampled:  # the LRU guard's sampled LRU (_lru_access, inlined)
                    lru = self._lru
                    if key in lru:  # a miss that LRU would have hit
                        lru.move_to_end(key)
                        self._lru_only += 1
                    else:
                        lru[key] = None
                        self._both_missed += 1
                        if len(lru) > self._lru_cap:
                            lru.popitem(False)
                s = self._steady
                if s > 0:  # (an int compared: no truth-value call)
                    probation = self._probation
                    for vkey in probation:
                        # The steady state (full, window at its size): the window's LRU
                        # entry (the candidate) duels probation's LRU entry (the victim,
                        # ``vkey``: the loop only takes the first key) on frequency,
                        # compared saturated at _FREQ_CAP (15), a tie at the cap to the
                        # candidate (so cf >= 15 wins outright); one of them goes.
                        self._steady = s - 1
                        ckey, cand = window.popitem(False)
                        vic = probation[vkey]
                        cf = cand[3]
                        if (
                            cf > vic[3]
                            or cf >= 15
                            or (cf >= 6 and self._random.getrandbits(7) == 0)
                        ):  # (a warm candidate sometimes wins: _ADMIT_HASHDOS_THRESHOLD, 6)
                            cand[2] = None  # _PROBATION
                            probation[ckey] = cand
                            del probation[vkey]
                            del data[vkey]
                            evicted = vic
                        else:
                            del data[ckey]
                            evicted = cand
                        evicted[2] = _GONE
                        counts[evicted[4]] = evicted[3]  # saturated when aged
                        break
                    else:  # probation emptied by hits: the general path
                        evicted = self._settle()
                else:
                    evicted = self._settle()
        finally:
            token.append(True)  # (self._lock.release(), inlined)
            if self._waiters:
                self._lock.wake()
        if (self._listening or GLOBAL_LISTENERS) and evicted is not None:
            self._announce(evicted)

    def _set_slow(self, key: Any, value: Any, ttl: float | timedelta | None) -> None:
        life = self._ttl if ttl is None else v.seconds("ttl", ttl)
        writer = self._writer
        if writer is not None:
            writer._write(key, value)
        self._put(key, value, life)

    def _settle(self) -> list[Event] | None:
        """set()'s general path after a new entry joined the window: count it, run the
        periodic work when due, evict while over capacity; the events made (or None)."""
        self._unsteady()
        self._inserts += 1
        if self._inserts >= self._due:
            self._periodic()
        self._weight += 1
        self._window_weight += 1
        events: list[Event] | None = None
        if self._weight > self._max or self._window_weight > self._window_max:
            events = [] if (self._listeners or GLOBAL_LISTENERS) else None
            self._evict(events)
        self._resteady()
        return events or None

    def _unsteady(self) -> None:
        """End the steady run: fold the inserts it took into ``_inserts``."""
        self._inserts += self._budget - self._steady
        self._budget = self._steady = 0

    def _resteady(self) -> None:
        """Start a steady run when the cache is full with the window at its size (and
        probation has a victim): set() may then take that many inserts one-for-one
        before the periodic work is due (``_due``)."""
        self._unsteady()
        if (
            self._weight == self._max
            and self._window_weight == self._window_max
            and self._probation
            and self._weigher is None
        ):
            run = self._due - self._inserts - 1
            if run > 0:
                self._steady = self._budget = run

    def _announce(self, evicted: _Node | list[Event]) -> None:
        # set()'s fast path passes the node it evicted, its slow path the events it made
        # (a node ends with its weight or _REFRESHING; its key may be anything, even an Event)
        if isinstance(evicted[-1], Event):
            for event in evicted:
                emit(self._listeners, event)
        else:
            emit(self._listeners, CacheEvicted(self.name, evicted[0], evicted[1], "size"))

    def __setitem__(self, key: K, value: V) -> None:
        """``cache[key] = value``: :meth:`set` with the cache's ttl."""
        self.set(key, value)

    def _weigh(self, key: Any, value: Any) -> int:
        weigher = self._weigher
        if weigher is None:
            return 1
        weight = weigher(key, value)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise v.fail("weigher(key, value)", "an int >= 0", weight)
        return weight

    def _put(
        self,
        key: Any,
        value: Any,
        life: float | None,
        loaded_in: float = 0.0,
        flight: _Flight | None = None,
    ) -> None:
        """Store ``value``; ``flight``: the load it comes from, stored only while that load
        is not stale (checked under the lock, where every write or delete marks it)."""
        weight = 1 if self._weigher is None else self._weigh(key, value)
        timed = life is not None or self._eaa is not None
        now = self._now() if timed or self._stamp else 0.0
        events: list[Event] | None = [] if (self._listeners or GLOBAL_LISTENERS) else None
        lock = self._lock
        lock.acquire()
        try:
            if flight is not None and flight.stale:
                return  # the key was written or deleted after this load started
            if self._reads:
                self._drain()
            if self._flights or self._negative:
                self._forget_pending(key)
            node = self._data.get(key)
            if node is None:
                h = hash(key)
                freq = self._counts.pop(h, 0) + 1
                self._inserts += 1
                sampled = h % self._lru_rate == 0
                # a list literal is faster to build than a slotted object (fields: _KEY...)
                node = [key, value, self._window, freq, h, sampled, weight, _INF, _INF, _INF, now]
                node += (loaded_in, False)
                self._data[key] = self._window[key] = node
                self._weight += weight
                self._window_weight += weight
                if sampled:
                    self._lru_access(key)
            else:
                if len(node) == _SHORT:
                    node += _TAIL
                node[_VALUE] = value
                delta = weight - node[_WEIGHT]
                if delta:
                    node[_WEIGHT] = weight
                    self._weight += delta
                    if node[_QUEUE] is self._window:
                        self._window_weight += delta
                    elif node[_QUEUE] is self._protected:
                        self._protected_weight += delta
                self._on_access(node)
                node[_WRITTEN] = now
                node[_LOADED_IN] = loaded_in
            if timed:
                if not self._timed:
                    self._widen()
                self._timed = True
                self._simple = self._plain = False
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
            self._unsteady()
            if self._inserts >= self._due:
                self._periodic()
            self._resteady()
        finally:
            lock.release()
        if events:
            for event in events:
                emit(self._listeners, event)

    def _widen(self) -> None:
        """The cache turns timed: give every entry set()'s fast path made the timing
        fields (before ``_timed`` is set, so a lock-free get never misses them)."""
        for node in self._data.values():
            if len(node) == _SHORT:
                node += _TAIL

    def _forget_pending(self, key: Any) -> None:
        """A write or delete of ``key``: a load in flight must not store its older value,
        and a cached load error no longer stands."""
        flight = self._flights.pop(key, None)
        if flight is not None:
            flight.stale = True
        self._negative.pop(key, None)
        self._replain()

    def _replain(self) -> None:
        """set()'s fast path does not look for loads or cached errors: it is open only
        while there are none."""
        self._plain = self._simple and not self._flights and not self._negative

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
            if self._flights or self._negative:
                self._forget_pending(key)
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
                node[_QUEUE] = _GONE
            self._dropped += len(self._data)
            self._data.clear()
            self._window.clear()
            self._probation.clear()
            self._protected.clear()
            self._heap.clear()
            self._negative.clear()
            del self._reads[:]
            self._weight = self._window_weight = self._protected_weight = 0
            self._unsteady()
            self._replain()

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
            if node[_QUEUE] is not _GONE and (not self._timed or node[_EXPIRES] > self._now()):
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
            if node[_QUEUE] is not _GONE and (not self._timed or node[_EXPIRES] > self._now()):
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
                # evicted: set()'s fast path counts only the inserts (see _unsteady)
                self._inserts
                + self._budget
                - self._steady
                - len(self._data)
                - self._dropped
                - self._expirations,
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
        # The hits get() could not settle alone (probation hits: a promotion), and every
        # get_or_load hit; their counts were taken already. Field indices are literals
        # (_QUEUE 2, _KEY 0, _WEIGHT 6, _SAMPLED 5), and the sampled-LRU update and the
        # probation -> protected promotion are inlined.
        self._unread = False  # (before the prefix: a later append sets it again)
        reads = self._reads
        n = len(reads)
        batch = reads[:n]
        del reads[:n]
        protected, probation = self._protected, self._probation
        unweighted = self._weigher is None
        pmax = self._protected_max
        for node in batch:
            q = node[2]
            if q is None:  # a probation hit: to protected, demoting protected's LRU entry
                key = node[0]
                del probation[key]
                node[2] = protected
                protected[key] = node
                if unweighted:  # (every weight is 1)
                    if self._protected_weight < pmax:
                        self._protected_weight += 1
                    else:
                        dkey, demoted = protected.popitem(False)
                        demoted[2] = None  # _PROBATION
                        probation[dkey] = demoted
                else:
                    self._protected_weight += node[6]
                    if self._protected_weight > pmax:
                        self._demote()
            elif q is not _GONE:  # the window or protected
                q.move_to_end(node[0])
            else:  # removed since it was read
                continue
            if node[5]:  # a sampled hit of ours, through the guard's LRU
                key = node[0]
                lru = self._lru
                if key in lru:
                    lru.move_to_end(key)
                    self._both_hit += 1
                else:
                    lru[key] = None
                    self._ours_only += 1
                    if len(lru) > self._lru_cap:
                        lru.popitem(False)

    def _periodic(self) -> None:
        """Aging and hill climbing, each due every so many accesses (hits and inserts).
        Only set() looks: ``_due`` is the insert count at which the next one is due,
        foreseen from the recent share of inserts among accesses (hits are counted by
        get, without the lock); an early call only recounts."""
        self._unsteady()
        inserts, hits = self._inserts, self._hits
        new_inserts = inserts - self._inserts_seen
        accesses = new_inserts + hits - self._hits_seen
        self._inserts_seen, self._hits_seen = inserts, hits
        self._additions += accesses
        self._climb_count += accesses
        self._climb_hits += accesses - new_inserts
        # The history gains at most one hash per eviction: aging early when it outgrows
        # _HISTORY_CAP times the capacity bounds its memory (only scans get there).
        if self._additions >= self._sample_size or len(self._counts) > self._history_cap:
            self._age()
        if self._climb_count >= self._next_check:
            self._climb()
        ahead = min(self._sample_size - self._additions, self._next_check - self._climb_count)
        # The inserts foreseen until then, at the share of inserts among the accesses of
        # the last one to two check steps (a long enough span to say something), times
        # _FORESEE: the calls close in on the point, a few per check step (each one costs
        # a set() its fast path), and overshoot it by a few accesses unless the share
        # falls by more than a fifth meanwhile.
        (i0, h0), (i1, h1) = self._marks
        if inserts + hits - i1 - h1 >= self._check_step:
            self._marks = ((i1, h1), (inserts, hits))
        span = inserts + hits - i0 - h0
        if span > 0:
            num, den = _FORESEE
            ahead = ahead * num * (inserts - i0) // (den * span)
        ahead = min(ahead, self._history_cap >> 2)
        self._due = inserts + (ahead if ahead > 1 else 1)

    def _age(self) -> None:
        """TinyLFU's aging: halve the sketch and every resident entry's count."""
        # (A comprehension and a loop: mapping C-level iterators and table lookups over
        # the same data was measured 1.2x and 2.6x slower per entry, for fewer bytecodes.)
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
        if q is _PROBATION:
            self._promote(node)
        else:  # the window or protected
            q.move_to_end(node[_KEY])

    def _promote(self, node: _Node) -> None:
        """A probation hit: move it to protected, demoting protected's LRU on overflow."""
        key = node[_KEY]
        del self._probation[key]
        node[_QUEUE] = self._protected
        self._protected[key] = node
        self._protected_weight += node[_WEIGHT]
        if self._protected_weight > self._protected_max:
            self._demote()

    def _demote(self) -> None:
        protected, probation = self._protected, self._probation
        while self._protected_weight > self._protected_max and protected:
            key, node = protected.popitem(False)
            self._protected_weight -= node[_WEIGHT]
            node[_QUEUE] = _PROBATION
            probation[key] = node

    def _unlink(self, node: _Node) -> None:
        key = node[_KEY]
        del self._data[key]
        q = node[_QUEUE]
        if q is _PROBATION:
            del self._probation[key]
        else:
            del q[key]
            if q is self._window:
                self._window_weight -= node[_WEIGHT]
            else:
                self._protected_weight -= node[_WEIGHT]
        self._weight -= node[_WEIGHT]
        self._unsteady()
        node[_QUEUE] = _GONE
        self._counts[node[_HASH]] = node[_FREQ]  # saturated when aged

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
            key, cand = window.popitem(False)
            self._window_weight -= 1
            vkey = next(iter(probation))
            vic = probation[vkey]
            # compared saturated, a tie at the cap to the candidate (see _FREQ_CAP)
            cf = cand[_FREQ]
            if (
                cf > vic[_FREQ]
                or cf >= _FREQ_CAP
                or (cf >= _ADMIT_HASHDOS_THRESHOLD and self._random.getrandbits(7) == 0)
            ):
                cand[_QUEUE] = _PROBATION
                probation[key] = cand
                del probation[vkey]
                del self._data[vkey]
                evicted = vic
            else:
                del self._data[key]
                evicted = cand
            self._weight -= 1
            evicted[_QUEUE] = _GONE
            self._counts[evicted[_HASH]] = evicted[_FREQ]  # saturated when aged
            if events is not None:
                events.append(CacheEvicted(self.name, evicted[_KEY], evicted[_VALUE], "size"))
            return
        candidates: list[_Node] = []
        while self._window_weight > self._window_max and window:
            key, node = window.popitem(False)
            self._window_weight -= node[_WEIGHT]
            node[_QUEUE] = _PROBATION
            probation[key] = node
            candidates.append(node)
        pick = 0
        count = len(candidates)
        while self._weight > self._max:
            candidate: _Node | None = None
            while pick < count:
                c = candidates[pick]
                if c[_QUEUE] is _PROBATION:
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
                # compared saturated, a tie at the cap to the candidate (see _FREQ_CAP)
                cf = candidate[_FREQ]
                if candidate[_WEIGHT] > self._max:
                    evict = candidate
                elif cf > victim[_FREQ] or cf >= _FREQ_CAP:
                    evict = victim
                elif cf >= _ADMIT_HASHDOS_THRESHOLD and self._random.getrandbits(7) == 0:
                    evict = victim  # a warm candidate sometimes wins: defeats hash flooding
                else:
                    evict = candidate
            if candidate is not None:
                pick += 1
            self._unlink(evict)
            if events is not None:
                events.append(CacheEvicted(self.name, evict[_KEY], evict[_VALUE], "size"))

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
                lru.popitem(False)

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
            key, node = _oldest(source)
            if node[_WEIGHT] > quota:
                break
            quota -= node[_WEIGHT]
            del source[key]
            if node[_QUEUE] is self._protected:
                self._protected_weight -= node[_WEIGHT]
            node[_QUEUE] = window
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
            key, node = _oldest(window)
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
            if n[_QUEUE] is not _GONE and t == n[_SCHEDULED]
        ]
        heapq.heapify(heap)
        self._heap = heap

    def _expire(self, now: float, events: list[Event] | None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, node = heapq.heappop(heap)
            if node[_QUEUE] is _GONE or when != node[_SCHEDULED]:
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
            node[_FREQ] += 1
            self._hits += 1
            reads = self._reads
            reads.append(node)
            self._unread = True
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
                self._replain()
                return None
            return entry.exception

    def _join(self, key: Any, by_task: bool) -> tuple[_Flight, bool]:
        """The flight for ``key`` and whether we lead it (must run the loader)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight(by_task)
            self._plain = False
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
            if error is not None and self._flights.get(key) is flight:
                # (a loaded value's flight stays until the value is stored: a write in
                # between marks it stale, a get_or_load joins it instead of loading again)
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
                        self._negative.popitem(False)
            self._replain()
        if error is None:
            if not flight.stale:
                try:
                    self._put_loaded(key, value, elapsed, flight)
                except BaseException as exc:  # a bad weight, a failed write-through, ...
                    # (the flight must go and its waiters hear of it whatever was raised:
                    # a flight left registered would hold every later load of the key)
                    self._drop_flight(key, flight)
                    flight.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    return
            self._drop_flight(key, flight)  # (stored, or stale: gone already as a rule)
            flight.future.set_result(value)
        else:
            if isinstance(error, Exception) and (self._listeners or GLOBAL_LISTENERS):
                emit(self._listeners, CacheLoadFailed(self.name, key, error, cache_error))
            flight.future.set_exception(error)

    def _put_loaded(self, key: Any, value: Any, elapsed: float, flight: _Flight) -> None:
        writer = self._writer
        if writer is not None and writer._on_load:
            writer._write(key, value)
        self._put(key, value, self._ttl, elapsed, flight)

    def _drop_flight(self, key: Any, flight: _Flight) -> None:
        """Unregister ``flight`` if it is still the one for ``key``."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
                self._replain()

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
            if node[_REFRESHING] or node[_QUEUE] is _GONE or key in self._flights:
                return None
            node[_REFRESHING] = True
            self._refreshes += 1
            flight = self._flights[key] = _Flight(by_task)
            self._plain = False
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


def _oldest(queue: OrderedDict[Any, _Node]) -> tuple[Any, _Node]:
    """The LRU key and entry of a non-empty queue. A for loop, not ``next(iter(queue))``:
    a lock-free ``get`` in another thread may move a key between those two calls, which
    invalidates the iterator; GET_ITER and FOR_ITER leave no gap for a thread switch."""
    for key in queue:
        return key, queue[key]
    raise KeyError("empty queue")


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
