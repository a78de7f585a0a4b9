"""The replicas scenario: three real replicas, one slow then dead then back;
round robin vs the Balancer."""

from __future__ import annotations

import asyncio
import random

import httpx

from buttress import lab
from buttress.lab._driver import PhaseSpan
from buttress.lab._hosting import HostContext
from buttress.lab._scenarios_balance import (
    REPLICAS_SCENARIO,
    Replica,
    ReplicaSet,
    victim_share_below_naked,
    victim_used_again,
)
from buttress.lab._upstream import Faults

from . import steady


def test_replicas_is_registered() -> None:
    """`buttress lab --list` knows it; it hosts its own replicas and runs fast in --quick."""
    assert lab.get_scenario("replicas") is REPLICAS_SCENARIO
    assert REPLICAS_SCENARIO.host is not None
    assert [p.name for p in REPLICAS_SCENARIO.phases] == ["steady", "slow", "dead", "recovered"]
    assert REPLICAS_SCENARIO.quick <= 5.0


async def test_a_replica_can_be_killed_and_revived_on_its_port() -> None:
    """kill() refuses connections; start() listens again on the same port."""
    replica = Replica(delay=0.0)
    await replica.start()
    port = replica.port
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{replica.address}/")).text == "ok"
        await replica.kill()
        try:
            await client.get(f"http://{replica.address}/")
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("a killed replica answered")
        await replica.start()
        assert replica.port == port
        assert (await client.get(f"http://{replica.address}/")).status_code == 200
    await replica.kill()
    assert replica.hits == 2


async def test_the_script_follows_the_phases() -> None:
    """The victim turns slow, dies and recovers at the phase boundaries (short phases)."""
    spans = (
        PhaseSpan("steady", 0.0, 0.05, Faults()),
        PhaseSpan("slow", 0.05, 0.1, Faults()),
        PhaseSpan("dead", 0.1, 0.15, Faults()),
        PhaseSpan("recovered", 0.15, 0.2, Faults()),
    )
    service = ReplicaSet(
        HostContext("protected", random.Random(1), 0.2, spans=spans), balanced=True
    )
    async with service.running() as running:
        await asyncio.sleep(0.07)
        assert running.victim.delay > 0.1
        await asyncio.sleep(0.05)
        assert running.victim._server is None
        await asyncio.sleep(0.05)
        assert running.victim._server is not None
        assert (await running.serve(lambda: asyncio.sleep(0))).status_code == 200
    notes = service.notes()
    assert notes["recovered errors"] == 0
    assert "slow p99 ms" in notes


def test_hypotheses_read_the_notes() -> None:
    """The scenario's own hypotheses judge the per-phase notes."""
    naked = _arm({"slow requests": 300, "slow victim hits": 100, "recovered victim hits": 9})
    good = _arm({"slow requests": 300, "slow victim hits": 5, "recovered victim hits": 5})
    bad = _arm({"slow requests": 300, "slow victim hits": 60, "recovered victim hits": 0})
    assert victim_share_below_naked("slow", 0.3).check(naked, good).held
    assert not victim_share_below_naked("slow", 0.3).check(naked, bad).held
    assert victim_used_again().check(naked, good).held
    assert not victim_used_again().check(naked, bad).held


def test_the_scenario_holds_under_quick() -> None:
    """A --quick run of the scenario: every hypothesis holds."""
    report = steady.run_lab([REPLICAS_SCENARIO], lab.LabConfig(quick=True, seed=3))
    result = report.scenarios[0]
    assert result.held, [c for c in result.checks if not c.held]


def _arm(notes: dict[str, float]) -> lab.ArmResult:
    span = PhaseSpan("slow", 0.0, 1.0, Faults())
    stats = lab.UpstreamStats(0, 0, 0, 0, 0, 0, 0)
    return lab.ArmResult("x", (), stats, (span,), 1.0, notes=notes)
