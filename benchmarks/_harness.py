"""The measuring machinery shared by every suite: what a suite is, and how it is timed.

A *suite* compares *contenders* that all protect the same trivial callee, against a
*baseline* that calls it bare. Each contender is a statement (``breaker.call_sync(f)``)
compiled into a timing loop of its own, timeit-style, with every name it uses bound as a
fast local, so the loop costs the same for everyone and cancels out in the subtraction.

Method (see README.md for the why):

* calibrate: run each entry with a growing loop count until a sample takes a few ms (this
  is also the warm-up, so CPython's specialising interpreter has settled), then size its
  loop so one sample lasts about ``Settings.sample_ms`` (clamped to
  ``[min_loops, max_loops]``);
* measure: ``rounds`` rounds; in each, every entry (baseline included) is timed once, in
  an order rotated by one each round; ``gc.collect()`` before and ``gc.disable()`` during
  each sample; ``time.perf_counter_ns`` around the loop only;
* estimate: per-call time = sample / loops; overhead = min(entry) - min(baseline), the
  estimator of the noise-free cost on a noisy machine (noise only ever adds time); and
  the median over rounds of (entry - baseline) within a round, what a typical run sees.

Async suites run every sample inside one event loop (an ``asyncio.Runner`` kept for the
whole suite), timed inside the coroutine around a plain ``for`` loop of ``await``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import statistics
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Contender",
    "EntryResult",
    "RatioColumn",
    "Settings",
    "Suite",
    "SuiteResult",
    "Target",
    "measure",
]

Kind = Literal["sync", "async"]


@dataclass
class Contender:
    """One way of making the protected call.

    Attributes:
        key: a short unique id inside the suite, used by ratio columns and targets.
        label: how the row reads in the table.
        lib: the library measured (``"buttress"``, ``"pybreaker"``, ...), for the report.
        form: ``"call"`` (a call method), ``"decorator"``, or anything else that fits
            (``"context"``, ``"-"``); ratio columns pair rows with references of the
            same form where they can.
        stmt: the statement timed once per iteration; may span lines; in async suites it
            is the body of an ``async def`` (so it says ``await``).
        ns: the names ``stmt`` uses, bound as fast locals of the timing loop.
        config: the exact configuration, as code, for RESULTS.md.
        check: optional, run after calibration: raise if the contender did not do what
            the suite claims (for example, a breaker that should be open is not).
        note: a footnote for the table.
    """

    key: str
    label: str
    lib: str
    form: str
    stmt: str
    ns: dict[str, Any]
    config: str = ""
    check: Callable[[], None] | None = None
    note: str = ""


@dataclass
class RatioColumn:
    """A "vs peer" column: each row's overhead divided by a reference's overhead.

    ``refs`` maps a form to the key of the reference contender of that form; a row whose
    form has no reference is compared with ``fallback``; ``overrides`` maps a row key to
    its reference outright (a rate-mode row against the peer's rate mode). A cell whose
    reference has another form than its row is marked ``†``.
    """

    title: str
    refs: dict[str, str]
    fallback: str
    overrides: dict[str, str] = field(default_factory=dict)

    def reference(self, key: str, form: str) -> str:
        """The key of the contender row ``key`` (of ``form``) is compared with."""
        if key in self.overrides:
            return self.overrides[key]
        return self.refs.get(form, self.fallback)


@dataclass
class Target:
    """A performance target from the issue or DESIGN.md; reported, never asserted.

    With ``ref`` set the target is a ratio ``overhead(key) / overhead(ref) <= limit``;
    without it, an absolute ``overhead(key) <= limit`` nanoseconds.
    """

    label: str
    key: str
    limit: float
    ref: str | None = None
    source: str = "issue"


@dataclass
class Suite:
    """A group of contenders measured side by side against one baseline.

    ``setup``/``teardown`` run around the measurement (outside the timed regions), for
    suites that must patch something. ``order`` sorts suites in the report.
    """

    name: str
    title: str
    kind: Kind
    description: str
    baseline: Contender
    contenders: list[Contender]
    columns: list[RatioColumn] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    order: int = 100
    min_loops: int | None = None  # lower the calls-per-sample floor for slow contenders

    def entries(self) -> list[Contender]:
        return [self.baseline, *self.contenders]

    def contender(self, key: str) -> Contender:
        for entry in self.entries():
            if entry.key == key:
                return entry
        raise KeyError(f"suite {self.name!r} has no contender {key!r}")


@dataclass(frozen=True)
class Settings:
    """How hard to measure."""

    rounds: int
    sample_ms: float
    min_loops: int
    max_loops: int
    calibrate_ms: float = 2.0
    passes: int = 1  # how many times run.py measures every suite (pooled by merge())


QUICK = Settings(rounds=7, sample_ms=8.0, min_loops=100, max_loops=50_000)
FULL = Settings(rounds=15, sample_ms=50.0, min_loops=200, max_loops=200_000)


@dataclass
class EntryResult:
    """The per-call times (ns) of one contender, one per round, and its loop size."""

    contender: Contender
    loops: int
    samples: list[float]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class SuiteResult:
    """Everything measured for one suite, with the derived overheads."""

    suite: Suite
    baseline: EntryResult
    entries: list[EntryResult]
    seconds: float

    def entry(self, key: str) -> EntryResult:
        if key == self.baseline.contender.key:
            return self.baseline
        for entry in self.entries:
            if entry.contender.key == key:
                return entry
        raise KeyError(key)

    def overhead_min(self, key: str) -> float:
        return self.entry(key).min - self.baseline.min

    def overhead_median(self, key: str) -> float:
        """The median over rounds of (entry - baseline) measured in the same round.

        Pairing by round cancels slow drifts of the machine's speed between rounds.
        """
        pairs = zip(self.entry(key).samples, self.baseline.samples, strict=True)
        return statistics.median(entry - base for entry, base in pairs)


def merge(passes: list[SuiteResult]) -> SuiteResult:
    """Pool the rounds of several passes over one suite into one result.

    Each pass keeps its rounds paired (entry and baseline timed in the same round), so the
    pooled medians still pair by round. Passes are spread over the whole run, so a burst of
    load on the host that spoils one pass leaves the others' minima untouched.
    """
    first = passes[0]

    def pooled(key: str) -> EntryResult:
        parts = [result.entry(key) for result in passes]
        samples = [sample for part in parts for sample in part.samples]
        return EntryResult(parts[0].contender, parts[0].loops, samples)

    return SuiteResult(
        first.suite,
        pooled(first.baseline.contender.key),
        [pooled(entry.contender.key) for entry in first.entries],
        sum(result.seconds for result in passes),
    )


# -- compiling the timing loops --------------------------------------------------------------

_SYNC_TEMPLATE = """\
def _loop(_n, _timer{params}):
    _it = _repeat(None, _n)
    _t0 = _timer()
    for _ in _it:
{body}
    return _timer() - _t0
"""

_ASYNC_TEMPLATE = "async " + _SYNC_TEMPLATE


def _compile(contender: Contender, kind: Kind) -> Callable[..., Any]:
    """Compile ``contender.stmt`` into ``_loop(n, timer, *ns_values)``."""
    names = list(contender.ns)
    params = "".join(f", {name}" for name in names)
    body = textwrap.indent(textwrap.dedent(contender.stmt).strip("\n"), " " * 8)
    template = _ASYNC_TEMPLATE if kind == "async" else _SYNC_TEMPLATE
    source = template.format(params=params, body=body)
    scope: dict[str, Any] = {"_repeat": itertools.repeat}
    code = compile(source, f"<bench {contender.key}>", "exec")
    exec(code, scope)
    return scope["_loop"]  # type: ignore[no-any-return]


class _Runner:
    """Runs one sample of a compiled loop: directly, or inside the suite's event loop."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._asyncio: asyncio.Runner | None = asyncio.Runner() if kind == "async" else None

    def sample(self, loop: Callable[..., Any], values: list[Any], n: int) -> int:
        """Time ``n`` iterations; returns nanoseconds. GC is collected, then off."""
        gc.collect()
        gc.disable()
        try:
            if self._asyncio is None:
                return int(loop(n, time.perf_counter_ns, *values))
            return int(self._asyncio.run(loop(n, time.perf_counter_ns, *values)))
        finally:
            gc.enable()

    def close(self) -> None:
        if self._asyncio is not None:
            self._asyncio.close()


def _calibrate(
    runner: _Runner, loop: Callable[..., Any], values: list[Any], settings: Settings
) -> int:
    """Grow the loop until a sample is measurable, then size it to ``sample_ms``."""
    n = 1
    floor_ns = settings.calibrate_ms * 1e6
    while True:
        elapsed = runner.sample(loop, values, n)
        if elapsed >= floor_ns or n >= settings.max_loops:
            break
        n *= 4 if elapsed < floor_ns / 16 else 2
    per_call = elapsed / n
    wanted = int(settings.sample_ms * 1e6 / max(per_call, 1.0))
    return max(settings.min_loops, min(settings.max_loops, wanted))


def measure(
    suite: Suite,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Measure every entry of ``suite`` with the interleaved, rotated-rounds method."""
    started = time.perf_counter()
    if suite.min_loops is not None:
        settings = dataclasses.replace(settings, min_loops=suite.min_loops)
    if suite.setup is not None:
        suite.setup()
    runner = _Runner(suite.kind)
    try:
        entries = suite.entries()
        loops = [_compile(entry, suite.kind) for entry in entries]
        values = [list(entry.ns.values()) for entry in entries]
        sizes: list[int] = []
        for entry, loop, vals in zip(entries, loops, values, strict=True):
            sizes.append(_calibrate(runner, loop, vals, settings))
            if entry.check is not None:
                entry.check()
        samples: list[list[float]] = [[] for _ in entries]
        count = len(entries)
        for round_index in range(settings.rounds):
            if progress is not None:
                progress(f"{suite.name}: round {round_index + 1}/{settings.rounds}")
            for offset in range(count):
                i = (round_index + offset) % count
                elapsed = runner.sample(loops[i], values[i], sizes[i])
                samples[i].append(elapsed / sizes[i])
        for entry in entries:  # still doing what the suite claims after all the rounds?
            if entry.check is not None:
                entry.check()
    finally:
        runner.close()
        if suite.teardown is not None:
            suite.teardown()
    results = [
        EntryResult(entry, size, entry_samples)
        for entry, size, entry_samples in zip(entries, sizes, samples, strict=True)
    ]
    return SuiteResult(suite, results[0], results[1:], time.perf_counter() - started)
