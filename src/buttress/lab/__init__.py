"""The buttress lab: a real service, real faults, and what held.

``buttress lab`` starts a real HTTP upstream on a loopback port (uvicorn, in a thread),
injects faults into it phase by phase, drives the same open-loop load through a plain
``httpx`` client (the *naked* arm) and through a buttress pipeline (the *protected* arm),
and reports both side by side. See ``docs/lab.md``.

This package needs the ``lab`` extra (``pip install 'buttress[lab]'``: httpx, uvicorn);
``import buttress`` never imports it.

Example::

    from buttress import lab

    report = lab.run_lab([lab.get_scenario("flaky")], lab.LabConfig(duration=3.0, seed=1))
    print(lab.render(report))

A scenario is a small declarative definition (see ``_scenarios.py`` for the built-ins)::

    lab.register(lab.Scenario(
        name="slow-errors",
        description="10 % errors, every answer takes 20 ms",
        phases=(lab.Phase("steady", 10.0, lab.Faults(error_rate=0.1, latency=0.02)),),
        protect=lambda ctx: bt.pipeline(bt.Retry(attempts=2, on=lab.RETRYABLE), bt.Timeout(0.1)),
        hypotheses=(lab.success_beats_naked(by=0.05),),
    ))
"""

from ._driver import (
    LAG_WARNING,
    ArmProgress,
    Degraded,
    Outcome,
    PhaseSpan,
    Sample,
    UpstreamError,
    arrivals,
    classify,
    degraded,
    fetch,
)
from ._html import chart_specs, render_html, write_html
from ._hypotheses import (
    Check,
    Hypothesis,
    amplification_at_most,
    answered_at_least,
    p99_below_naked,
    phase_success_at_least,
    recovers_within,
    rejects_fast,
    success_beats_naked,
)
from ._model import BuildContext, Phase, Scenario, get_scenario, register, scenarios
from ._progress import Progress
from ._report import render, render_list, write_json
from ._results import ArmResult, LabReport, ScenarioResult, Summary, percentile
from ._runner import LabConfig, run_lab, run_lab_async, run_scenario
from ._scenarios import FLAKY, LATENCY_TAIL, OUTAGE, RETRYABLE
from ._scenarios_balance import REPLICAS_SCENARIO  # noqa: F401 - registers "replicas"
from ._scenarios_messaging import CONSUMER_CRASH  # noqa: F401 - registers "consumer-crash"
from ._scenarios_overload import OVERLOAD  # noqa: F401 - registers "overload"
from ._scenarios_redis import REDIS_OUTAGE  # noqa: F401 - registers "redis-outage"
from ._scenarios_shared import SHARED_LIMIT  # noqa: F401 - registers "shared-limit"
from ._scenarios_supervise import SUPERVISE  # noqa: F401 - registers "supervise"
from ._timeline import Timeline, build_timeline
from ._upstream import Decision, Faults, FaultState, Upstream, UpstreamStats

__all__ = [
    "FLAKY",
    "LAG_WARNING",
    "LATENCY_TAIL",
    "OUTAGE",
    "RETRYABLE",
    "ArmProgress",
    "ArmResult",
    "BuildContext",
    "Check",
    "Decision",
    "Degraded",
    "FaultState",
    "Faults",
    "Hypothesis",
    "LabConfig",
    "LabReport",
    "Outcome",
    "Phase",
    "PhaseSpan",
    "Progress",
    "Sample",
    "Scenario",
    "ScenarioResult",
    "Summary",
    "Timeline",
    "Upstream",
    "UpstreamError",
    "UpstreamStats",
    "amplification_at_most",
    "answered_at_least",
    "arrivals",
    "build_timeline",
    "chart_specs",
    "classify",
    "degraded",
    "fetch",
    "get_scenario",
    "p99_below_naked",
    "percentile",
    "phase_success_at_least",
    "recovers_within",
    "register",
    "rejects_fast",
    "render",
    "render_html",
    "render_list",
    "run_lab",
    "run_lab_async",
    "run_scenario",
    "scenarios",
    "success_beats_naked",
    "write_html",
    "write_json",
]
