"""Backoff strategies: exact delays, jitter bounds, immutability."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import buttress as bt


def test_constant() -> None:
    """Constant backoff returns the same delay every time."""
    b = bt.Backoff.constant(0.3)
    assert [b.compute(n, 0.0, random.Random()) for n in (1, 2, 10)] == [0.3, 0.3, 0.3]


def test_linear_grows_and_caps() -> None:
    """Linear backoff adds `step` per retry up to `cap`."""
    b = bt.Backoff.linear(base=0.1, step=0.2, cap=0.6)
    got = [b.compute(n, 0.0, random.Random()) for n in (1, 2, 3, 4)]
    assert got == pytest.approx([0.1, 0.3, 0.5, 0.6])


def test_exponential_without_jitter() -> None:
    """No jitter: base * factor ** (n - 1), capped."""
    b = bt.Backoff.exponential(base=0.1, cap=1.0, factor=2, jitter="none")
    got = [b.compute(n, 0.0, random.Random()) for n in (1, 2, 3, 4, 5, 50, 5000)]
    assert got == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_bounds(n: int, seed: int) -> None:
    """Full jitter lies in [0, min(cap, base * 2 ** (n - 1))]."""
    b = bt.Backoff.exponential(base=0.05, cap=3.0, jitter="full")
    delay = b.compute(n, 0.0, random.Random(seed))
    assert 0.0 <= delay <= min(3.0, 0.05 * 2.0 ** min(n - 1, 100))


@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=0, max_value=2**32))
def test_equal_jitter_bounds(n: int, seed: int) -> None:
    """Equal jitter lies in [d / 2, d]."""
    b = bt.Backoff.exponential(base=0.05, cap=3.0, jitter="equal")
    ceiling = min(3.0, 0.05 * 2.0 ** min(n - 1, 100))
    delay = b.compute(n, 0.0, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


@given(
    st.integers(min_value=1, max_value=100),
    st.floats(min_value=0.0, max_value=10.0),
    st.integers(min_value=0, max_value=2**32),
)
def test_decorrelated_jitter_bounds(n: int, previous: float, seed: int) -> None:
    """Decorrelated jitter lies in [base, min(cap, 3 * previous)] (previous starts at base)."""
    b = bt.Backoff.exponential(base=0.1, cap=2.0, jitter="decorrelated")
    delay = b.compute(n, previous, random.Random(seed))
    upper = max(0.1, (previous if previous > 0 else 0.1) * 3)
    assert 0.1 <= delay <= min(2.0, upper) + 1e-12


def test_seeded_jitter_is_reproducible() -> None:
    """The same seed gives the same delays."""
    b = bt.Backoff.exponential()
    a = [b.compute(n, 0.0, random.Random(7)) for n in range(1, 6)]
    c = [b.compute(n, 0.0, random.Random(7)) for n in range(1, 6)]
    assert a == c


def test_strategies_are_immutable() -> None:
    """Shared strategies cannot be changed after construction."""
    b = bt.Backoff.exponential()
    with pytest.raises(AttributeError, match="immutable"):
        b.base = 5  # type: ignore[attr-defined]


def test_repr_shows_parameters() -> None:
    """repr names the factory and its arguments."""
    assert repr(bt.Backoff.constant(0.5)) == "Backoff.constant(0.5)"
    assert "jitter='full'" in repr(bt.Backoff.exponential())


def test_custom_backoff_subclass() -> None:
    """Users can write their own strategy by subclassing Backoff."""

    class Fibonacci(bt.Backoff):
        __slots__ = ()

        def compute(self, retry: int, previous: float, rng: random.Random) -> float:
            a, b = 0.1, 0.1
            for _ in range(retry - 1):
                a, b = b, a + b
            return a

    assert Fibonacci().compute(4, 0.0, random.Random()) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (bt.Backoff.constant, {"delay": -1}, "delay must be a duration >= 0"),
        (bt.Backoff.exponential, {"base": 2, "cap": 1}, r"cap must be a duration >= base \(2\)"),
        (bt.Backoff.exponential, {"factor": 0.5}, r"factor must be a number in \[1, inf\)"),
        (bt.Backoff.exponential, {"jitter": "some"}, "jitter must be one of"),
        (bt.Backoff.linear, {"step": float("nan")}, "step must be a duration >= 0"),
    ],
)
def test_bad_options(factory: object, kwargs: dict[str, object], message: str) -> None:
    """Bad options name themselves."""
    with pytest.raises(bt.ConfigError, match=message):
        factory(**kwargs)  # type: ignore[operator]
