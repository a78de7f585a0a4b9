"""Steady-state hypotheses: claims about a run, checked once both arms have finished.

A hypothesis is a description and a function of ``(naked, protected)`` arm results
returning ``(held, detail)``. The helpers below cover the usual claims; write your own
with :class:`Hypothesis` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._validate import fail, number

if TYPE_CHECKING:
    from ._results import ArmResult

__all__ = [
    "Check",
    "Hypothesis",
    "amplification_at_most",
    "answered_at_least",
    "p99_below_naked",
    "phase_success_at_least",
    "recovers_within",
    "rejects_fast",
    "success_beats_naked",
]


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict on one hypothesis: ``held``, and the numbers behind it in ``detail``."""

    hypothesis: str
    held: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """A steady-state claim about a scenario's two arms.

    Args:
        description: what is claimed, in a few words (shown in the report).
        test: ``(naked, protected) -> (held, detail)``; ``detail`` shows the numbers.

    Example::

        Hypothesis(
            "protected p50 <= 20 ms",
            lambda naked, prot: ((prot.summary.p50 or 0) <= 0.02, _ms(prot.summary.p50)),
        )
    """

    description: str
    test: Callable[[ArmResult, ArmResult], tuple[bool, str]]

    def check(self, naked: ArmResult, protected: ArmResult) -> Check:
        """Evaluate the claim on a run."""
        held, detail = self.test(naked, protected)
        return Check(self.description, bool(held), detail)


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def success_beats_naked(by: float = 0.0) -> Hypothesis:
    """The protected arm's success rate is at least the naked arm's plus ``by`` (a share).

    Raises:
        ConfigError: ``by`` is not in [-1, 1].
    """
    margin = number("by", by, low=-1.0, high=1.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours, theirs = protected.summary.success_rate, naked.summary.success_rate
        return ours >= theirs + margin, f"{_pct(ours)} vs {_pct(theirs)}"

    sign = "+" if margin > 0 else "-"
    wording = f" {sign} {abs(margin) * 100:g} pts" if margin else ""
    return Hypothesis(f"protected success >= naked{wording}", test)


def answered_at_least(share: float) -> Hypothesis:
    """At least ``share`` of the protected arm's requests got an answer (success or
    degraded): the caller was never left with an error.

    Raises:
        ConfigError: ``share`` is not in [0, 1].
    """
    floor = number("share", share, low=0.0, high=1.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        summary = protected.summary
        answered = summary.success_rate + summary.degraded_rate
        return answered >= floor, _pct(answered)

    return Hypothesis(f"protected answers (success + degraded) >= {floor * 100:g} %", test)


def p99_below_naked(factor: float = 1.0) -> Hypothesis:
    """The protected arm's p99 latency is at most ``factor`` times the naked arm's.

    Raises:
        ConfigError: ``factor`` is not positive.
    """
    limit = number("factor", factor, low=0.0, low_open=True)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours, theirs = protected.summary.p99, naked.summary.p99
        if ours is None or theirs is None:
            return False, "no requests"
        return ours <= theirs * limit, f"{_ms(ours)} vs {_ms(theirs)}"

    wording = "naked p99" if limit == 1.0 else f"{limit:g} x naked p99"
    return Hypothesis(f"protected p99 <= {wording}", test)


def amplification_at_most(limit: float) -> Hypothesis:
    """The protected arm sends at most ``limit`` upstream requests per logical request.

    Raises:
        ConfigError: ``limit`` is below 1.
    """
    bound = number("limit", limit, low=1.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        value = protected.amplification
        return value <= bound, f"{value:.2f}"

    return Hypothesis(f"protected amplification <= {bound:g}", test)


def rejects_fast(at_least: int = 1) -> Hypothesis:
    """The protected arm rejected at least ``at_least`` requests without calling the
    upstream (an open breaker did its job).

    Raises:
        ConfigError: ``at_least`` is not a positive int.
    """
    if not isinstance(at_least, int) or isinstance(at_least, bool) or at_least < 1:
        raise fail("at_least", "an int >= 1", at_least)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        count = protected.summary.rejected
        return count >= at_least, f"{count} rejected fast"

    return Hypothesis(f"protected rejects fast (>= {at_least})", test)


def phase_success_at_least(phase: str, share: float) -> Hypothesis:
    """In phase ``phase`` the protected arm's success rate is at least ``share``
    (for example: it recovers once the upstream does).

    Raises:
        ConfigError: ``share`` is not in [0, 1].
    """
    floor = number("share", share, low=0.0, high=1.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        try:
            summary = protected.phase(phase)
        except KeyError:
            return False, f"no phase named {phase!r}"
        return summary.success_rate >= floor, _pct(summary.success_rate)

    return Hypothesis(f"protected success in {phase} >= {floor * 100:g} %", test)


def recovers_within(phase: str, seconds: float) -> Hypothesis:
    """In phase ``phase`` (the one after an outage) the protected arm serves a successful
    answer to a request that arrived at most ``seconds`` after the phase began: the
    pipeline notices the upstream is back (an open breaker probes it) without delay.

    Raises:
        ConfigError: ``seconds`` is negative.
    """
    bound = number("seconds", seconds, low=0.0)

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        try:
            lag = protected.first_success_after(phase)
        except KeyError:
            return False, f"no phase named {phase!r}"
        if lag is None:
            return False, f"no success in {phase}"
        return lag <= bound, f"first success {lag * 1000:.0f} ms in"

    return Hypothesis(f"protected succeeds again <= {bound * 1000:g} ms into {phase}", test)
