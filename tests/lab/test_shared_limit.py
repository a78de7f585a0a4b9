"""The shared-limit scenario: worker processes share one rate limit in a real Redis."""

from __future__ import annotations

import pytest

import buttress as bt
from buttress import lab
from buttress.cli import main

from ..servers import RedisServer


@pytest.mark.slow
async def test_processes_share_one_limit(redis_server: RedisServer) -> None:
    """Three processes behind one 40/s limit: the upstream sees 40/s in total, not 120/s."""
    scenario = lab.get_scenario("shared-limit").scaled(2.0)
    config = lab.LabConfig(rate=100, seed=7, redis_url=redis_server.url)
    result = await lab.run_scenario(scenario, config)
    protected, naked = result.protected, result.naked
    assert naked.upstream.requests == naked.summary.requests  # every naked request arrived
    # GCRA admits at most burst + rate x T over any T seconds. T is the real time the
    # load took to arrive, which a busy machine stretches beyond the 2 s schedule; the
    # upstream sees admissions a few ms late, unevenly, hence 5 % slack. (The exact
    # bound is tested in tests/test_redis_multiprocess.py and by hypothesis.)
    assert protected.upstream.requests <= 40 * max(2.0, protected.upstream.span) * 1.05 + 5
    assert protected.summary.success >= 0.9 * 40 * 2.0
    assert protected.summary.rejected == protected.summary.requests - protected.summary.success
    assert result.held, [c for c in result.checks if not c.held]


async def test_needs_redis_to_run() -> None:
    """Without a Redis URL the scenario refuses to run, naming what it needs."""
    with pytest.raises(bt.ConfigError, match="needs a Redis"):
        await lab.run_scenario(lab.get_scenario("shared-limit"), lab.LabConfig(duration=0.5))


def test_cli_skips_it_without_redis_and_refuses_it_by_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Listed with its need; asked for by name without --redis: exit 2 and the reason."""
    assert main(["lab", "--list"]) == 0
    assert "shared-limit" in capsys.readouterr().out
    assert main(["lab", "--scenario", "shared-limit", "--quick"]) == 2
    assert "needs --redis URL" in capsys.readouterr().err


def test_cli_rejects_a_bad_redis_url(capsys: pytest.CaptureFixture[str]) -> None:
    """--redis must be a Redis URL."""
    assert main(["lab", "--redis", "localhost:6379", "--scenario", "flaky"]) == 2
    assert "expected a redis://" in capsys.readouterr().err


def test_bad_scenario_options() -> None:
    """processes and needs are validated."""
    with pytest.raises(bt.ConfigError, match="processes must be an int in"):
        lab.Scenario("x", "d", (lab.Phase("p", 1.0),), lambda ctx: bt.pipeline(), processes=0)
    with pytest.raises(bt.ConfigError, match="needs must be a tuple of 'redis'"):
        lab.Scenario("x", "d", (lab.Phase("p", 1.0),), lambda ctx: bt.pipeline(), needs=("x",))
