"""The lab's output: the side-by-side table, the scenario list, and the JSON file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from ._driver import LAG_WARNING
from ._model import Scenario
from ._results import ArmResult, LabReport

__all__ = ["render", "render_list", "write_json"]

# ASCII only: the report must print on any terminal and into any log.
_COLUMNS = (
    ("scenario", "<"),
    ("arm", "<"),
    ("requests", ">"),
    ("success", ">"),
    ("degraded", ">"),
    ("failed", ">"),
    ("rejected", ">"),
    ("p50 ms", ">"),
    ("p99 ms", ">"),
    ("ampl.", ">"),
    ("verdict", "<"),
)


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    ms = value * 1000
    return f"{ms:.0f}" if ms >= 1000 else f"{ms:.1f}"


def _row(scenario: str, arm: ArmResult, verdict: str) -> list[str]:
    s = arm.summary
    return [
        scenario,
        arm.arm,
        str(s.requests),
        _pct(s.success_rate),
        _pct(s.degraded_rate),
        _pct(s.failed_rate),
        str(s.rejected),
        _ms(s.p50),
        _ms(s.p99),
        f"{arm.amplification:.2f}",
        verdict,
    ]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    header = [name for name, _ in _COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(row, _COLUMNS, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(report: LabReport) -> str:
    """The report as text: the side-by-side table, then each hypothesis and its numbers.

    One row per arm: requests (logical), success / degraded (a fallback answered) /
    failed shares, requests rejected fast by a policy, p50 and p99 latency from the
    scheduled arrival, amplification (upstream requests per logical request), and on the
    protected row the scenario's verdict: HELD when every hypothesis held, else BROKEN.
    """
    arms = "one after the other" if report.arms == "sequential" else "at the same time"
    lines = [
        f"buttress lab: seed {report.seed}, {report.rate:g} req/s, "
        f"concurrency {report.concurrency}, arms run {arms}, {report.wall:.1f} s",
        "",
    ]
    rows = []
    for result in report.scenarios:
        rows.append(_row(result.name, result.naked, ""))
        rows.append(_row("", result.protected, result.verdict))
    lines.extend(_table(rows))
    checks = [(result.name, check) for result in report.scenarios for check in result.checks]
    if checks:
        lines += ["", "hypotheses"]
        name_width = max(len(name) for name, _ in checks)
        text_width = max(len(check.hypothesis) for _, check in checks)
        for name, check in checks:
            mark = "HELD  " if check.held else "BROKEN"
            lines.append(
                f"  {name:<{name_width}}  {mark}  {check.hypothesis:<{text_width}}  {check.detail}"
            )
    notes = [
        (result.name, arm)
        for result in report.scenarios
        for arm in (result.naked, result.protected)
        if arm.notes
    ]
    if notes:  # what a scenario's hosted service reported (lab/_hosting.py)
        lines += ["", "notes"]
        width = max(len(name) for name, _ in notes)
        for name, arm in notes:
            shown = ", ".join(f"{key} {value:g}" for key, value in arm.notes.items())
            lines.append(f"  {name:<{width}}  {arm.arm:<9}  {shown}")
    lagged = [result for result in report.scenarios if result.lag > LAG_WARNING]
    if lagged:
        lines += ["", "warning: this machine could not send the load on schedule"]
        lines += [
            f"  {result.name}: up to {_ms(result.lag)} ms late; its timing verdicts are "
            f"not to be trusted"
            for result in lagged
        ]
        lines.append("  rerun on a quieter machine or with a lower --rate")
    lines += ["", f"repeat with --seed {report.seed}"]
    return "\n".join(lines)


def render_list(scenarios: Sequence[Scenario]) -> str:
    """One line per scenario: name, default length, description."""
    if not scenarios:
        return "no scenarios registered"
    width = max(len(s.name) for s in scenarios)

    def needs(scenario: Scenario) -> str:
        return "".join(f" (needs --{need} URL)" for need in scenario.needs)

    return "\n".join(
        f"{s.name:<{width}}  {s.duration:4.1f} s  {s.description}{needs(s)}" for s in scenarios
    )


def write_json(report: LabReport, path: str | os.PathLike[str]) -> None:
    """Write the raw results (summaries and every request) to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump(report.to_dict(), file, indent=1)
        file.write("\n")
