"""RetryBudget: retries as a share of requests, so retries can never become a storm."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from . import _validate as v
from ._clock import Clock, resolve
from ._policy import next_index

__all__ = ["RetryBudget", "RetryBudgetStats"]

_UNIT = 1000  # token units per retry; deposits are integers so the bound is exact
_SLOTS = 10  # time granularity: ttl / _SLOTS


@dataclass(frozen=True, slots=True)
class RetryBudgetStats:
    """A snapshot of a :class:`RetryBudget`.

    ``balance`` is how many retries could be scheduled right now.
    """

    name: str
    balance: float
    deposits: int
    withdrawals: int
    rejections: int


class RetryBudget:
    """A Finagle-style retry budget shared by any number of retry (and hedge) policies.

    Every request deposits ``ratio`` tokens; every retry withdraws one token *when it is
    scheduled* (before its backoff sleep, not when it is sent). Tokens expire after
    ``ttl`` seconds, and a reserve of ``min_per_second * ttl`` tokens lets a quiet client
    still retry. The result is a hard bound: over any window of ``ttl`` seconds,

        retries <= ratio * requests + min_per_second * ttl

    however many policies, tasks and threads share the budget. Deposits are counted in
    whole thousandths of a token, rounded down, and time is kept in ``ttl / 10`` slots
    arranged so that deposits expire early and withdrawals late: rounding always errs on
    the side of fewer retries.

    Args:
        ratio: retries allowed per request, ``0 <= ratio <= 1000``. Default 0.2 (20 %).
        min_per_second: retries per second always allowed, ``>= 0``. Default 10.
        ttl: how long deposits and withdrawals count, seconds ``> 0``. Default 10.
        clock: the clock. Default: the system clock.
        name: for stats. Default ``"retry-budget-N"``.

    Raises:
        ConfigError: an argument is out of range.

    Example::

        budget = bt.RetryBudget(ratio=0.1, min_per_second=5)
        users = bt.Retry(attempts=3, on=ConnectionError, budget=budget)
        orders = bt.Retry(attempts=5, on=ConnectionError, budget=budget)
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float | timedelta = 10.0,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        self.ratio = v.number("ratio", ratio, low=0.0, high=1000.0)
        self.min_per_second = v.number("min_per_second", min_per_second, low=0.0)
        self.ttl = v.seconds("ttl", ttl, allow_zero=False)
        self.clock = resolve(clock)
        self.name = v.name_of(name, "retry-budget", lambda: next_index("retry-budget"))
        self._deposit = int(self.ratio * _UNIT)
        self._reserve = int(self.min_per_second * self.ttl * _UNIT)
        # Slots are computed in whole nanoseconds: with float division 1.0 // 0.1 is 9.0,
        # which would keep a deposit one slot past its ttl. Rounding the width down keeps
        # the effective ttl (SLOTS * width) at most ttl.
        self._width_ns = max(1, int(self.ttl * 1e9) // _SLOTS)
        # _ring[e % len] holds the net tokens that expire at slot e; _net is their sum.
        self._ring = [0] * (_SLOTS + 2)
        self._net = 0
        self._slot = self._slot_now()
        self._lock = threading.Lock()
        self._deposits = 0
        self._withdrawals = 0
        self._rejections = 0

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"ttl={self.ttl!r}, name={self.name!r})"
        )

    def _slot_now(self) -> int:
        return round(self.clock.monotonic() * 1e9) // self._width_ns

    def _rotate(self) -> int:
        """Expire slots up to now; returns the current slot. Caller holds the lock."""
        slot = self._slot_now()
        last = self._slot
        if slot > last:
            ring = self._ring
            size = len(ring)
            if slot - last >= size:
                ring[:] = [0] * size
                self._net = 0
            else:
                for expiring in range(last + 1, slot + 1):
                    index = expiring % size
                    self._net -= ring[index]
                    ring[index] = 0
            self._slot = slot
        return slot

    def deposit(self) -> None:
        """Record one request (called by policies once per call, not per attempt)."""
        amount = self._deposit
        with self._lock:
            self._deposits += 1
            if amount:
                slot = self._rotate()
                # Counted while the current slot < slot + SLOTS: expires at or before ttl.
                self._ring[(slot + _SLOTS) % len(self._ring)] += amount
                self._net += amount

    def try_withdraw(self) -> bool:
        """Take one retry's worth of tokens if available; ``False`` means do not retry."""
        with self._lock:
            slot = self._rotate()
            if self._net + self._reserve < _UNIT:
                self._rejections += 1
                return False
            # Counted while the current slot < slot + SLOTS + 1: expires at or after ttl.
            self._ring[(slot + _SLOTS + 1) % len(self._ring)] -= _UNIT
            self._net -= _UNIT
            self._withdrawals += 1
            return True

    def stats(self) -> RetryBudgetStats:
        """Counters since construction and the current balance in retries."""
        with self._lock:
            self._rotate()
            balance = max(0, self._net + self._reserve) / _UNIT
            return RetryBudgetStats(
                self.name, balance, self._deposits, self._withdrawals, self._rejections
            )
