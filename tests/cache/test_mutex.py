"""The cache's token mutex: exclusion, hand-over to a waiter, no lost wake-up."""

from __future__ import annotations

import threading

import pytest

from buttress.cache import _mutex
from buttress.cache._mutex import Mutex

from ..racing import run_racing


def test_acquire_release_and_locked() -> None:
    mutex = Mutex()
    assert not mutex.locked()
    mutex.acquire()
    assert mutex.locked()
    mutex.release()
    assert not mutex.locked()
    with mutex:
        assert mutex.locked()
    assert not mutex.locked()
    assert mutex.token == [True] and mutex.waiters == []


def test_with_releases_on_an_exception() -> None:
    mutex = Mutex()
    with pytest.raises(ValueError), mutex:
        raise ValueError("boom")
    assert not mutex.locked()


def _hammer(mutex: Mutex, threads: int, rounds: int) -> int:
    """Threads increment a counter with a read-modify-write that a switch can split."""
    box = [0]

    def bump() -> None:
        value = box[0]
        for _ in range(3):  # (backward jumps: the interpreter may switch threads here)
            pass
        box[0] = value + 1

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(rounds):
                # the three paths to the lock: the methods, the context manager, and the
                # inlined token pop/append that Cache.set uses
                if i % 3 == 0:
                    mutex.acquire()
                    bump()
                    mutex.release()
                elif i % 3 == 1:
                    with mutex:
                        bump()
                else:
                    try:
                        mutex.token.pop()
                    except IndexError:
                        mutex.wait()
                    bump()
                    mutex.token.append(True)
                    if mutex.waiters:
                        mutex.wake()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_racing(threading.Thread(target=worker, args=(n,)) for n in range(threads))
    assert not errors
    return box[0]


def test_excludes_under_a_1us_switch_interval() -> None:
    mutex = Mutex()
    assert _hammer(mutex, threads=6, rounds=3000) == 6 * 3000
    assert mutex.token == [True] and mutex.waiters == []


def test_a_release_wakes_a_waiter_without_its_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the safety-net poll at an hour, a lost wake-up would stall the hammer: every
    hand-over must come from a release opening the waiter's gate."""
    monkeypatch.setattr(_mutex, "_POLL", 3600.0)
    mutex = Mutex()
    done = threading.Event()
    result: list[int] = []
    runner = threading.Thread(
        target=lambda: (result.append(_hammer(mutex, threads=4, rounds=2000)), done.set()),
        daemon=True,
    )
    runner.start()
    assert done.wait(timeout=120), "a waiter was never woken (lost wake-up)"
    assert result == [4 * 2000]


def test_a_held_mutex_blocks_until_released() -> None:
    mutex = Mutex()
    mutex.acquire()
    entered = threading.Event()

    def taker() -> None:
        with mutex:
            entered.set()

    thread = threading.Thread(target=taker, daemon=True)
    thread.start()
    # the taker registers as a waiter and stays out while we hold the mutex
    while not mutex.waiters:
        if not thread.is_alive():  # pragma: no cover - it got in: a failed exclusion
            break
        threading.Event().wait(0.001)
    assert not entered.is_set()
    mutex.release()
    thread.join(timeout=30)
    assert entered.is_set() and not thread.is_alive()
    assert mutex.waiters == [] and not mutex.locked()
