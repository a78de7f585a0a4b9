"""Deadlines: one time budget for a whole operation, carried by a ContextVar.

``with bt.deadline(2.0):`` gives everything inside two seconds in total. Every policy
clamps its waits to the remaining budget (a Timeout never waits longer, a Retry does not
sleep past it and stops when no time is left, a Bulkhead queue gives up in time). A
nested deadline can only shrink the budget, never extend it. The budget follows the
context: into awaited coroutines, into tasks created inside the block (they copy the
context), into ``asyncio.to_thread`` calls.

``async with bt.deadline(2.0):`` also *enforces* it: the block is cancelled when the
budget runs out and :class:`~buttress.DeadlineExceededError` is raised. A plain ``with``
cannot interrupt sync code; it only sets the budget that the code inside reads.

To cross a process boundary, send the remaining budget as a relative duration (like
gRPC's ``grpc-timeout``), never as an absolute wall-clock time, which would depend on
both hosts' clocks agreeing: :func:`deadline_headers` on the client,
:func:`deadline_from_headers` (or the ASGI middleware) on the server.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from datetime import timedelta
from types import TracebackType
from typing import Any

from . import _validate as v
from ._clock import Clock, resolve
from ._errors import DeadlineExceededError
from ._timer import LIVE, Entry, cancel_task, task_and_queue

__all__ = [
    "DEADLINE_HEADER",
    "Deadline",
    "current_deadline",
    "deadline",
    "deadline_from_headers",
    "deadline_headers",
    "format_timeout",
    "parse_timeout",
    "remaining",
]

DEADLINE_HEADER = "x-request-timeout"
"""Default HTTP header for a propagated budget; its value uses the ``grpc-timeout`` format."""


class Deadline:
    """A point in time on a given clock by which work must be done.

    Attributes:
        expires_at: the clock reading at which the budget is gone.
        clock: the clock it is measured on.

    Example::

        d = bt.current_deadline()
        if d is not None and d.remaining() < 0.05:
            return cached_answer
    """

    __slots__ = ("clock", "expires_at")

    def __init__(self, expires_at: float, clock: Clock) -> None:
        self.expires_at = expires_at
        self.clock = clock

    def remaining(self) -> float:
        """Seconds left; negative once expired."""
        return self.expires_at - self.clock.monotonic()

    def expired(self) -> bool:
        """True once no time is left."""
        return self.clock.monotonic() >= self.expires_at

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.6f})"


# The context holds a plain (expires_at, clock) tuple: policies read it on every call, and
# a tuple is cheaper to make than an object. Deadline objects are built only when asked for.
DeadlineTuple = tuple[float, Clock]
_current: ContextVar[DeadlineTuple | None] = ContextVar("buttress_deadline", default=None)
get_current = _current.get
set_current = _current.set
reset_current = _current.reset


def left(current: DeadlineTuple, clock: Clock, now: float) -> float:
    """Seconds left in ``current``, given ``now`` read from ``clock``."""
    expires_at, its_clock = current
    if its_clock is clock:
        return expires_at - now
    return expires_at - its_clock.monotonic()


def current_deadline() -> Deadline | None:
    """The innermost active :class:`Deadline`, or ``None`` outside any deadline.

    Example::

        with bt.deadline(1.0):
            assert bt.current_deadline() is not None
    """
    current = _current.get()
    return None if current is None else Deadline(*current)


def remaining() -> float | None:
    """Seconds left in the current deadline (never negative), or ``None`` if there is none.

    Use it to pass the budget to code buttress does not wrap, such as a socket timeout::

        sock.settimeout(bt.remaining())
    """
    current = _current.get()
    if current is None:
        return None
    seconds = current[0] - current[1].monotonic()
    return seconds if seconds > 0.0 else 0.0


class deadline:  # lower case: used like a function, ``with bt.deadline(1.0):``
    """Limit everything inside the block to ``seconds`` in total.

    Args:
        seconds: the budget, in seconds or as a ``timedelta``; ``0`` means already expired,
            ``None`` adds no limit (the enclosing deadline, if any, still applies), which is
            handy when a budget is optional.
        clock: the clock the budget is measured on. Default: the system clock.

    Returns (from ``__enter__``/``__aenter__``) the effective :class:`Deadline`: this one,
    or the enclosing one when that is sooner. Nested deadlines only ever shrink the budget.

    With ``async with`` the block is also cancelled when the budget runs out, and
    :class:`~buttress.DeadlineExceededError` is raised (it is a ``TimeoutError``); if the
    budget is already gone on entry, it is raised at once without running the block.
    With ``with`` nothing is interrupted: the budget is only visible to policies and to
    :func:`remaining`.

    An instance may be reused one block after another, but not entered again while it is
    active (like ``asyncio.timeout``): create one per block.

    Raises:
        ConfigError: ``seconds`` is negative, NaN or not a duration.
        RuntimeError: the instance is entered while already active.

    Example::

        async with bt.deadline(2.0):
            user = await policy.call(get_user, uid)      # retries and timeouts clamp to 2 s
            feed = await policy.call(get_feed, uid)      # gets whatever is left
    """

    __slots__ = ("_clock", "_seconds", "_stack")

    def __init__(self, seconds: float | timedelta | None, *, clock: Clock | None = None) -> None:
        self._seconds = v.optional_seconds("seconds", seconds, allow_inf=True)
        self._clock = resolve(clock)
        self._stack: list[tuple[Token[DeadlineTuple | None], Entry | None, Any]] = []

    def __repr__(self) -> str:
        return f"deadline({self._seconds!r})"

    def _open(self) -> DeadlineTuple | None:
        if self._stack:
            # Two tasks sharing one instance would interleave their context tokens.
            raise RuntimeError(
                "this bt.deadline is already active; create a new one for each block "
                "(`with bt.deadline(1.0):`), as with asyncio.timeout"
            )
        current = _current.get()
        seconds = self._seconds
        if seconds is None or math.isinf(seconds):
            effective = current
        else:
            clock = self._clock
            expires_at = clock.monotonic() + seconds
            if current is None or current[0] - current[1].monotonic() > seconds:
                effective = (expires_at, clock)
            else:
                effective = current
        self._stack.append((_current.set(effective), None, None))
        return effective

    def __enter__(self) -> Deadline | None:
        effective = self._open()
        return None if effective is None else Deadline(*effective)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, _, _ = self._stack.pop()
        _current.reset(token)

    async def __aenter__(self) -> Deadline | None:
        effective = self._open()
        if effective is None:
            return None
        expires_at, clock = effective
        budget = expires_at - clock.monotonic()
        if budget <= 0.0:
            token, _, _ = self._stack.pop()
            _current.reset(token)
            raise DeadlineExceededError("deadline exceeded before the block started", timeout=0.0)
        # Armed on the deadline's own clock so a FakeClock deadline fires in virtual time.
        task, queue = task_and_queue(clock)
        entry = queue.add(expires_at, cancel_task, task, task.cancelling())
        token, _, _ = self._stack[-1]
        self._stack[-1] = (token, entry, (task, queue, budget))
        return Deadline(expires_at, clock)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, entry, extra = self._stack.pop()
        _current.reset(token)
        if entry is None:
            return
        task, queue, budget = extra
        if entry[4] == LIVE:
            queue.discard(entry)
            return
        # The deadline fired and cancelled the task: report it, unless someone else
        # also cancelled the task, in which case the cancellation must go on.
        if task.uncancel() <= entry[5] and exc_type is asyncio.CancelledError:
            raise DeadlineExceededError(
                f"deadline exceeded: the block ran out of its {budget:.3f} s budget",
                timeout=budget,
            ) from exc


# -- propagation across processes ----------------------------------------------------------

_UNITS = (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0), ("H", 3600.0))
_SCALE = dict(_UNITS)
_UNIT_NANOS = (
    ("n", 1),
    ("u", 1_000),
    ("m", 1_000_000),
    ("S", 1_000_000_000),
    ("M", 60_000_000_000),
    ("H", 3_600_000_000_000),
)
_TIMEOUT_RE = re.compile(r"\A([0-9]{1,8})([HMSmun])\Z")


def format_timeout(seconds: float | timedelta) -> str:
    """Encode a budget as a ``grpc-timeout`` value: up to 8 digits and a unit.

    The finest unit that fits is used and the value is rounded *down* to it (after rounding
    to whole nanoseconds), so the receiver never believes it has more time than the sender.
    A budget ``<= 0`` encodes as ``"0n"``.

    Example::

        >>> format_timeout(0.25)
        '250000u'
        >>> format_timeout(90)
        '90000000u'
    """
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if not seconds > 0.0:  # also catches NaN
        return "0n"
    if seconds >= 99_999_999 * 3600:
        return "99999999H"
    # Whole nanoseconds first, so 1e-6 s is 1000n and not 999n through float error.
    nanos = round(seconds * 1e9)
    for unit, size in _UNIT_NANOS:
        value = nanos // size
        if value <= 99_999_999:
            return f"{value}{unit}"
    return "99999999H"  # pragma: no cover - caught above


def parse_timeout(value: str) -> float:
    """Decode a ``grpc-timeout`` value (``"250m"``, ``"3S"``) into seconds.

    Raises:
        ConfigError: (a ``ValueError``) ``value`` is not 1 to 8 digits followed by one of the
            units ``H M S m u n``.

    Example::

        >>> parse_timeout("250m")
        0.25
    """
    match = _TIMEOUT_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise v.fail("timeout header value", "1-8 digits followed by H, M, S, m, u or n", value)
    return int(match.group(1)) * _SCALE[match.group(2)]


def deadline_headers(header: str = DEADLINE_HEADER) -> dict[str, str]:
    """Headers carrying the current remaining budget to an upstream service.

    Returns ``{}`` outside any deadline, so it can always be merged into a request.

    Raises:
        ConfigError: ``header`` is not a non-empty string.

    Example::

        with bt.deadline(1.5):
            await client.get(url, headers=bt.deadline_headers())   # x-request-timeout: 1499998u
    """
    if not isinstance(header, str) or not header:
        raise v.fail("header", "a non-empty header name", header)
    current = _current.get()
    if current is None:
        return {}
    return {header: format_timeout(current[0] - current[1].monotonic())}


def _lookup(headers: Mapping[str, str] | Iterable[tuple[Any, Any]], header: str) -> str | None:
    wanted = header.lower()
    if isinstance(headers, Mapping):
        found = headers.get(header)
        if found is not None:
            return str(found)
        pairs: Iterable[tuple[Any, Any]] = headers.items()
    else:
        pairs = headers
    for key, value in pairs:
        name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if name.lower() == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def deadline_from_headers(
    headers: Mapping[str, str] | Iterable[tuple[Any, Any]],
    *,
    header: str = DEADLINE_HEADER,
    max_seconds: float | timedelta | None = None,
    clock: Clock | None = None,
) -> deadline:
    """A :class:`deadline` for the budget a caller sent in ``header``.

    Args:
        headers: a mapping (case-insensitive or not) or ``(name, value)`` pairs, as str or
            bytes (ASGI's raw headers work as they are).
        header: the header to read. Default :data:`DEADLINE_HEADER`.
        max_seconds: an upper bound for what a caller may ask for, and the budget to use
            when the header is absent or malformed. Default ``None`` (no bound; no
            deadline when absent).
        clock: the clock for the new deadline.

    A malformed value from a client is not an error of this server: it is ignored (the
    ``max_seconds`` bound, if any, still applies).

    Raises:
        ConfigError: ``header`` is empty or ``max_seconds`` is not a duration >= 0.

    Example::

        with bt.deadline_from_headers(request.headers, max_seconds=10):
            return await handle(request)
    """
    if not isinstance(header, str) or not header:
        raise v.fail("header", "a non-empty header name", header)
    limit = v.optional_seconds("max_seconds", max_seconds)
    raw = _lookup(headers, header)
    budget: float | None = None
    if raw is not None:
        try:
            budget = parse_timeout(raw.strip())
        except ValueError:
            budget = None
    if budget is None or (limit is not None and budget > limit):
        budget = limit
    return deadline(budget, clock=clock)
