"""The overload scenario: an upstream with a capacity, goodput, and an end-to-end run."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

import buttress as bt
from buttress import lab
from buttress.cli import main
from buttress.lab._driver import PhaseSpan, Sample
from buttress.lab._scenarios_overload import (
    OVERLOAD,
    USEFUL_LATENCY,
    goodput,
    goodput_at_least_naked,
)

from . import steady

# -- the scenario -----------------------------------------------------------------------------


def test_overload_is_registered_after_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    """`buttress lab --list` shows it, after the three v1 scenarios."""
    names = [s.name for s in lab.scenarios()]
    assert names.index("overload") > names.index("outage")
    assert lab.get_scenario("overload") is OVERLOAD
    assert main(["lab", "--list"]) == 0
    assert "overload" in capsys.readouterr().out


def test_offered_load_is_three_times_the_capacity() -> None:
    """At the lab's default rate the upstream can serve a third of the requests."""
    faults = OVERLOAD.phases[0].faults
    assert faults.workers is not None
    capacity = faults.workers / faults.latency
    assert lab.LabConfig().rate / capacity == pytest.approx(3.0)
    assert faults.describe() == "30 ms service time, 1 workers, queue 12"


def test_protect_builds_a_fresh_pipeline() -> None:
    """protect() returns a new policy each run (no state carried between runs)."""
    import random

    first = OVERLOAD.protect(lab.BuildContext(random.Random(1)))
    second = OVERLOAD.protect(lab.BuildContext(random.Random(1)))
    assert isinstance(first, bt.Policy)
    assert first is not second


# -- goodput ----------------------------------------------------------------------------------


def sample(outcome: str, latency: float) -> Sample:
    return Sample(0.0, 0, outcome, outcome == "failed", latency)  # type: ignore[arg-type]


def arm(name: str, samples: list[Sample], seconds: float = 2.0) -> lab.ArmResult:
    stats = lab.UpstreamStats(0, 0, 0, 0, 0, 0, 0)
    span = PhaseSpan("overload", 0.0, seconds, lab.Faults())
    return lab.ArmResult(name, tuple(samples), stats, (span,), seconds)


def test_goodput_counts_timely_successes_per_second() -> None:
    """Only successes within the useful latency count, divided by the load's length."""
    samples = [
        sample("success", 0.1),
        sample("success", 0.25),
        sample("success", 0.3),
        sample("failed", 0.01),
        sample("degraded", 0.01),
    ]
    assert goodput(samples, 2.0, 0.25) == 1.0
    assert goodput(samples, 0.0, 0.25) == 0.0


def test_goodput_hypothesis() -> None:
    """Protected goodput >= factor x naked goodput, with both numbers in the detail."""
    naked = arm("naked", [sample("success", 0.4)] * 60 + [sample("success", 0.1)] * 4)
    protected = arm("protected", [sample("success", 0.1)] * 60 + [sample("failed", 0.0)] * 4)
    check = goodput_at_least_naked().check(naked, protected)
    assert check.held
    assert check.detail == "30.0/s vs 2.0/s"
    assert check.hypothesis == "protected goodput (<= 250 ms) >= naked goodput"
    assert not goodput_at_least_naked(useful=0.5).check(naked, protected).held
    assert goodput_at_least_naked(factor=2.0).description.endswith(">= 2 x naked goodput")
    assert USEFUL_LATENCY == 0.25


def test_goodput_hypothesis_validates() -> None:
    """useful and factor must be positive."""
    with pytest.raises(bt.ConfigError, match="useful must be"):
        goodput_at_least_naked(useful=0)
    with pytest.raises(bt.ConfigError, match="factor must be"):
        goodput_at_least_naked(factor=-1)


# -- the upstream's capacity ------------------------------------------------------------------


def test_capacity_faults_are_validated() -> None:
    """workers >= 1, queue >= 0, and a queue needs workers."""
    with pytest.raises(bt.ConfigError, match="workers must be an int >= 1, got 0"):
        lab.Faults(workers=0)
    with pytest.raises(bt.ConfigError, match="queue must be an int >= 0, got -1"):
        lab.Faults(workers=1, queue=-1)
    with pytest.raises(bt.ConfigError, match="queue must be None unless workers is set"):
        lab.Faults(queue=3)


def test_default_faults_have_no_capacity_limit() -> None:
    """Without workers nothing changes: decisions carry no capacity."""
    state = lab.FaultState(lab.Faults(latency=0.01), seed=1)
    decision = state.decide()
    assert (decision.workers, decision.queue) == (None, None)
    assert lab.Faults().describe() == "healthy"


def test_only_answered_requests_need_a_worker() -> None:
    """ok and slow decisions carry the capacity; errors and outages are answered at once."""
    state = lab.FaultState(lab.Faults(error_rate=0.5, workers=2, queue=3), seed=4)
    decisions = [state.decide() for _ in range(200)]
    assert {(d.workers, d.queue) for d in decisions if d.kind == "ok"} == {(2, 3)}
    assert {(d.workers, d.queue) for d in decisions if d.kind == "error"} == {(None, None)}
    state.set(lab.Faults(outage="fail", workers=2))
    assert state.decide().workers is None


def concurrent_gets(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    """`count` GETs at once from threads; their statuses in completion order."""
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(count)

    def get() -> None:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            start.wait(5)
            status = client.get(url, headers=headers or {}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=get) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return statuses


def test_bounded_queue_refuses_the_excess_with_503() -> None:
    """One worker and a queue of 2: of 8 simultaneous requests 3 are served, 5 refused."""
    state = lab.FaultState(lab.Faults(latency=0.2, workers=1, queue=2), seed=1)
    with lab.Upstream(state) as upstream:
        statuses = concurrent_gets(upstream.url, 8)
        stats = upstream.stats()
    assert sorted(statuses) == [200] * 3 + [503] * 5
    assert statuses[:5] == [503] * 5  # refused at once, before any is served
    assert stats.queue_full == 5
    assert stats.requests == stats.ok == 8


def test_a_deadline_that_runs_out_in_the_queue_is_504() -> None:
    """A queued request whose propagated budget ends before a worker frees is cut, 504."""
    state = lab.FaultState(lab.Faults(latency=0.3, workers=1), seed=1)
    with lab.Upstream(state) as upstream:
        statuses = concurrent_gets(upstream.url, 3, {bt.DEADLINE_HEADER: "100m"})
        stats = upstream.stats()
    # The first gets the worker but its 100 ms budget ends during its 300 ms service;
    # the others never get the worker in time.
    assert statuses == [504, 504, 504]
    assert stats.cut_by_deadline == 3


def test_workers_serve_one_after_the_other() -> None:
    """With one worker, answers to simultaneous requests come one service time apart."""
    state = lab.FaultState(lab.Faults(latency=0.1, workers=1), seed=1)

    async def run(url: str) -> list[float]:
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(trust_env=False) as client:
            started = loop.time()

            async def one() -> float:
                await client.get(url)
                return loop.time() - started

            return sorted(await asyncio.gather(*(one() for _ in range(3))))

    with lab.Upstream(state) as upstream:
        done = asyncio.run(run(upstream.url))
    # Served in turn, so the last answer needs at least three service times.
    assert done[-1] >= 0.3
    assert upstream.stats().ok == 3


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overload_run() -> lab.ScenarioResult:
    """One short run of the overload scenario."""
    report = steady.run_lab([OVERLOAD], lab.LabConfig(duration=1.0, seed=3))
    return report.scenarios[0]


def test_naked_arm_queues_and_is_refused(overload_run: lab.ScenarioResult) -> None:
    """The naked client's answers wait in the full queue; most requests get 503 anyway."""
    naked = overload_run.naked
    assert naked.upstream.queue_full > naked.summary.requests / 2
    assert naked.summary.rejected == 0
    assert naked.amplification == 1.0


def test_protected_arm_sheds_locally(overload_run: lab.ScenarioResult) -> None:
    """The protected client rejects most of the excess before sending it."""
    protected = overload_run.protected
    assert protected.summary.rejected > protected.summary.requests / 2
    assert protected.upstream.requests < overload_run.naked.upstream.requests / 2
    assert protected.upstream.queue_full < overload_run.naked.upstream.queue_full


def test_protected_goodput_beats_naked(overload_run: lab.ScenarioResult) -> None:
    """The goodput hypothesis holds, and the report renders it."""
    checks = {c.hypothesis: c for c in overload_run.checks}
    assert checks["protected goodput (<= 250 ms) >= naked goodput"].held
    assert "overload" in lab.render(
        lab.LabReport(1, 100.0, 100, "sequential", (overload_run,), 0.0)
    )
