"""The lab: fault injection, the real upstream, an end-to-end run, the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import buttress as bt
from buttress import lab
from buttress.cli import main
from buttress.lab._driver import drive

from . import steady

# -- the scenario model -----------------------------------------------------------------------


def test_builtin_scenarios_are_registered() -> None:
    """The three v1 scenarios are in the registry, in order."""
    assert [s.name for s in lab.scenarios()][:3] == ["flaky", "latency-tail", "outage"]


def test_get_scenario_names_the_unknown_one() -> None:
    """An unknown name raises a ConfigError naming it and listing the known ones."""
    with pytest.raises(bt.ConfigError, match=r"unknown scenario 'nope' \(known: flaky"):
        lab.get_scenario("nope")


def test_register_refuses_a_duplicate_name() -> None:
    """Registering a second scenario under a taken name is an error."""
    with pytest.raises(bt.ConfigError, match="already registered"):
        lab.register(lab.FLAKY)


def test_phase_rejects_a_negative_duration() -> None:
    """A phase must last a positive time; the message names the argument."""
    with pytest.raises(bt.ConfigError, match="seconds must be"):
        lab.Phase("bad", -1.0)


def test_faults_are_validated() -> None:
    """Fault rates outside [0, 1] and unknown outage kinds are refused."""
    with pytest.raises(bt.ConfigError, match="error_rate"):
        lab.Faults(error_rate=1.5)
    with pytest.raises(bt.ConfigError, match="outage"):
        lab.Faults(outage="explode")  # type: ignore[arg-type]


def test_scaled_keeps_proportions() -> None:
    """Scaling a scenario stretches every phase by the same factor to the new total."""
    scaled = lab.OUTAGE.scaled(2.0)
    assert scaled.duration == pytest.approx(2.0)
    assert [p.seconds for p in scaled.phases] == pytest.approx([0.6, 0.8, 0.6])


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 are measured values (nearest rank), None for no data."""
    values = [float(v) for v in range(1, 101)]
    assert lab.percentile(values, 0.5) == 50.0
    assert lab.percentile(values, 0.99) == 99.0
    assert lab.percentile([], 0.5) is None


def test_arrivals_are_reproducible_and_open_loop() -> None:
    """Same seed, same schedule; about rate x duration arrivals; even spacing is exact."""
    import random

    first = lab.arrivals(200, 5.0, random=random.Random(1))
    assert first == lab.arrivals(200, 5.0, random=random.Random(1))
    assert 900 < len(first) < 1100
    assert all(0 <= t < 5.0 for t in first)
    assert lab.arrivals(10, 1.0, process="even") == pytest.approx([i / 10 for i in range(10)])


# -- fault injection --------------------------------------------------------------------------


def test_fault_state_error_rate_with_a_seed() -> None:
    """Over many requests the error share matches error_rate, identically per seed."""

    def run() -> list[int]:
        state = lab.FaultState(lab.Faults(error_rate=0.25), seed=42)
        return [state.decide().status for _ in range(10_000)]

    statuses = run()
    share = statuses.count(503) / len(statuses)
    assert share == pytest.approx(0.25, abs=0.015)  # about 3.5 standard deviations
    assert statuses == run()


def test_fault_state_latency_tail() -> None:
    """A share slow_rate of requests waits a draw from slow_seconds, the rest do not."""
    state = lab.FaultState(lab.Faults(slow_rate=0.1, slow_seconds=(1.0, 2.0)), seed=3)
    decisions = [state.decide() for _ in range(4000)]
    slow = [d for d in decisions if d.kind == "slow"]
    assert len(slow) / len(decisions) == pytest.approx(0.1, abs=0.02)
    assert all(1.0 <= d.delay <= 2.0 and d.status == 200 for d in slow)
    assert state.stats().slow == len(slow)


def test_upstream_injects_errors_over_http() -> None:
    """The real server answers 503 at the configured rate and counts every request."""
    state = lab.FaultState(lab.Faults(error_rate=0.3), seed=1)
    with lab.Upstream(state) as upstream, httpx.Client(trust_env=False) as client:
        statuses = [client.get(upstream.url).status_code for _ in range(300)]
        stats = upstream.stats()
    assert set(statuses) <= {200, 503}
    assert statuses.count(503) / 300 == pytest.approx(0.3, abs=0.07)
    assert stats.requests == 300
    assert stats.errors == statuses.count(503)


def test_upstream_fail_outage_answers_503() -> None:
    """A "fail" outage answers every request 503 at once."""
    state = lab.FaultState(lab.Faults(outage="fail"))
    with lab.Upstream(state) as upstream, httpx.Client(trust_env=False) as client:
        assert {client.get(upstream.url).status_code for _ in range(20)} == {503}


def test_upstream_honours_the_propagated_deadline() -> None:
    """A hanging request is cut with 504 when the caller's x-request-timeout runs out."""
    state = lab.FaultState()
    with lab.Upstream(state) as upstream, httpx.Client(trust_env=False) as client:
        state.set(lab.Faults(outage="hang"), until=time.monotonic() + 30.0)
        response = client.get(upstream.url, headers={bt.DEADLINE_HEADER: "50m"})
        assert response.status_code == 504
        assert upstream.stats().cut_by_deadline == 1


def test_stop_releases_held_requests_and_leaves_no_thread() -> None:
    """Stopping with a request held by a hang answers it and joins every thread."""
    before = set(threading.enumerate())
    statuses: list[int] = []
    state = lab.FaultState(lab.Faults(outage="hang"))  # no end: held until stop
    upstream = lab.Upstream(state)
    upstream.start()
    try:

        def get() -> None:
            with httpx.Client(trust_env=False, timeout=30.0) as client:
                statuses.append(client.get(upstream.url).status_code)

        caller = threading.Thread(target=get)
        caller.start()
        for _ in range(1000):
            if upstream.stats().requests:
                break
            time.sleep(0.005)
        assert upstream.stats().requests == 1
    finally:
        upstream.stop()
    caller.join(10.0)
    assert statuses == [503]
    assert set(threading.enumerate()) == before


# -- an end-to-end run through uvicorn and httpx ----------------------------------------------


def _tiny_outage() -> lab.Scenario:
    def protect(ctx: lab.BuildContext) -> bt.Policy:
        return bt.pipeline(
            bt.Retry(attempts=3, on=lab.RETRYABLE, backoff=0.0, random=ctx.random),
            bt.CircuitBreaker(
                failure_rate=0.5, window=bt.CountWindow(20), min_calls=5, open_for=30.0
            ),
            bt.Timeout(0.2),
        )

    return lab.Scenario(
        name="tiny-outage",
        description="healthy, then every request fails",
        phases=(
            lab.Phase("healthy", 0.5),
            lab.Phase("outage", 0.5, lab.Faults(outage="fail")),
        ),
        protect=protect,
        hypotheses=(lab.rejects_fast(), lab.amplification_at_most(100.0)),
    )


@pytest.fixture(scope="module")
def tiny_run() -> tuple[lab.LabReport, set[threading.Thread], set[threading.Thread], str]:
    """One run of a tiny outage scenario, with the threads alive before and after."""
    before = set(threading.enumerate())
    stream = io.StringIO()
    report = steady.run_lab(
        [_tiny_outage()],
        lab.LabConfig(rate=100, seed=5, arrivals="even"),
        progress=lab.Progress(stream, live=False),
    )
    after = set(threading.enumerate())
    return report, before, after, stream.getvalue()


def test_run_outage_naked_arm_fails_through_the_outage(tiny_run) -> None:
    """The naked arm succeeds while healthy and never during a full outage."""
    report = tiny_run[0]
    naked = report.scenarios[0].naked
    assert naked.summary.requests == 100
    assert naked.phase("outage").success == 0
    assert naked.phase("outage").failed == naked.phase("outage").requests
    # Not 100 %: the last healthy arrivals may reach the upstream once the outage began.
    assert naked.phase("healthy").success_rate > 0.5
    assert naked.summary.rejected == 0


def test_run_naked_amplification_is_exactly_one(tiny_run) -> None:
    """Without retries, the upstream sees exactly one request per logical request."""
    naked = tiny_run[0].scenarios[0].naked
    assert naked.upstream.requests == naked.summary.requests
    assert naked.amplification == 1.0


def test_run_protected_arm_rejects_fast_once_the_breaker_opens(tiny_run) -> None:
    """The breaker opens early in the outage; later requests are rejected, not sent."""
    result = tiny_run[0].scenarios[0]
    outage = result.protected.phase("outage")
    assert outage.success == 0
    assert outage.rejected > outage.requests * 0.5
    # Rejected calls never reach the upstream, so it saw fewer requests than the naked arm.
    assert result.protected.upstream.requests < result.naked.upstream.requests
    late = [s for s in result.protected.samples if s.at > 0.8]
    assert late and all(s.rejected for s in late)
    assert result.verdict == "HELD"
    assert [c.held for c in result.checks] == [True, True]


def test_run_leaves_no_thread_behind(tiny_run) -> None:
    """Servers, event loops and executors are all gone once run_lab returns."""
    _, before, after, _ = tiny_run
    assert after == before


def test_run_reports_progress_and_renders(tiny_run) -> None:
    """Plain progress names phases; the table shows both arms and the verdict."""
    report, _, _, progress = tiny_run
    assert "phase 2/2 outage" in progress
    assert "\r" not in progress  # not a terminal: plain lines only
    text = lab.render(report)
    assert "tiny-outage" in text and "naked" in text and "protected" in text
    assert "HELD" in text
    assert "repeat with --seed 5" in text


def test_report_to_dict_is_json_ready(tiny_run) -> None:
    """The JSON form carries summaries, per-phase numbers and raw samples."""
    data = json.loads(json.dumps(tiny_run[0].to_dict()))
    arms = data["scenarios"][0]["arms"]
    assert arms["naked"]["amplification"] == 1.0
    assert len(arms["protected"]["samples"]) == arms["protected"]["requests"]
    assert set(arms["naked"]["phases"]) == {"healthy", "outage"}


async def test_drive_measures_how_far_it_fell_behind_its_schedule() -> None:
    """A stalled event loop sends overdue arrivals late: drive() records the worst
    lateness as the arm's lag (the loop's clock jumps 0.3 s, as in a stall)."""
    loop = asyncio.get_running_loop()
    real = loop.time
    jump = 0.0

    def stalled_time() -> float:
        return real() + jump

    async def call() -> None:
        nonlocal jump
        jump = 0.3  # the first call "stalls" the loop: every later arrival is overdue

    span = lab.PhaseSpan("steady", 0.0, 0.1, lab.Faults())
    schedule = [i / 100 for i in range(10)]
    progress = lab.ArmProgress("t", "naked", [span], total=len(schedule))
    loop.time = stalled_time  # type: ignore[method-assign]
    try:
        samples = await drive(
            call, schedule, [span], lab.FaultState(lab.Faults()), concurrency=4, progress=progress
        )
    finally:
        del loop.time  # back to the class's method
    assert len(samples) == 10
    assert 0.2 < progress.lag < 0.31 + 0.2  # 0.3 s minus the first arrivals' own offsets


def test_report_warns_when_the_load_fell_behind(tiny_run) -> None:
    """A run whose load generator fell behind more than LAG_WARNING says so, by name."""
    report = tiny_run[0]
    result = report.scenarios[0]
    late = dataclasses.replace(result, naked=dataclasses.replace(result.naked, lag=1.5))
    assert late.lag == 1.5
    text = lab.render(dataclasses.replace(report, scenarios=(late,)))
    assert "could not send the load on schedule" in text
    assert "tiny-outage: up to 1500 ms late" in text
    assert json.loads(json.dumps(late.to_dict()))["arms"]["naked"]["lag_ms"] == 1500.0


def test_classify_counts_fallback_answers_as_degraded() -> None:
    """A Degraded answer is degraded (and rejected when a rejection caused it)."""
    rejected = lab.Degraded(bt.CircuitOpenError("open"))
    assert lab.classify(rejected) == ("degraded", True, "CircuitOpenError")
    assert lab.classify(None, lab.UpstreamError(503)) == ("failed", False, "UpstreamError")
    assert lab.classify(object()) == ("success", False, None)


def test_live_progress_redraws_one_line() -> None:
    """On a terminal the status line is redrawn with a carriage return."""
    stream = io.StringIO()
    progress = lab.Progress(stream, live=True)
    span = lab.PhaseSpan("steady", 0.0, 1.0, lab.Faults())
    arm = lab.ArmProgress("demo", "naked", [span], total=10, started_at=time.monotonic())
    progress.update([arm])
    assert stream.getvalue().startswith("\r\x1b[K")
    assert "phase 1/1 steady" in stream.getvalue()


# -- the command line -------------------------------------------------------------------------


def test_cli_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    """`buttress lab --list` prints each scenario with its description and exits 0."""
    assert main(["lab", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("flaky", "latency-tail", "outage"):
        assert name in out


def test_cli_unknown_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown scenario is a usage error that names it."""
    assert main(["lab", "--scenario", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["lab", "--duration", "-1"],
        ["lab", "--duration", "0"],
        ["lab", "--rate", "abc"],
        ["lab", "--concurrency", "0"],
        ["lab", "--seed", "-3"],
        ["lab", "--quick", "--duration", "3"],
        ["lab", "--scenario", "flaky", "--json", "/no/such/dir/out.json"],
        [],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments exit 2 with a message, before any load is sent."""
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_cli_runs_a_scenario_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short real run prints the table, writes the raw results and, by default, the
    HTML report in the current directory; exit code 0."""
    monkeypatch.chdir(tmp_path)
    out_file = tmp_path / "lab.json"
    code = main(
        ["lab", "-s", "flaky", "--duration", "0.4", "--seed", "2", "-q", "--json", str(out_file)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "flaky" in out and ("HELD" in out or "BROKEN" in out)
    data = json.loads(out_file.read_text())
    assert data["seed"] == 2
    assert data["scenarios"][0]["name"] == "flaky"
    assert "timeline" in data["scenarios"][0]["arms"]["protected"]
    page = tmp_path / "buttress-lab.html"
    assert f"report with charts: {page}" in out
    assert '<script id="lab-data"' in page.read_text()


def test_cli_without_the_lab_extra_prints_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With httpx missing, `buttress lab` prints the install hint and exits 2."""
    import buttress

    for name in [m for m in sys.modules if m == "buttress.lab" or m.startswith("buttress.lab.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(buttress, "lab")
    monkeypatch.setitem(sys.modules, "httpx", None)
    assert main(["lab", "--list"]) == 2
    assert "pip install 'buttress[lab]'" in capsys.readouterr().err


def test_core_import_does_not_load_the_lab_dependencies() -> None:
    """`import buttress` (and the CLI module) never import httpx or uvicorn."""
    code = (
        "import sys, buttress, buttress.cli; "
        "loaded = {'httpx', 'uvicorn'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
