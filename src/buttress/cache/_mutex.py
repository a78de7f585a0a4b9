"""A mutex whose uncontended acquire and release are one ``list.pop`` and one ``list.append``.

The cache takes its lock on every miss. On CPython 3.11 ``threading.Lock.acquire`` parses
its arguments with the general keyword parser and reads the monotonic clock even when the
lock is free: about 200 machine instructions and, in a trace replay, a tenth of the L1
instruction-cache misses of a whole ``get`` + ``set``. A list holding one token does the
same job when nobody contends: ``pop`` takes the token (atomic under the GIL, and under a
free-threaded build's per-object locks), ``append`` puts it back.

When the token is taken, a thread waits on a gate of its own (a ``threading.Lock`` held
until a release opens it), registered before it tries the token again, so a release that
happens between its failed try and its wait is never missed: the releaser appends the token
first and then opens the oldest waiter's gate. Waiting re-tries every ``_POLL`` seconds as
well, a safety net only. Not reentrant (as ``threading.Lock``), not fair (a running thread
may take the token ahead of a woken waiter, which then waits again).
"""

from __future__ import annotations

import threading

__all__ = ["Mutex"]

_POLL = 0.05  # a waiter re-tries the token at least this often (seconds)


class Mutex:
    """A non-reentrant lock: ``acquire``/``release`` or ``with mutex:``.

    Hot paths may inline it: ``token.pop()`` (``IndexError``: call :meth:`wait`) to take
    it, ``token.append(True)`` and then, when ``waiters`` is not empty, :meth:`wake` to
    give it back.

    Example::

        mutex = Mutex()
        with mutex:
            ...
    """

    __slots__ = ("token", "waiters")

    def __init__(self) -> None:
        self.token: list[bool] = [True]
        self.waiters: list[threading.Lock] = []

    def acquire(self) -> None:
        """Take the mutex, waiting while another thread holds it."""
        try:
            self.token.pop()
        except IndexError:
            self.wait()

    def release(self) -> None:
        """Give the mutex back and wake the oldest waiter, if any."""
        self.token.append(True)
        if self.waiters:
            self.wake()

    def locked(self) -> bool:
        """Whether some thread holds the mutex."""
        return not self.token

    def wait(self) -> None:
        """The contended acquire: wait on a gate of our own until we get the token."""
        gate = threading.Lock()
        gate.acquire()
        waiters = self.waiters
        waiters.append(gate)
        try:
            while True:
                try:
                    self.token.pop()
                    return
                except IndexError:
                    gate.acquire(timeout=_POLL)
        finally:
            waiters.remove(gate)

    def wake(self) -> None:
        """Open the oldest waiter's gate (a release calls this when someone waits)."""
        for gate in self.waiters[:1]:
            try:
                gate.release()
            except RuntimeError:  # open already: woken, not yet back at its gate
                pass

    def __enter__(self) -> None:
        try:  # (acquire, inlined)
            self.token.pop()
        except IndexError:
            self.wait()

    def __exit__(self, *exc: object) -> None:
        self.token.append(True)  # (release, inlined)
        if self.waiters:
            self.wake()
