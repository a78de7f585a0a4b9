"""Turning measurements into tables, target verdicts and the environment block."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _harness import Settings, SuiteResult, Target

__all__ = ["Environment", "git_commit", "load_average", "render", "target_lines"]

ROOT = Path(__file__).resolve().parent.parent
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Environment:
    """Where and how the figures were produced."""

    command: str
    python: str
    machine: str
    cpus: int | None
    affinity: int | None
    versions: dict[str, str]
    commit: str
    date: str
    settings: Settings
    seconds: float
    load: tuple[float, float]

    @classmethod
    def collect(
        cls,
        command: str,
        libs: list[str],
        settings: Settings,
        seconds: float,
        load_before: float,
        commit: str,
    ) -> Environment:
        versions = {}
        for lib in ["buttress", *sorted(set(libs) - {"buttress"})]:
            try:
                versions[lib] = importlib.metadata.version(lib)
            except importlib.metadata.PackageNotFoundError:
                versions[lib] = "not installed"
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return cls(
            command=command,
            python=f"{platform.python_implementation()} {sys.version}",
            machine=platform.platform(),
            cpus=os.cpu_count(),
            affinity=affinity,
            versions=versions,
            commit=commit,
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            settings=settings,
            seconds=seconds,
            load=(load_before, load_average()),
        )


def load_average() -> float:
    """The 1-minute load average (other work competing for the CPUs), or NaN if unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def git_commit() -> str:
    """HEAD's short hash, flagged when src/ has uncommitted changes (read it at start)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + uncommitted changes in src/" if dirty else head


# -- numbers ----------------------------------------------------------------------------------


def _ns(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 10:
        return f"{value:.0f}{TIMES}"
    if value >= 0.1:
        return f"{value:.2f}{TIMES}"
    return f"{value:.3f}{TIMES}"


def _safe_ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def ratios(result: SuiteResult, key: str, ref: str) -> tuple[float | None, float | None]:
    """(ratio of minimum overheads, ratio of median overheads) of ``key`` over ``ref``."""
    return (
        _safe_ratio(result.overhead_min(key), result.overhead_min(ref)),
        _safe_ratio(result.overhead_median(key), result.overhead_median(ref)),
    )


def _verdict(result: SuiteResult, target: Target) -> tuple[bool, str]:
    if target.ref is None:
        low, mid = result.overhead_min(target.key), result.overhead_median(target.key)
        shown = f"{_ns(low)} ns (median {_ns(mid)} ns), limit {_ns(target.limit)} ns"
        return low <= target.limit, shown
    low_r, mid_r = ratios(result, target.key, target.ref)
    shown = f"{_ratio(low_r)} (median {_ratio(mid_r)}), limit {target.limit:g}{TIMES}"
    return low_r is not None and low_r <= target.limit, shown


def target_lines(result: SuiteResult) -> list[str]:
    """One line per target of the suite: met or not, on the minimum, with the median."""
    lines = []
    for target in result.suite.targets:
        met, shown = _verdict(result, target)
        word = "MET" if met else "NOT MET"
        lines.append(f"- **{word}** — {target.label}: {shown}  _[{target.source}]_")
    return lines


# -- tables -----------------------------------------------------------------------------------


def _table(result: SuiteResult) -> list[str]:
    suite = result.suite
    columns = suite.columns
    head = ["contender", "form", "overhead min (ns)", "overhead median (ns)", "noise"]
    head += [column.title for column in columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|",
    ]
    footnotes: list[str] = []
    base = result.baseline
    base_cells = [
        f"_baseline: {base.contender.label}_",
        "",
        f"_{_ns(base.min)} per call_",
        f"_{_ns(base.median)} per call_",
        _noise(base.min, base.median),
    ] + [""] * len(columns)
    lines.append("| " + " | ".join(base_cells) + " |")
    for entry in result.entries:
        contender = entry.contender
        label = contender.label
        if contender.note:
            footnotes.append(contender.note)
            label += f" [{len(footnotes)}]"
        cells = [
            label,
            contender.form,
            _ns(result.overhead_min(contender.key)),
            _ns(result.overhead_median(contender.key)),
            _noise(entry.min, entry.median),
        ]
        for column in columns:
            ref = column.reference(contender.key, contender.form)
            low, mid = ratios(result, contender.key, ref)
            mark = "†" if suite.contender(ref).form != contender.form else ""
            cells.append(f"{_ratio(low)}{mark} ({_ratio(mid)})")
        lines.append("| " + " | ".join(cells) + " |")
    for number, note in enumerate(footnotes, 1):
        lines.append("")
        lines.append(f"[{number}] {note}")
    return lines


def _noise(low: float, mid: float) -> str:
    return f"{(mid - low) / low * 100:.0f} %" if low > 0 else "n/a"


def _baseline_block(results: list[SuiteResult]) -> list[str]:
    lines = []
    for result in results:
        empty = result.baseline
        bare = result.entries[0]
        lines.append(
            f"- {bare.contender.label}: **{_ns(bare.min)} ns** per loop iteration "
            f"(median {_ns(bare.median)}); the empty loop iteration itself costs "
            f"{_ns(empty.min)} ns, so the call alone is {_ns(bare.min - empty.min)} ns."
        )
    return lines


def _suite_block(result: SuiteResult, number: int, *, configs: bool) -> list[str]:
    suite = result.suite
    lines = [f"## {number}. {suite.title}", "", suite.description, ""]
    lines += _table(result)
    lines.append("")
    if suite.columns:
        lines.append(
            "Ratios: this row's overhead ÷ the peer's overhead of the same form, from the "
            "minima, with the ratio of the medians in parentheses (lower is better). "
            "† = the peer has no such form; compared with the form named in the column's "
            "reference."
        )
        lines.append("")
    if suite.targets:
        lines += target_lines(result)
        lines.append("")
    for note in suite.notes:
        lines.append(f"- {note}")
    if suite.notes:
        lines.append("")
    if configs:
        lines.append("<details><summary>Exact configurations</summary>")
        lines.append("")
        lines.append("```python")
        for entry in [result.baseline, *result.entries]:
            if entry.contender.config:
                lines.append(f"# {entry.contender.label}")
                lines.append(entry.contender.config)
        lines.append("```")
        lines.append("")
        lines.append("</details>")
        lines.append("")
    return lines


def render(
    baselines: list[SuiteResult],
    results: list[SuiteResult],
    env: Environment | None,
    *,
    document: bool,
    sections: list[list[str]] | None = None,
) -> str:
    """The report: markdown for RESULTS.md (``document``) or the terminal.

    ``sections`` are extra markdown blocks (each starting with its ``## `` heading, no
    number) from bench modules' ``report_section()``: measurements that are not timings
    of a call, such as cache hit ratios over traces. They follow the suites, numbered on.
    """
    lines: list[str] = []
    if document:
        assert env is not None
        lines += [
            "# buttress benchmarks",
            "",
            "Per-call **overhead** of each resilience library, measured side by side in one "
            "process: the time of a protected call of a trivial callee (`def f(): return 1` "
            "/ `async def af(): return 1`) minus the time of calling it bare, in "
            "nanoseconds. Each row is timed in loops of up to "
            f"{env.settings.max_loops:,} calls, interleaved with the baseline and every other "
            f"row of its suite over {env.settings.passes} x {env.settings.rounds} rounds (the "
            "passes spread over the whole run, so a burst of load on the host spoils only "
            "some of them) in a rotating order, with "
            "the garbage collector off during a sample; the table gives the overhead from "
            "the minimum per-call time (the noise-free cost) and a median (a typical "
            "run: the median over rounds of the row's time minus the baseline's time in the "
            "same round). Ratios compare buttress with each peer in the same suite: lower "
            "is better. See `benchmarks/README.md` for the method.",
            "",
            "This machine is a small, noisy VM: the same figure moves by tens of percent "
            "between runs; the ratios, measured in the same rounds, move much less. The "
            "*noise* column is (median - minimum) ÷ minimum of the row's raw per-call time.",
            "",
            "Reproduce with:",
            "",
            "```",
            env.command,
            "```",
            "",
        ]
    all_targets = [line for result in results for line in target_lines(result)]
    if document and all_targets:
        lines += ["## Targets at a glance", "", *all_targets, ""]
        lines.append(
            "A target is met when the overhead from the minima is within the limit; the "
            "median-based figure is shown beside it. Targets are reported, never asserted."
        )
        lines.append("")
    lines += ["## Baseline: bare calls", ""] if document else ["Baseline: bare calls", ""]
    lines += _baseline_block(baselines)
    lines.append("")
    if document:
        lines.append(
            "Every suite also times its own baseline in the same rounds as its contenders "
            "(shown at the top of its table) and subtracts that one: the VM's speed drifts "
            "between suites, so absolute figures of different suites are not comparable "
            "to a few tens of ns, while overheads and ratios within a suite are."
        )
        lines.append("")
    # sections are numbered in report order (Suite.order), so suites added later slot in
    for number, result in enumerate(results, start=1):
        lines += _suite_block(result, number, configs=document)
    for offset, section in enumerate(sections or [], start=len(results) + 1):
        heading, *rest = section
        title = heading.removeprefix("## ")
        lines += [f"## {offset}. {title}" if document else f"{offset}. {title}", *rest, ""]
    if not document and all_targets:
        lines += ["Targets", "", *all_targets, ""]
    if env is not None:
        s = env.settings
        lines += [
            "## Environment" if document else "Environment",
            "",
            f"- command: `{env.command}`",
            f"- date: {env.date}",
            f"- python: {env.python}",
            f"- machine: {env.machine}; os.cpu_count() = {env.cpus}"
            + (f", usable CPUs = {env.affinity}" if env.affinity is not None else ""),
            "- packages: " + ", ".join(f"{name} {ver}" for name, ver in env.versions.items()),
            f"- buttress commit: {env.commit}",
            f"- method: {s.passes} pass(es) x {s.rounds} rounds, samples of ~{s.sample_ms:g} ms "
            f"({s.min_loops:,} to {s.max_loops:,} calls), min and median per row",
            f"- the whole run took {env.seconds:.0f} s; 1-minute load average "
            f"{env.load[0]:.2f} before, {env.load[1]:.2f} after (the run itself adds ~1)",
            "",
        ]
    return "\n".join(lines)
