"""The exception tree."""

from __future__ import annotations

import asyncio
import builtins
import pickle

import pytest

import buttress as bt


@pytest.mark.parametrize(
    "cls",
    [bt.CircuitOpenError, bt.BulkheadFullError, bt.RateLimitedError, bt.OverloadedError],
)
def test_rejections_share_a_base(cls: type[bt.RejectedError]) -> None:
    """Every rejection is a RejectedError and a ButtressError."""
    assert issubclass(cls, bt.RejectedError)
    assert issubclass(cls, bt.ButtressError)


def test_timeout_error_is_the_builtin_too() -> None:
    """bt.TimeoutError is caught by `except TimeoutError` and `except asyncio.TimeoutError`."""
    assert issubclass(bt.TimeoutError, builtins.TimeoutError)
    assert issubclass(bt.TimeoutError, asyncio.TimeoutError)
    assert issubclass(bt.DeadlineExceededError, bt.TimeoutError)


def test_config_error_is_a_value_error() -> None:
    """Bad options can be caught as ValueError as well as ButtressError."""
    assert issubclass(bt.ConfigError, ValueError)
    assert issubclass(bt.ConfigError, bt.ButtressError)


def test_rejection_carries_retry_after_and_policy() -> None:
    """retry_after and policy are kept as attributes."""
    exc = bt.CircuitOpenError("open", retry_after=2.5, policy="db")
    assert exc.retry_after == 2.5
    assert exc.policy == "db"
    assert str(exc) == "open"


def test_errors_survive_pickling() -> None:
    """Keyword-only attributes survive a pickle round trip (multiprocessing, queues)."""
    exc = pickle.loads(pickle.dumps(bt.RateLimitedError("slow down", retry_after=1.0, policy="p")))
    assert (type(exc), str(exc), exc.retry_after, exc.policy) == (
        bt.RateLimitedError,
        "slow down",
        1.0,
        "p",
    )
    t = pickle.loads(pickle.dumps(bt.DeadlineExceededError("late", timeout=0.5)))
    assert (type(t), str(t), t.timeout) == (bt.DeadlineExceededError, "late", 0.5)


def test_timeout_error_str_is_the_message() -> None:
    """The OSError base does not mangle the message."""
    assert str(bt.TimeoutError("took too long", timeout=1.0)) == "took too long"
