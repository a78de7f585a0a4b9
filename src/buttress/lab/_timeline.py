"""What happened over time in one arm: the series the HTML report charts.

Three sources, one time base (seconds since the arm's first scheduled arrival):

* the **samples** (one per logical request): success / degraded / failed shares, p50 and
  p99 latency and rejections, by arrival time;
* the **upstream**: requests it received per second (retries and hedges included);
* **OpenTelemetry**: the policies' events flow through
  :class:`~buttress.integrations.otel.OTelMetrics` into an in-memory reader that a
  :class:`MetricsSampler` reads once per bucket: breaker states, adaptive limits, and
  per-second rates of retries, hedges, fallbacks, timeouts and rejections by kind.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._driver import Sample

__all__ = ["MetricsSampler", "Timeline", "bucket_seconds", "build_timeline"]

_GAUGES = {"buttress.breaker.state": "breaker", "buttress.limit": "limit"}
"""OTel gauges charted as step lines, per policy: metric -> series family."""

_RATES = {
    "buttress.retry.scheduled": "retries",
    "buttress.hedge.launched": "hedges",
    "buttress.fallback.used": "fallbacks",
    "buttress.timeout.fired": "timeouts",
    "buttress.store.fell_back": "store fallbacks",
    "buttress.supervisor.restarts": "restarts",
    "buttress.chaos.injected": "faults injected",
}
"""OTel counters charted as per-second rates, summed over attributes."""

_REJECTED = "buttress.rejected"


def bucket_seconds(duration: float) -> float:
    """The width of one chart bucket for ``duration`` seconds of load: 40 buckets (about
    25 requests each at the default rate and length), never under 100 ms."""
    return max(0.1, duration / 40.0)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-bucket series of one arm.

    Attributes:
        bucket: seconds per bucket; bucket ``i`` covers ``[i * bucket, (i + 1) * bucket)``.
        series: name -> one value per bucket (``None`` where nothing was measured).
            Always present: ``requests/s``, ``success``, ``degraded``, ``failed``
            (shares of the requests that arrived in the bucket), ``p50 ms``, ``p99 ms``,
            ``rejected/s`` and ``upstream/s`` (requests the upstream received). From
            OpenTelemetry, when the policies emitted them: ``breaker:<policy>`` (0 closed,
            1 half-open, 2 open, 3 isolated), ``limit:<policy>``, ``rejected:<kind>/s``,
            ``retries/s``, ``hedges/s``, ``fallbacks/s``, ``timeouts/s``,
            ``store fallbacks/s``, ``restarts/s`` (supervisors), ``faults injected/s``.
    """

    bucket: float
    series: dict[str, tuple[float | None, ...]] = field(default_factory=dict)

    @property
    def buckets(self) -> int:
        """The number of buckets."""
        return max((len(values) for values in self.series.values()), default=0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (values rounded to 4 significant digits)."""
        return {
            "bucket_s": self.bucket,
            "series": {
                name: [None if v is None else float(f"{v:.4g}") for v in values]
                for name, values in self.series.items()
            },
        }


def _nearest_rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _sample_series(
    samples: Sequence[Sample], bucket: float, count: int
) -> dict[str, tuple[float | None, ...]]:
    per: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        index = min(count - 1, max(0, int(sample.at / bucket)))
        per[index].append(sample)
    out: dict[str, list[float | None]] = {
        name: []
        for name in (
            "requests/s",
            "success",
            "degraded",
            "failed",
            "p50 ms",
            "p99 ms",
            "rejected/s",
        )
    }
    for items in per:
        n = len(items)
        out["requests/s"].append(n / bucket)
        out["rejected/s"].append(sum(1 for s in items if s.rejected) / bucket)
        if not n:
            for name in ("success", "degraded", "failed", "p50 ms", "p99 ms"):
                out[name].append(None)
            continue
        for outcome in ("success", "degraded", "failed"):
            out[outcome].append(sum(1 for s in items if s.outcome == outcome) / n)
        ordered = sorted(s.latency for s in items)
        out["p50 ms"].append(_nearest_rank(ordered, 0.50) * 1000)
        out["p99 ms"].append(_nearest_rank(ordered, 0.99) * 1000)
    return {name: tuple(values) for name, values in out.items()}


def _upstream_series(arrivals: Iterable[float], bucket: float, count: int) -> tuple[float, ...]:
    counts = [0] * count
    for at in arrivals:
        if at < 0:
            continue
        counts[min(count - 1, int(at / bucket))] += 1
    return tuple(c / bucket for c in counts)


Snapshot = tuple[float, dict[tuple[str, str], float]]
"""``(seconds since the arm started, {(series family, key): value})``."""


def _metric_series(
    snapshots: Sequence[Snapshot], bucket: float, count: int
) -> dict[str, tuple[float | None, ...]]:
    """Gauges as the last value seen by the end of each bucket; counters as the rate of
    increase over each bucket."""
    if not snapshots:
        return {}
    keys = sorted({key for _, values in snapshots for key in values})
    out: dict[str, tuple[float | None, ...]] = {}
    for family, name in keys:
        ends: list[float | None] = []
        index = 0
        last: float | None = None
        for b in range(count):
            end = (b + 1) * bucket
            while index < len(snapshots) and snapshots[index][0] <= end + 1e-9:
                last = snapshots[index][1].get((family, name), last)
                index += 1
            ends.append(last)
        if family in ("breaker", "limit"):
            if family == "breaker":
                # a breaker that has not changed yet is closed
                ends = [0.0 if v is None else v for v in ends]
            out[f"{family}:{name}"] = tuple(ends)
        else:
            rates: list[float | None] = []
            previous = 0.0
            for value in ends:
                current = 0.0 if value is None else value
                rates.append(max(0.0, current - previous) / bucket)
                previous = current
            out[f"{name}/s"] = tuple(rates)
    return out


def build_timeline(
    samples: Sequence[Sample],
    duration: float,
    *,
    upstream_arrivals: Iterable[float] = (),
    snapshots: Sequence[Snapshot] = (),
    bucket: float | None = None,
) -> Timeline:
    """The series of one arm of ``duration`` seconds of load (see :class:`Timeline`).

    ``upstream_arrivals`` and the times of ``snapshots`` are seconds since the arm
    started, like :attr:`Sample.at`.
    """
    width = bucket if bucket is not None else bucket_seconds(duration)
    count = max(1, math.ceil(duration / width - 1e-9))
    series = _sample_series(samples, width, count)
    series["upstream/s"] = _upstream_series(upstream_arrivals, width, count)
    series.update(_metric_series(snapshots, width, count))
    return Timeline(width, series)


class MetricsSampler:
    """Reads the policies' OpenTelemetry metrics once per bucket while an arm runs.

    ``start()`` installs an :class:`~buttress.integrations.otel.OTelMetrics` on a private
    ``MeterProvider`` with an ``InMemoryMetricReader`` and samples it every ``interval``
    seconds from a task; ``stop()`` takes a last sample and uninstalls it. Without the
    OpenTelemetry SDK installed it records nothing (the report then lacks the policy
    charts, nothing else).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.snapshots: list[tuple[float, dict[tuple[str, str], float]]] = []
        self._metrics: Any = None
        self._reader: Any = None
        self._provider: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Install the metrics and start sampling (needs a running loop)."""
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            from ..integrations.otel import OTelMetrics
        except ImportError:  # pragma: no cover - the lab extra brings the SDK
            return
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(metric_readers=[self._reader])
        self._metrics = OTelMetrics(self._provider).install()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            self.sample()
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def sample(self) -> None:
        """Read the reader once, stamped ``time.monotonic()``."""
        if self._reader is None:
            return
        values: dict[tuple[str, str], float] = {}
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    _read_metric(metric, values)
        self.snapshots.append((time.monotonic(), values))

    async def stop(self) -> None:
        """Stop sampling (one last sample) and uninstall; idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
            self.sample()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
            self._provider.shutdown()

    def relative(self, t0: float | None) -> list[Snapshot]:
        """The snapshots with times relative to ``t0`` (``time.monotonic()``)."""
        if t0 is None:
            return []
        return [(at - t0, values) for at, values in self.snapshots]


def _read_metric(metric: Any, values: dict[tuple[str, str], float]) -> None:
    name = metric.name
    for point in metric.data.data_points:
        attributes = point.attributes or {}
        policy = str(attributes.get("buttress.policy", "?"))
        if name in _GAUGES:
            values[(_GAUGES[name], policy)] = float(point.value)
        elif name in _RATES:
            key = ("rate", _RATES[name])
            values[key] = values.get(key, 0.0) + float(point.value)
        elif name == _REJECTED:
            key = ("rate", f"rejected:{attributes.get('buttress.kind', '?')}")
            values[key] = values.get(key, 0.0) + float(point.value)
