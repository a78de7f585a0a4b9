"""What a lab run measured: per arm, per scenario, per run; and their JSON form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ._driver import PhaseSpan, Sample
from ._hypotheses import Check
from ._timeline import Timeline
from ._upstream import UpstreamStats

__all__ = ["ArmResult", "LabReport", "ScenarioResult", "Summary", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (``0 < q <= 1``) of ``values``; ``None`` if empty.

    Nearest rank always returns a value that was measured: the p99 of 200 requests is the
    2nd slowest, never an interpolation.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and latency percentiles of a set of logical requests.

    ``success + degraded + failed == requests``; ``rejected`` overlaps degraded and
    failed (a rejection served by a fallback is degraded *and* rejected). Latencies are
    seconds from the scheduled arrival to the answer, over every request whatever its
    outcome: it is the wait the caller saw.
    """

    requests: int
    success: int
    degraded: int
    failed: int
    rejected: int
    p50: float | None
    p99: float | None

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Summary:
        """Summarise ``samples``."""
        items = list(samples)
        latencies = [s.latency for s in items]
        return cls(
            requests=len(items),
            success=sum(1 for s in items if s.outcome == "success"),
            degraded=sum(1 for s in items if s.outcome == "degraded"),
            failed=sum(1 for s in items if s.outcome == "failed"),
            rejected=sum(1 for s in items if s.rejected),
            p50=percentile(latencies, 0.50),
            p99=percentile(latencies, 0.99),
        )

    def _share(self, count: int) -> float:
        return count / self.requests if self.requests else 0.0

    @property
    def success_rate(self) -> float:
        """Share of requests that succeeded (0 when there were none)."""
        return self._share(self.success)

    @property
    def degraded_rate(self) -> float:
        """Share of requests a fallback answered."""
        return self._share(self.degraded)

    @property
    def failed_rate(self) -> float:
        """Share of requests that failed."""
        return self._share(self.failed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (latencies in milliseconds)."""
        return {
            "requests": self.requests,
            "success": self.success,
            "degraded": self.degraded,
            "failed": self.failed,
            "rejected_fast": self.rejected,
            "success_rate": self.success_rate,
            "degraded_rate": self.degraded_rate,
            "failed_rate": self.failed_rate,
            "p50_ms": None if self.p50 is None else self.p50 * 1000,
            "p99_ms": None if self.p99 is None else self.p99 * 1000,
        }


@dataclass(frozen=True, slots=True)
class ArmResult:
    """One arm's run: every sample, the upstream's counters and summaries.

    Attributes:
        arm: ``"naked"`` or ``"protected"``.
        samples: one :class:`~buttress.lab.Sample` per logical request, in arrival order.
        upstream: the counters of the upstream this arm ran against.
        spans: the phases as run (name, start, end, faults), indexed by ``Sample.phase``.
        wall: seconds the arm took, draining the last requests included.
        timeline: the arm's series over time, for the HTML report (``None`` if not kept).
        notes: numbers reported by the scenario's hosted service, if it has one
            (restarts, crashes...); empty otherwise.
        lag: the most seconds an arrival was sent after its scheduled time (0.0 where it
            is not measured: arms run in worker processes). Above
            :data:`~buttress.lab.LAG_WARNING` the machine could not keep the schedule and
            the run's timing verdicts are not to be trusted.
        summary: the whole run; ``phases``: one per phase (by arrival time).
    """

    arm: str
    samples: tuple[Sample, ...]
    upstream: UpstreamStats
    spans: tuple[PhaseSpan, ...]
    wall: float
    timeline: Timeline | None = None
    notes: Mapping[str, float] = field(default_factory=dict, hash=False)
    lag: float = 0.0
    summary: Summary = field(init=False)
    phases: tuple[Summary, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", Summary.of(self.samples))
        per_phase = tuple(
            Summary.of(s for s in self.samples if s.phase == index)
            for index in range(len(self.spans))
        )
        object.__setattr__(self, "phases", per_phase)

    @property
    def phase_names(self) -> tuple[str, ...]:
        """The phase names, in order."""
        return tuple(span.name for span in self.spans)

    @property
    def amplification(self) -> float:
        """Upstream requests per logical request (1.0 without retries or hedges)."""
        if not self.summary.requests:
            return 0.0
        return self.upstream.requests / self.summary.requests

    def _index(self, name: str) -> int:
        try:
            return self.phase_names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def phase(self, name: str) -> Summary:
        """The summary of the phase called ``name``.

        Raises:
            KeyError: no such phase.
        """
        return self.phases[self._index(name)]

    def first_success_after(self, name: str) -> float | None:
        """Seconds from the start of phase ``name`` to the arrival of its first request
        that succeeded; ``None`` if none did.

        Raises:
            KeyError: no such phase.
        """
        index = self._index(name)
        start = self.spans[index].start
        for sample in self.samples:
            if sample.phase == index and sample.outcome == "success":
                return sample.at - start
        return None

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``samples`` includes the raw per-request records as
        ``[at_s, phase, outcome, rejected, latency_ms, error]`` rows."""
        data: dict[str, Any] = {
            "arm": self.arm,
            **self.summary.to_dict(),
            "amplification": self.amplification,
            "wall_s": self.wall,
            "lag_ms": self.lag * 1000,
            "upstream": asdict(self.upstream),
            "notes": dict(self.notes),
            "phases": {
                name: summary.to_dict()
                for name, summary in zip(self.phase_names, self.phases, strict=True)
            },
        }
        if self.timeline is not None:
            data["timeline"] = self.timeline.to_dict()
        if samples:
            data["samples"] = [
                [
                    round(s.at, 6),
                    s.phase,
                    s.outcome,
                    s.rejected,
                    round(s.latency * 1000, 3),
                    s.error,
                ]
                for s in self.samples
            ]
        return data


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """Both arms of one scenario and the verdict of its hypotheses."""

    name: str
    description: str
    phases: tuple[tuple[str, float, str], ...]
    """``(name, seconds, fault description)`` per phase, as run (after scaling)."""
    naked: ArmResult
    protected: ArmResult
    checks: tuple[Check, ...]

    @property
    def held(self) -> bool:
        """True when every hypothesis held (vacuously true without hypotheses)."""
        return all(check.held for check in self.checks)

    @property
    def lag(self) -> float:
        """The larger of the two arms' :attr:`ArmResult.lag`: how far the load generator
        fell behind its schedule, in seconds."""
        return max(self.naked.lag, self.protected.lag)

    @property
    def verdict(self) -> str:
        """``"HELD"`` or ``"BROKEN"``."""
        return "HELD" if self.held else "BROKEN"

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "description": self.description,
            "phases": [
                {"name": name, "seconds": secs, "faults": faults}
                for name, secs, faults in self.phases
            ],
            "verdict": self.verdict,
            "hypotheses": [asdict(check) for check in self.checks],
            "arms": {
                "naked": self.naked.to_dict(samples=samples),
                "protected": self.protected.to_dict(samples=samples),
            },
        }


@dataclass(frozen=True, slots=True)
class LabReport:
    """A whole ``buttress lab`` run: the settings and one result per scenario."""

    seed: int
    rate: float
    concurrency: int
    arms: str
    scenarios: tuple[ScenarioResult, ...]
    wall: float

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` writes)."""
        return {
            "seed": self.seed,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "arms": self.arms,
            "wall_s": self.wall,
            "scenarios": [result.to_dict(samples=samples) for result in self.scenarios],
        }
