"""The lab's timelines, OpenTelemetry sampling and HTML report (rendered in Chromium)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import buttress as bt
from buttress import lab
from buttress._events import GLOBAL_LISTENERS
from buttress.cli import main
from buttress.lab._progress import _bar
from buttress.lab._timeline import MetricsSampler, bucket_seconds
from buttress.testing import FakeClock

from . import steady

# -- timelines ----------------------------------------------------------------------------------


def sample(at: float, outcome: str = "success", latency: float = 0.01, rejected: bool = False):
    return lab.Sample(at, 0, outcome, rejected, latency, None)  # type: ignore[arg-type]


def test_bucket_width_is_a_fortieth_never_under_100ms() -> None:
    assert bucket_seconds(10.0) == 0.25
    assert bucket_seconds(1.0) == 0.1
    assert bucket_seconds(40.0) == 1.0


def test_timeline_splits_samples_by_arrival() -> None:
    samples = [
        sample(0.05, latency=0.010),
        sample(0.06, "failed", latency=0.030),
        sample(0.07, "degraded", latency=0.020, rejected=True),
        sample(0.15, latency=0.040),
        sample(0.35, latency=0.5),  # beyond the last bucket's start: lands in the last
    ]
    timeline = lab.build_timeline(samples, 0.3, upstream_arrivals=[0.01, 0.02, 0.25, -1.0])
    assert timeline.bucket == 0.1
    assert timeline.buckets == 3
    series = timeline.series
    assert series["requests/s"] == pytest.approx((30.0, 10.0, 10.0))
    assert series["success"] == pytest.approx((1 / 3, 1.0, 1.0))
    assert series["failed"] == pytest.approx((1 / 3, 0.0, 0.0))
    assert series["degraded"] == pytest.approx((1 / 3, 0.0, 0.0))
    assert series["p50 ms"] == pytest.approx((20.0, 40.0, 500.0))
    assert series["p99 ms"] == pytest.approx((30.0, 40.0, 500.0))
    assert series["rejected/s"] == pytest.approx((10.0, 0.0, 0.0))
    # an arrival before time zero (the lead-in) is not charted
    assert series["upstream/s"] == pytest.approx((20.0, 0.0, 10.0))


def test_empty_buckets_have_no_shares_or_latency() -> None:
    timeline = lab.build_timeline([sample(0.25)], 0.3)
    assert timeline.series["success"] == (None, None, 1.0)
    assert timeline.series["p99 ms"][:2] == (None, None)
    assert timeline.series["requests/s"][:2] == (0.0, 0.0)


def test_metric_snapshots_become_steps_and_rates() -> None:
    snapshots = [
        (0.05, {("rate", "retries"): 1.0}),
        (0.10, {("rate", "retries"): 3.0, ("breaker", "db"): 2.0}),
        (0.21, {("rate", "retries"): 3.0, ("breaker", "db"): 1.0, ("limit", "l"): 8.0}),
        (0.30, {("rate", "retries"): 7.0, ("breaker", "db"): 0.0, ("limit", "l"): 9.0}),
    ]
    series = lab.build_timeline([], 0.3, snapshots=snapshots).series
    # counters: increase per bucket, per second
    assert series["retries/s"] == pytest.approx((30.0, 0.0, 40.0))
    # gauges: last value by the end of the bucket; a breaker not yet seen is closed
    assert series["breaker:db"] == (2.0, 2.0, 0.0)
    assert series["limit:l"] == (None, None, 9.0)


def test_timeline_to_dict_is_json_ready() -> None:
    timeline = lab.build_timeline([sample(0.0123456789)], 0.1)
    data = json.loads(json.dumps(timeline.to_dict(), allow_nan=False))
    assert data["bucket_s"] == 0.1
    assert data["series"]["requests/s"] == [10.0]


async def test_sampler_reads_policy_events_through_opentelemetry() -> None:
    before = list(GLOBAL_LISTENERS)
    sampler = MetricsSampler(0.01)
    sampler.start()
    assert len(GLOBAL_LISTENERS) == len(before) + 1
    breaker = bt.CircuitBreaker(name="db", consecutive_failures=1, clock=FakeClock())

    async def fail() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    with pytest.raises(bt.CircuitOpenError):
        await breaker.call(fail)
    await asyncio.sleep(0.03)
    await sampler.stop()
    await sampler.stop()  # idempotent
    assert before == GLOBAL_LISTENERS
    last = sampler.snapshots[-1][1]
    assert last[("breaker", "db")] == 2.0
    assert last[("rate", "rejected:breaker")] == 1.0
    t0 = sampler.snapshots[0][0]
    assert sampler.relative(t0)[0][0] == 0.0
    assert sampler.relative(None) == []


def test_progress_bar_fills_with_answers() -> None:
    span = lab.PhaseSpan("steady", 0.0, 1.0, lab.Faults())
    arm = lab.ArmProgress("demo", "naked", [span], total=10)
    assert _bar(arm) == "[" + "-" * 20 + "]"
    arm.done = 5
    assert _bar(arm) == "[" + "#" * 10 + "-" * 10 + "]"
    arm.done = 10
    assert _bar(arm, width=4) == "[####]"
    stream = io.StringIO()
    lab.Progress(stream, live=True).update([arm])
    assert "[" + "#" * 20 + "]" in stream.getvalue()


# -- the report ---------------------------------------------------------------------------------


def _arm(name: str, series: dict[str, tuple[float | None, ...]]) -> lab.ArmResult:
    spans = (
        lab.PhaseSpan("healthy", 0.0, 0.2, lab.Faults()),
        lab.PhaseSpan("outage", 0.2, 0.4, lab.Faults(outage="fail")),
    )
    samples = tuple(sample(i * 0.01, "success" if i < 20 else "degraded", 0.005) for i in range(40))
    timeline = lab.build_timeline(samples, 0.4)
    timeline.series.update(series)
    stats = lab.UpstreamStats(40, 20, 0, 0, 20, 0, 0)
    return lab.ArmResult(name, samples, stats, spans, 0.5, timeline)


def _result(description: str = "demo", **protected: tuple[float | None, ...]) -> lab.ScenarioResult:
    naked, guarded = _arm("naked", {}), _arm("protected", protected)
    check = lab.Check("protected answers", True, "100 %")
    return lab.ScenarioResult("demo", description, (), naked, guarded, (check,))


def test_chart_specs_always_show_success_latency_and_load() -> None:
    specs = lab.chart_specs(_result())
    assert [s["id"] for s in specs] == ["demo-success", "demo-latency", "demo-upstream"]
    success = specs[0]
    assert [s["name"] for s in success["series"]] == [
        "naked",
        "protected",
        "protected answered (incl. fallback)",
    ]
    assert success["series"][0]["values"][0] == 100.0
    assert specs[1]["log"] is True


def test_chart_specs_add_policy_charts_when_reported() -> None:
    result = _result(
        **{
            "breaker:db": (0.0, 2.0, 2.0, 1.0),
            "limit:lim": (4.0, 5.0, None, 6.0),
            "retries/s": (0.0, 10.0, 0.0, 0.0),
            "hedges/s": (0.0, 0.0, 0.0, 0.0),  # never active: not charted
        }
    )
    specs = {s["id"]: s for s in lab.chart_specs(result)}
    assert specs["demo-breaker"]["step"] is True
    assert specs["demo-breaker"]["ticks"]["2"] == "open"
    assert specs["demo-limit"]["series"][0]["values"] == [4.0, 5.0, None, 6.0]
    assert [s["name"] for s in specs["demo-activity"]["series"]] == ["retries"]


def _report(result: lab.ScenarioResult) -> lab.LabReport:
    return lab.LabReport(7, 100.0, 100, "sequential", (result,), 1.25)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.data_script: str | None = None
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("src"):
            self.srcs.append(found["src"] or "")
        if tag == "link":
            self.links.append(found.get("href") or "")
        self._in_data = tag == "script" and found.get("id") == "lab-data"

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_script = data
            self._in_data = False


def test_page_is_self_contained_and_embeds_its_data_safely() -> None:
    hostile = "ends </script><script>alert(1)</script> & <!-- here"
    page = lab.render_html(_report(_result(description=hostile)), generated="then")
    parser = _Scripts()
    parser.feed(page)
    assert parser.srcs == [] and parser.links == []  # nothing fetched from anywhere
    assert parser.data_script is not None
    data = json.loads(parser.data_script)
    assert data["scenarios"][0]["description"] == hostile
    assert data["meta"]["seed"] == 7 and data["meta"]["generated"] == "then"
    assert "<title>buttress lab: 1/1 held</title>" in page
    assert page.count("<script") == 2


# -- rendered in a real browser -----------------------------------------------------------------


def _chromium() -> str:
    for name in (os.environ.get("BUTTRESS_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name) or name
    pytest.fail("no chromium: install Debian's chromium package (./scripts/test does)")


def _render(page: Path, profile: Path) -> str:
    """The DOM of ``page`` after its scripts ran, from headless Chromium."""
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _root_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<html([^>]*)>", dom)
    assert match, dom[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[lab.LabReport, Path]:
    """A short real run of two scenarios, written as HTML."""
    folder = tmp_path_factory.mktemp("report")
    report = steady.run_lab(
        [lab.get_scenario("outage"), lab.get_scenario("overload")],
        lab.LabConfig(duration=0.8, seed=11),
    )
    page = folder / "lab.html"
    lab.write_html(report, page)
    return report, page


def test_chromium_renders_every_chart_without_errors(
    real_report: tuple[lab.LabReport, Path], tmp_path: Path
) -> None:
    report, page = real_report
    expected = sum(len(lab.chart_specs(result)) for result in report.scenarios)
    # the protected arms reported through OpenTelemetry: breaker and limit charts exist
    ids = {spec["id"] for r in report.scenarios for spec in lab.chart_specs(r)}
    assert {"outage-breaker", "overload-limit"} <= ids
    dom = _render(page, tmp_path / "profile")
    attributes = _root_attributes(dom)
    assert attributes.get("data-errors") == "0", attributes.get("data-error-list")
    assert attributes.get("data-charts") == str(expected)
    charts = re.findall(r'<div class="chart" data-chart="([^"]+)">(.*?)</svg>', dom, re.S)
    assert {chart_id for chart_id, _ in charts} == ids
    for chart_id, svg in charts:
        lines = re.findall(r'<path d="(M[^"]*)"', svg)
        assert lines and any("L" in d for d in lines), chart_id  # a drawn line, not a stub


def test_a_broken_chart_is_reported_by_the_page(tmp_path: Path) -> None:
    """The check above can fail: a chart the script cannot draw is counted as an error."""
    page = lab.render_html(_report(_result()))
    assert page.count('"values":[') > 3
    page = page.replace('"values":[', '"values":7,"unused":[', 1)  # the success chart
    broken = tmp_path / "broken.html"
    broken.write_text(page)
    attributes = _root_attributes(_render(broken, tmp_path / "profile"))
    assert attributes.get("data-errors") != "0"
    assert attributes.get("data-charts") == "2"  # the other two charts still drew


def test_cli_writes_the_report_where_asked(
    real_report: tuple[lab.LabReport, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "missing" / "x.html"
    assert main(["lab", "-s", "flaky", "--html", str(bad)]) == 2
    assert "--html: no such directory" in capsys.readouterr().err
