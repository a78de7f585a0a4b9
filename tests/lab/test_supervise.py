"""The supervise scenario: a worker pool crashing at random, naked TaskGroup vs supervisor."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

import buttress as bt
from buttress import lab
from buttress.lab._hosting import HostContext
from buttress.lab._scenarios_supervise import (
    SUPERVISE,
    ServiceDown,
    WorkerCrashed,
    WorkerPool,
    availability_at_least,
    restarted_every_crash,
)

from . import steady


def test_supervise_is_registered() -> None:
    """`buttress lab --list` knows it; it needs no Redis and hosts a service."""
    assert lab.get_scenario("supervise") is SUPERVISE
    assert SUPERVISE.host is not None and SUPERVISE.needs == ()


def test_a_host_needs_a_single_process() -> None:
    """A hosted service lives in the lab's process: processes > 1 is refused."""
    with pytest.raises(bt.ConfigError, match="host must be None, or a callable"):
        lab.Scenario(
            name="x",
            description="x",
            phases=SUPERVISE.phases,
            protect=SUPERVISE.protect,
            host=SUPERVISE.host,
            processes=2,
        )


async def test_a_worker_crashes_on_the_job_in_hand() -> None:
    """Past its lifetime a worker fails the request it took and raises WorkerCrashed."""
    pool = WorkerPool(HostContext("naked", random.Random(1), 1.0), lifetime=1e-9)

    async def answer() -> str:
        return "ok"

    worker = asyncio.ensure_future(pool.worker())
    with pytest.raises(WorkerCrashed):
        await pool.serve(answer)
    with pytest.raises(WorkerCrashed):
        await worker
    assert pool.crashes == 1


async def test_a_closed_pool_refuses_and_fails_queued_jobs() -> None:
    """close(): queued requests fail with ServiceDown, new ones are refused at once."""
    pool = WorkerPool(HostContext("naked", random.Random(1), 1.0))

    async def answer() -> str:
        return "ok"

    waiting = asyncio.ensure_future(pool.serve(answer))
    await asyncio.sleep(0)
    pool.close()
    with pytest.raises(ServiceDown):
        await waiting
    with pytest.raises(ServiceDown):
        await pool.serve(answer)


async def test_workers_serve_jobs_until_they_crash() -> None:
    """A long-lived worker answers every request through the queue."""
    pool = WorkerPool(HostContext("protected", random.Random(1), 1.0), lifetime=1e9)

    async def answer() -> str:
        return "ok"

    worker = asyncio.ensure_future(pool.worker())
    assert [await pool.serve(answer) for _ in range(5)] == ["ok"] * 5
    worker.cancel()
    await asyncio.wait([worker])


def arm(name: str, notes: dict[str, float]) -> lab.ArmResult:
    stats = lab.UpstreamStats(0, 0, 0, 0, 0, 0, 0)
    return lab.ArmResult(name, (), stats, (), 1.0, notes=notes)


def test_restarted_every_crash_reads_the_notes() -> None:
    """Held only with crashes, as many restarts, and no give-up."""
    check = restarted_every_crash()
    naked = arm("naked", {"crashes": 1})
    assert check.check(naked, arm("protected", {"crashes": 3, "restarts": 3})).held
    assert not check.check(naked, arm("protected", {"crashes": 3, "restarts": 2})).held
    assert not check.check(
        naked, arm("protected", {"crashes": 3, "restarts": 3, "gave_up": 1})
    ).held
    assert not check.check(naked, arm("protected", {})).held
    with pytest.raises(bt.ConfigError, match="share must be"):
        availability_at_least(1.5)


@pytest.mark.parametrize("seed", [3, 21])
def test_the_supervised_pool_keeps_serving(seed: int) -> None:
    """At one second per arm: the naked pool dies at its first crash, the supervised one
    restarts every crashed worker and serves most requests; the report shows the notes."""
    report = steady.run_lab([SUPERVISE], lab.LabConfig(duration=1.0, seed=seed))
    result = report.scenarios[0]
    assert result.held, [c for c in result.checks if not c.held]
    assert result.naked.notes["crashes"] >= 1 and result.naked.notes["restarts"] == 0
    assert result.protected.notes["restarts"] == result.protected.notes["crashes"] > 0
    text = lab.render(report)
    assert "notes" in text and "protected  crashes" in text
    data = json.loads(json.dumps(report.to_dict(samples=False)))
    assert data["scenarios"][0]["arms"]["protected"]["notes"]["gave_up"] == 0
