"""A light timer structure for timeouts: one armed loop timer per event loop, lazy removal.

``asyncio.timeout`` schedules and cancels a loop ``TimerHandle`` for every call (a
Python object, a heap push with Python-level comparisons, a cancellation the loop cleans
up later) and looks up the current task through ``get_running_loop()``, which on 3.11
makes a ``getpid()`` system call: together about 8 µs per call on a small machine.
Timeouts almost never fire, so we make the common path cheap instead:

* Each event loop (each clock, for fake clocks) has one :class:`TimerQueue`, and only its
  earliest deadline has a real loop timer. When that fires it runs every entry that is
  due and re-arms for the next one. Adding a later deadline arms nothing.
* Deadlines of one fixed duration arrive in time order, so they go into a FIFO *lane*
  (a deque) per duration: append and pop at the ends, no comparisons. Anything that does
  not fit a lane's order (a timeout clamped by a shorter deadline, hedge timers) goes
  into a heap of small lists, which compare in C.
* Leaving a scope marks its entry done. At the head of its lane it is popped at once (the
  sequential case keeps each lane at one entry); otherwise it waits until it surfaces or
  until dead entries outnumber live ones and the lane or heap is compacted.

Cancelling a task on expiry follows ``asyncio.timeout`` exactly: remember
``task.cancelling()`` on entry, ``task.cancel()`` on expiry, and on exit turn the
``CancelledError`` into a timeout only when ``task.uncancel()`` shows no other
cancellation is pending. ``tests/test_timer_equivalence.py`` runs both side by side.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from ._clock import SYSTEM_CLOCK, Clock, TimerHandle
from ._events import logger

LIVE = 0
FIRED = 1
DONE = 2

# An entry is a list: [when, seq, callback, payload, state, extra]. In the heap, lists
# compare in C and the unique ``seq`` stops the comparison before the callback.
Entry = list[Any]

_get_ident = threading.get_ident
_COMPACT_AT = 64


class Lane(collections.deque[Entry]):
    """Entries of one duration, in deadline order. ``dead`` counts done entries inside."""

    __slots__ = ("dead",)

    def __init__(self) -> None:
        super().__init__()
        self.dead = 0


class TimerQueue:
    """Deadlines for one event loop (or one fake clock), with one armed timer."""

    __slots__ = ("__weakref__", "_clock", "_dead", "_handle", "_heap", "_lanes", "_seq", "armed_at")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[Entry] = []
        self._lanes: dict[float, Lane] = {}
        self.armed_at = math.inf
        self._handle: TimerHandle | None = None
        self._dead = 0
        self._seq = itertools.count(1)

    def __len__(self) -> int:
        """Live entries (for tests and debugging)."""
        entries = itertools.chain(self._heap, *self._lanes.values())
        return sum(1 for entry in entries if entry[4] == LIVE)

    def lane(self, seconds: float) -> Lane:
        """The lane for deadlines ``seconds`` after their start."""
        lane = self._lanes.get(seconds)
        if lane is None:
            lane = self._lanes.setdefault(seconds, Lane())
        return lane

    def add(
        self,
        when: float,
        callback: Callable[[Entry], object],
        payload: object,
        extra: object = None,
    ) -> Entry:
        """Run ``callback(entry)`` at clock time ``when`` unless discarded first.

        ``payload`` and ``extra`` are kept at ``entry[3]`` and ``entry[5]`` for the caller.
        """
        entry: Entry = [when, next(self._seq), callback, payload, LIVE, extra]
        self.push(entry)
        return entry

    def push(self, entry: Entry) -> None:
        """Put an entry that fits no lane into the heap."""
        entry[1] = next(self._seq)
        heapq.heappush(self._heap, entry)
        if entry[0] < self.armed_at:
            self.arm(entry[0])

    def discard(self, entry: Entry, lane: Lane | None = None) -> None:
        """Forget ``entry`` (no-op if it fired or was discarded). ``lane``: where it is,
        ``None`` for the heap."""
        if entry[4] != LIVE:
            return
        entry[4] = DONE
        if lane is not None:
            if lane[0] is entry:
                lane.popleft()
                while lane and lane[0][4] == DONE:
                    lane.popleft()
                    lane.dead -= 1
                return
            lane.dead += 1
            if lane.dead > _COMPACT_AT and lane.dead * 2 > len(lane):
                live = [e for e in lane if e[4] != DONE]
                lane.clear()
                lane.extend(live)
                lane.dead = 0
            return
        heap = self._heap
        if heap[0] is entry:
            heapq.heappop(heap)
            while heap and heap[0][4] == DONE:
                heapq.heappop(heap)
                self._dead -= 1
            return
        self._dead += 1
        if self._dead > _COMPACT_AT and self._dead * 2 > len(heap):
            self._heap = [e for e in heap if e[4] != DONE]
            heapq.heapify(self._heap)
            self._dead = 0

    def arm(self, when: float) -> None:
        """(Re)schedule the one real timer for clock time ``when``."""
        if self._handle is not None:
            self._handle.cancel()
        delay = when - self._clock.monotonic()
        self._handle = self._clock.call_later(delay if delay > 0.0 else 0.0, self._fire)
        self.armed_at = when

    def _fire(self) -> None:
        self._handle = None
        self.armed_at = math.inf
        now = self._clock.monotonic()
        due: list[Entry] = []
        earliest = math.inf
        for lane in self._lanes.values():
            while lane:
                entry = lane[0]
                if entry[4] == DONE:
                    lane.popleft()
                    lane.dead -= 1
                elif entry[0] <= now:
                    lane.popleft()
                    due.append(entry)
                else:
                    earliest = min(earliest, entry[0])
                    break
        heap = self._heap
        while heap:
            entry = heap[0]
            if entry[4] == DONE:
                heapq.heappop(heap)
                self._dead -= 1
            elif entry[0] <= now:
                heapq.heappop(heap)
                due.append(entry)
            else:
                earliest = min(earliest, entry[0])
                break
        # Fire in deadline order, after the structure is consistent again.
        due.sort(key=_when)
        for entry in due:
            entry[4] = FIRED
            try:
                entry[2](entry)
            except Exception:  # pragma: no cover - our callbacks do not raise
                logger.exception("buttress timer callback failed")
        if earliest < self.armed_at:
            self.arm(earliest)


def _when(entry: Entry) -> float:
    return float(entry[0])


def cancel_task(entry: Entry) -> None:
    """Timer callback: cancel the task stored as the entry's payload."""
    entry[3].cancel()


# -- finding the current task and its loop's queue, cheaply --------------------------------
#
# On 3.11 ``asyncio.current_task()`` is Python code that calls ``get_running_loop()``, which
# makes a getpid() system call: about 0.5 µs, more than the rest of a timeout. Callers keep
# the loop they saw last and trust it while ``loop._thread_id`` (set by ``run_forever`` for
# as long as the loop runs) says it is running in this thread: one thread runs at most one
# loop at a time, so it is then *the* running loop. Loops without that attribute (uvloop)
# are never trusted and always take the portable path.

_current_tasks: Any = getattr(asyncio.tasks, "_current_tasks", None)
task_of: Callable[[Any], Any]
if isinstance(asyncio.current_task, types.BuiltinFunctionType):
    task_of = asyncio.current_task  # 3.12+: C, fast, takes the loop
elif isinstance(_current_tasks, dict):  # pragma: no branch - CPython 3.11
    task_of = _current_tasks.get
else:  # pragma: no cover - unknown implementation
    task_of = asyncio.current_task

_loop_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerQueue] = (
    weakref.WeakKeyDictionary()
)
_clock_queues: weakref.WeakKeyDictionary[Any, dict[asyncio.AbstractEventLoop, TimerQueue]] = (
    weakref.WeakKeyDictionary()
)


class Site:
    """A caller's cache of (loop, queue, lane) for one clock: the fast path of :meth:`locate`.

    ``seconds`` names the lane the caller uses (``None``: the caller only uses the heap).
    The cache is one tuple, read and replaced whole, so threads running different loops
    through one shared policy never pair one loop with another loop's queue; a tuple is
    only trusted while its loop is running in the reading thread.
    """

    __slots__ = ("clock", "seconds", "state")

    def __init__(self, clock: Clock, seconds: float | None = None) -> None:
        self.clock = clock
        self.seconds = seconds
        # (loop, queue, lane); loop is None until seen, and stays None for loops without
        # ``_thread_id`` (uvloop), which always take the portable path.
        # Typed loosely: queue is only None while loop is None (never trusted then).
        self.state: tuple[Any, Any, Any] = (None, None, None)

    def locate(self) -> tuple[asyncio.Task[Any], TimerQueue, Lane | None]:
        """The running task, this clock's queue on its loop, and this site's lane there.

        Raises:
            RuntimeError: outside a running event loop or outside a task.
        """
        loop, queue, lane = self.state
        if loop is not None and loop._thread_id == _get_ident():
            task = task_of(loop)
            if task is not None:
                return task, queue, lane
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("buttress timeouts and hedges must run inside an asyncio task")
        queue = queue_of(self.clock, loop)
        lane = None if self.seconds is None else queue.lane(self.seconds)
        self.state = (loop if hasattr(loop, "_thread_id") else None, queue, lane)
        return task, queue, lane


def queue_of(clock: Clock, loop: asyncio.AbstractEventLoop) -> TimerQueue:
    """The timer queue of ``clock`` on ``loop``."""
    if clock is SYSTEM_CLOCK:
        queue = _loop_queues.get(loop)
        if queue is None:
            queue = _loop_queues.setdefault(loop, TimerQueue(clock))
        return queue
    per_loop = _clock_queues.get(clock)
    if per_loop is None:
        per_loop = _clock_queues.setdefault(clock, {})
    queue = per_loop.get(loop)
    if queue is None:
        queue = per_loop.setdefault(loop, TimerQueue(clock))
    return queue


def task_and_queue(clock: Clock) -> tuple[asyncio.Task[Any], TimerQueue]:
    """The running task and ``clock``'s queue, without a cache (the portable path)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("buttress timeouts and hedges must run inside an asyncio task")
    return task, queue_of(clock, loop)
