"""Write-through and write-behind to a user backing store.

The store is anything with ``write_many(items)`` and ``delete_many(keys)``
(:class:`BackingStore`). :class:`WriteThrough` writes before the cache changes, in the
caller's thread. :class:`WriteBehind` acknowledges at once, queues the write (coalescing
writes to one key: only the latest is stored), and one background thread writes batches,
retrying with a :class:`~buttress.Backoff`. Only that thread talks to the store, so
writes to one key reach it in order; no lock is held while it does.
"""

from __future__ import annotations

import random as _random
import threading
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import _validate as v
from .._backoff import Backoff
from .._events import GLOBAL_LISTENERS, emit
from ._errors import CacheError, CacheWriteError
from ._events import CacheWriteFailed

if TYPE_CHECKING:
    from ._core import Cache

__all__ = ["DELETED", "BackingStore", "CacheWriter", "WriteBehind", "WriteThrough"]


class _Deleted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DELETED"

    def __reduce__(self) -> str:
        return "DELETED"


DELETED: Any = _Deleted()
"""Marks a queued delete in :attr:`CacheWriteError.pending`."""


@runtime_checkable
class BackingStore(Protocol):
    """The system of record a cache writes to.

    Example::

        class UserTable:
            def write_many(self, items: Mapping[int, User]) -> None:
                db.upsert_users(items.values())

            def delete_many(self, keys: Collection[int]) -> None:
                db.delete_users(keys)
    """

    def write_many(self, items: Mapping[Any, Any]) -> None:
        """Store every ``key -> value`` (an upsert); raise to report a failure."""
        ...

    def delete_many(self, keys: Collection[Any]) -> None:
        """Delete every key (absent keys are not an error); raise to report a failure."""
        ...


def _default_backoff() -> Backoff:
    return Backoff.exponential(base=0.05, cap=2.0)


class CacheWriter:
    """Base of :class:`WriteThrough` and :class:`WriteBehind` (not for direct use)."""

    __slots__ = ("_attempts", "_backoff", "_cache", "_on_load", "_rng", "store")

    mode = ""

    def __init__(
        self,
        store: BackingStore,
        *,
        attempts: int,
        backoff: Backoff | None,
        write_loaded: bool,
    ) -> None:
        if not isinstance(store, BackingStore):
            raise v.fail("store", "an object with write_many(items) and delete_many(keys)", store)
        self.store = store
        self._attempts = v.integer("attempts", attempts, minimum=1)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise v.fail("backoff", "a bt.Backoff or None", backoff)
        self._backoff = backoff if backoff is not None else _default_backoff()
        self._on_load = bool(write_loaded)
        self._cache: Cache[Any, Any] | None = None
        self._rng = _random.Random()

    def _attach(self, cache: Cache[Any, Any]) -> None:
        if self._cache is not None:
            raise v.fail("writer", "a writer not already used by another cache", self)
        self._cache = cache

    def _report(self, count: int, attempt: int, exc: BaseException, gave_up: bool) -> None:
        cache = self._cache
        if cache is not None and (cache._listeners or GLOBAL_LISTENERS):
            emit(
                cache._listeners,
                CacheWriteFailed(cache.name, self.mode, count, attempt, exc, gave_up),
            )

    def _store(self, batch: Mapping[Any, Any]) -> None:
        """One attempt: the writes, then the deletes."""
        writes = {k: val for k, val in batch.items() if val is not DELETED}
        deletes = [k for k, val in batch.items() if val is DELETED]
        if writes:
            self.store.write_many(writes)
        if deletes:
            self.store.delete_many(deletes)

    def _store_with_retries(self, batch: Mapping[Any, Any]) -> BaseException | None:
        """Store ``batch``, retrying; the last exception when every attempt failed."""
        assert self._cache is not None
        clock = self._cache._clock
        delay = 0.0
        for attempt in range(1, self._attempts + 1):
            try:
                self._store(batch)
                return None
            except Exception as exc:
                last = attempt == self._attempts
                self._report(len(batch), attempt, exc, last)
                if last:
                    return exc
                delay = self._backoff.compute(attempt, delay, self._rng)
                clock.sleep_sync(delay)
        return None  # pragma: no cover - the loop always returns

    def _write(self, key: Any, value: Any) -> None:
        raise NotImplementedError

    def _delete(self, key: Any) -> None:
        self._write(key, DELETED)

    def _flush(self) -> None:
        pass

    def _close(self) -> None:
        pass


class WriteThrough(CacheWriter):
    """Write to ``store`` before the cache changes, in the caller's thread.

    Args:
        store: the :class:`BackingStore`.
        attempts: tries per write (>= 1). Default 1.
        backoff: delay between tries. Default: exponential 0.05 s .. 2 s, full jitter.
        on_error: ``"raise"`` (the default): ``set``/``delete`` raise
            :class:`CacheWriteError` and the cache is unchanged; ``"ignore"``: the cache
            changes anyway (a :class:`CacheWriteFailed` event reports it).
        write_loaded: also write values that ``get_or_load`` loaded. Default ``False``
            (they usually come from the store).

    Raises:
        ConfigError: an argument is out of range.

    Example::

        users = bt.Cache(10_000, writer=WriteThrough(UserTable(), attempts=3))
        users.set(uid, user)   # stored in the table, then cached
    """

    __slots__ = ("_raise",)

    mode = "through"

    def __init__(
        self,
        store: BackingStore,
        *,
        attempts: int = 1,
        backoff: Backoff | None = None,
        on_error: str = "raise",
        write_loaded: bool = False,
    ) -> None:
        super().__init__(store, attempts=attempts, backoff=backoff, write_loaded=write_loaded)
        self._raise = v.choice("on_error", on_error, ("raise", "ignore")) == "raise"

    def _write(self, key: Any, value: Any) -> None:
        exc = self._store_with_retries({key: value})
        if exc is not None and self._raise:
            assert self._cache is not None
            name = self._cache.name
            raise CacheWriteError(
                f"cache {name!r}: the backing store failed to write {key!r}",
                cache=name,
                pending={key: value},
            ) from exc


class WriteBehind(CacheWriter):
    """Acknowledge writes at once and store them later, in batches, from one thread.

    Writes to one key are coalesced (only the latest value is stored); a batch goes out
    when ``batch_size`` writes are queued or ``delay`` seconds after the first one. A
    failed batch is retried ``attempts`` times with ``backoff``; then it goes back to the
    queue (newer writes to the same keys win) and is tried again after ``delay``.
    :meth:`Cache.flush` and :meth:`Cache.close` write everything queued and raise
    :class:`CacheWriteError` with the entries that could not be stored: an acknowledged
    write is never dropped silently.

    Args:
        store: the :class:`BackingStore`.
        batch_size: the most entries per ``write_many``/``delete_many`` pair. Default 100.
        delay: seconds to gather a batch (real time: a ``threading.Condition`` wait).
            Default 1.0; ``0`` writes as soon as possible.
        attempts: tries per batch (>= 1). Default 5.
        backoff: delay between tries (by the cache's clock). Default: exponential
            0.05 s .. 2 s, full jitter.
        write_loaded: also write values that ``get_or_load`` loaded. Default ``False``.

    Raises:
        ConfigError: an argument is out of range.

    Example::

        cache = bt.Cache(10_000, writer=WriteBehind(Analytics(), batch_size=500, delay=2))
        cache.set(key, counter)   # returns at once
        cache.close()             # at shutdown: everything queued is written
    """

    __slots__ = (
        "_batch",
        "_closed",
        "_cond",
        "_delay",
        "_failures",
        "_flushing",
        "_pending",
        "_thread",
        "_writing",
    )

    mode = "behind"

    def __init__(
        self,
        store: BackingStore,
        *,
        batch_size: int = 100,
        delay: float = 1.0,
        attempts: int = 5,
        backoff: Backoff | None = None,
        write_loaded: bool = False,
    ) -> None:
        super().__init__(store, attempts=attempts, backoff=backoff, write_loaded=write_loaded)
        self._batch = v.integer("batch_size", batch_size, minimum=1)
        self._delay = v.seconds("delay", delay)
        self._cond = threading.Condition()
        self._pending: dict[Any, Any] = {}
        self._writing: dict[Any, Any] = {}
        self._failures = 0  # batches given up on, ever
        self._flushing = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Entries queued or being written."""
        with self._cond:
            return len(self._pending) + len(self._writing)

    def _write(self, key: Any, value: Any) -> None:
        with self._cond:
            if self._closed:
                assert self._cache is not None
                raise CacheError(f"cache {self._cache.name!r} is closed", cache=self._cache.name)
            self._pending[key] = value
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="buttress-write-behind", daemon=True
                )
                self._thread.start()
            if len(self._pending) >= self._batch or self._delay == 0:
                self._cond.notify_all()

    def _take(self) -> dict[Any, Any]:
        batch: dict[Any, Any] = {}
        pending = self._pending
        for key in _first_keys(pending, self._batch):
            batch[key] = pending.pop(key)
        return batch

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._closed:
                    cond.wait()
                if not self._pending and self._closed:
                    cond.notify_all()
                    return
                if len(self._pending) < self._batch and not self._flushing and not self._closed:
                    cond.wait(self._delay)
                    if not self._pending:
                        continue
                batch = self._take()
                self._writing = batch
            exc = self._store_with_retries(batch)
            with cond:
                self._writing = {}
                if exc is not None:
                    self._failures += 1
                    for key, value in batch.items():
                        if key not in self._pending:
                            self._pending[key] = value
                cond.notify_all()
                if exc is not None and not self._flushing and not self._closed:
                    cond.wait(self._delay)
                elif exc is not None:
                    # a flush is waiting: let it see the failure before trying again
                    cond.wait_for(lambda: not self._flushing or self._closed, timeout=None)
                    if self._closed:
                        return

    def _flush(self) -> None:
        cond = self._cond
        with cond:
            if self._thread is None or (not self._pending and not self._writing):
                return
            failures = self._failures
            self._flushing += 1
            cond.notify_all()
            try:
                while (self._pending or self._writing) and self._failures == failures:
                    cond.wait()
                if self._failures != failures:
                    pending = {**self._writing, **self._pending}
                    assert self._cache is not None
                    name = self._cache.name
                    raise CacheWriteError(
                        f"cache {name!r}: {len(pending)} queued writes could not be stored",
                        cache=name,
                        pending=pending,
                    )
            finally:
                self._flushing -= 1
                cond.notify_all()

    def _close(self) -> None:
        try:
            self._flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join()


def _first_keys(items: dict[Any, Any], n: int) -> list[Any]:
    out: list[Any] = []
    for key in items:
        if len(out) >= n:
            break
        out.append(key)
    return out
