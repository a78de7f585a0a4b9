"""Deadlines: a ContextVar budget, shrink-only nesting, enforcement with async with,
and propagation across processes as a relative timeout header."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from hypothesis import given
from hypothesis import strategies as st

import buttress as bt
from buttress.testing import FakeClock


def test_no_deadline_by_default() -> None:
    """Outside any deadline there is no budget."""
    assert bt.current_deadline() is None
    assert bt.remaining() is None
    assert bt.deadline_headers() == {}


def test_deadline_sets_remaining(clock: FakeClock) -> None:
    """Inside the block the remaining budget counts down with the clock."""
    with bt.deadline(2.0, clock=clock) as d:
        assert d is not None
        assert bt.remaining() == 2.0
        clock.advance(0.5)
        assert bt.remaining() == 1.5
        assert d.remaining() == 1.5
    assert bt.remaining() is None


def test_remaining_never_negative(clock: FakeClock) -> None:
    """An expired deadline reports 0, not a negative number."""
    with bt.deadline(1.0, clock=clock):
        clock.advance(5)
        assert bt.remaining() == 0.0
        current = bt.current_deadline()
        assert current is not None and current.expired()


def test_nested_deadline_can_only_shrink(clock: FakeClock) -> None:
    """A longer inner deadline keeps the outer budget; a shorter one wins."""
    with bt.deadline(1.0, clock=clock):
        with bt.deadline(10.0, clock=clock):
            assert bt.remaining() == 1.0
        with bt.deadline(0.25, clock=clock):
            assert bt.remaining() == 0.25
        assert bt.remaining() == 1.0


def test_none_adds_no_limit(clock: FakeClock) -> None:
    """deadline(None) is a no-op scope that keeps the enclosing budget."""
    with bt.deadline(None, clock=clock) as d:
        assert d is None and bt.remaining() is None
    with bt.deadline(1.0, clock=clock), bt.deadline(None, clock=clock):
        assert bt.remaining() == 1.0


def test_zero_means_expired(clock: FakeClock) -> None:
    """deadline(0) is an already spent budget, not "no deadline"."""
    with bt.deadline(0, clock=clock):
        assert bt.remaining() == 0.0


def test_instance_is_single_use_at_a_time(clock: FakeClock) -> None:
    """Re-entering an active instance is refused; sequential reuse works."""
    scope = bt.deadline(1.0, clock=clock)
    with scope:
        with pytest.raises(RuntimeError, match="already active"), scope:
            pass
        assert bt.remaining() == 1.0
    with scope:
        assert bt.remaining() == 1.0
    assert bt.remaining() is None


@pytest.mark.parametrize("bad", [-1, float("nan"), "1s", True])
def test_bad_seconds_are_rejected(bad: object) -> None:
    """A negative, NaN or non-numeric budget is a ConfigError naming `seconds`."""
    with pytest.raises(bt.ConfigError, match="seconds must be"):
        bt.deadline(bad)  # type: ignore[arg-type]


async def test_deadline_flows_into_tasks(clock: FakeClock) -> None:
    """Tasks created inside the block inherit the budget (context copy)."""
    with bt.deadline(3.0, clock=clock):
        seen = await asyncio.create_task(_remaining_later())
    assert seen == 3.0


async def _remaining_later() -> float | None:
    await asyncio.sleep(0)
    return bt.remaining()


async def test_deadline_flows_into_threads(clock: FakeClock) -> None:
    """asyncio.to_thread copies the context, so sync code in a thread sees the budget."""
    with bt.deadline(3.0, clock=clock):
        seen = await asyncio.to_thread(bt.remaining)
    assert seen == 3.0


def test_deadline_does_not_leak_between_contexts(clock: FakeClock) -> None:
    """A deadline set in one context is invisible in another."""
    ctx = contextvars.copy_context()
    with bt.deadline(1.0, clock=clock):
        assert ctx.run(bt.remaining) is None


async def test_async_with_enforces_the_budget(clock: FakeClock) -> None:
    """async with cancels the block at expiry and raises DeadlineExceededError."""
    with pytest.raises(bt.DeadlineExceededError):
        async with bt.deadline(1.0, clock=clock):
            await clock.sleep(5)
    assert clock.monotonic() == 1.0


async def test_async_with_none_enforces_the_enclosing_budget(clock: FakeClock) -> None:
    """async with deadline(None) enforces the deadline in force and reports its budget."""
    with bt.deadline(1.0, clock=clock), pytest.raises(bt.DeadlineExceededError) as info:
        async with bt.deadline(None, clock=clock):
            await clock.sleep(5)
    assert info.value.timeout == 1.0
    assert "1.000 s budget" in str(info.value)


async def test_async_with_returns_normally_in_time(clock: FakeClock) -> None:
    """A block that finishes in time is untouched."""
    async with bt.deadline(1.0, clock=clock) as d:
        await clock.sleep(0.5)
        assert d is not None
    assert clock.monotonic() == 0.5


async def test_async_with_expired_on_entry_does_not_run(clock: FakeClock) -> None:
    """An already spent budget raises before the block runs."""
    ran = False
    with pytest.raises(bt.DeadlineExceededError):
        async with bt.deadline(0, clock=clock):
            ran = True
    assert not ran


async def test_async_with_lets_outside_cancellation_through(clock: FakeClock) -> None:
    """An outside cancel during the block stays a CancelledError."""

    async def body() -> None:
        async with bt.deadline(10.0, clock=clock):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_async_deadlines_outer_fires(clock: FakeClock) -> None:
    """When the outer deadline is the shorter one, it fires and the inner stays quiet."""
    with pytest.raises(bt.DeadlineExceededError):
        async with bt.deadline(1.0, clock=clock), bt.deadline(5.0, clock=clock):
            await clock.sleep(10)
    assert clock.monotonic() == 1.0


# -- header propagation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250000u"),
        (1.0, "1000000u"),
        (0.000_000_5, "500n"),
        (0.000_000_000_1, "0n"),
        (0.000_001, "1000n"),
        (90.0, "90000000u"),
        (100.0, "100000m"),
        (3 * 3600.0, "10800000m"),
        (200_000.0, "200000S"),
        (0.0, "0n"),
        (-5.0, "0n"),
        (float("nan"), "0n"),
        (10**12, "99999999H"),
    ],
)
def test_format_timeout(seconds: float, text: str) -> None:
    """Budgets encode in grpc-timeout form with the finest unit that fits."""
    assert bt.format_timeout(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250m", 0.25), ("3S", 3.0), ("2M", 120.0), ("1H", 3600.0), ("5u", 5e-6), ("7n", 7e-9)],
)
def test_parse_timeout(text: str, seconds: float) -> None:
    """grpc-timeout values decode to seconds."""
    assert bt.parse_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m", "123456789m", "1.5S", "-1S", "5s", " 5S", "5S\n"])
def test_parse_timeout_rejects_garbage(text: str) -> None:
    """Malformed values raise a ValueError that shows the value."""
    with pytest.raises(ValueError, match="timeout header value must be"):
        bt.parse_timeout(text)


@given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False))
def test_encoding_never_promises_more_time(seconds: float) -> None:
    """The decoded budget is never more than the real one, and close to it."""
    decoded = bt.parse_timeout(bt.format_timeout(seconds))
    assert decoded <= seconds + 1e-9  # whole nanoseconds at most half a nanosecond up
    # 8 digits lose at most 1e-5 relative at a unit change (e.g. 100000.5 s -> 100000S).
    assert decoded >= seconds * (1 - 1e-5) - 1e-9


def test_deadline_headers(clock: FakeClock) -> None:
    """The remaining budget goes out as a relative duration."""
    with bt.deadline(1.5, clock=clock):
        clock.advance(0.5)
        assert bt.deadline_headers() == {"x-request-timeout": "1000000u"}
        assert bt.deadline_headers("grpc-timeout") == {"grpc-timeout": "1000000u"}


def test_deadline_from_headers_roundtrip(clock: FakeClock) -> None:
    """A server reading the header gets the caller's remaining budget."""
    with bt.deadline(2.0, clock=clock):
        headers = bt.deadline_headers()
    with bt.deadline_from_headers(headers, clock=clock):
        assert bt.remaining() == pytest.approx(2.0)


def test_deadline_from_headers_is_case_insensitive_and_reads_asgi(clock: FakeClock) -> None:
    """Plain dicts in any case and ASGI raw (bytes) header lists both work."""
    with bt.deadline_from_headers({"X-Request-Timeout": "3S"}, clock=clock):
        assert bt.remaining() == 3.0
    raw = [(b"host", b"x"), (b"x-request-timeout", b"500m")]
    with bt.deadline_from_headers(raw, clock=clock):
        assert bt.remaining() == 0.5


def test_deadline_from_headers_caps_and_defaults(clock: FakeClock) -> None:
    """max_seconds caps a greedy caller and applies when the header is absent or garbage."""
    with bt.deadline_from_headers({"x-request-timeout": "1H"}, max_seconds=5, clock=clock):
        assert bt.remaining() == 5.0
    with bt.deadline_from_headers({}, max_seconds=5, clock=clock):
        assert bt.remaining() == 5.0
    with bt.deadline_from_headers({"x-request-timeout": "soon"}, max_seconds=5, clock=clock):
        assert bt.remaining() == 5.0
    with bt.deadline_from_headers({}, clock=clock):
        assert bt.remaining() is None


def test_header_helpers_validate_the_header_name() -> None:
    """An empty or non-string header name is a ConfigError naming `header`."""
    with pytest.raises(bt.ConfigError, match="header must be a non-empty header name"):
        bt.deadline_headers("")
    with pytest.raises(bt.ConfigError, match="header must be a non-empty header name"):
        bt.deadline_from_headers({}, header=None)  # type: ignore[arg-type]
