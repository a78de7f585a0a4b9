"""Experiments: validation, verdicts, rollbacks on every path, the journal, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buttress.chaos.experiment import (
    ExperimentInvalidError,
    Runner,
    load_experiment,
    parse_experiment,
    run_experiment,
)
from buttress.testing import FakeClock

from . import probes

ENV = "BUTTRESS_TEST_BROKEN"
HEALTHY = {"name": "healthy", "type": "python", "function": "tests.chaos.probes:healthy"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    probes.calls.clear()


def _exp(method: list, **extra) -> dict:
    return {"title": "t", "hypothesis": {"probes": [HEALTHY]}, "method": method, **extra}


def test_validation_names_every_problem_by_path() -> None:
    """All problems at once, each with its path and what is allowed."""
    with pytest.raises(ExperimentInvalidError) as info:
        parse_experiment(
            {
                "title": "",
                "hypothesis": {"probes": [{"name": "p", "type": "http", "url": "ftp://x"}]},
                "method": [
                    {"type": "toxic", "proxy": "redis", "toxic": {"type": "latncy"}},
                    {"type": "sleep"},
                    {"type": "kill", "pid": 1},
                    {"type": "teleport"},
                ],
                "extra": 1,
            }
        )
    problems = "\n".join(info.value.problems)
    assert "extra: unknown field" in problems
    assert "title: must be a non-empty string" in problems
    assert "hypothesis.probes[0].url: must be an http:// URL" in problems
    assert "method[0].toxic: type must be a toxic type" in problems
    assert "method[1].seconds: is required" in problems
    assert "method[2].pid: must be an int >= 2" in problems
    assert "method[3].type: must be one of toxic, proxy" in problems


def test_yaml_errors_and_files(tmp_path: Path) -> None:
    """Unreadable or undecodable files are reported as problems too."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [unclosed\n")
    with pytest.raises(ExperimentInvalidError, match="not valid YAML"):
        load_experiment(bad)
    with pytest.raises(ExperimentInvalidError, match="cannot read it"):
        load_experiment(tmp_path / "missing.json")
    good = tmp_path / "good.yaml"
    good.write_text("title: ok\nmethod:\n  - {type: sleep, seconds: 0}\n")
    assert load_experiment(good).method[0].type == "sleep"


async def test_completed_run_restores_what_it_changed(clock: FakeClock, tmp_path: Path) -> None:
    """A completed run: steady state before and after, env restored, journal written."""
    flag = tmp_path / "flag"
    experiment = parse_experiment(
        _exp(
            [
                {"type": "chaos", "env": "BUTTRESS_TEST_OTHER", "value": "1"},
                {"type": "chaos", "file": str(flag)},
                {"type": "sleep", "seconds": 5},
            ]
        )
    )
    journal_path = tmp_path / "journal.json"
    journal = await run_experiment(experiment, journal_path=journal_path, clock=clock)
    assert (journal["status"], journal["deviated"]) == ("completed", False)
    assert [r["status"] for r in journal["run"]] == ["succeeded"] * 3
    assert journal["duration"] == pytest.approx(5.0)
    assert "BUTTRESS_TEST_OTHER" not in os.environ and not flag.exists()
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded", "succeeded"]
    assert json.loads(journal_path.read_text())["status"] == "completed"


async def test_failed_action_still_rolls_back(clock: FakeClock) -> None:
    """An action that fails stops the method; what started is undone."""
    experiment = parse_experiment(
        _exp(
            [
                {"type": "chaos", "env": ENV},
                {"type": "python", "function": "tests.chaos.probes:boom"},
                {"type": "sleep", "seconds": 1},
            ],
            rollbacks=[{"type": "python", "function": "tests.chaos.probes:record",
                        "arguments": {"label": "declared"}}],
        )
    )  # fmt: skip
    journal = await run_experiment(experiment, clock=clock)
    assert journal["status"] == "failed" and "the action broke" in journal["reason"]
    assert [r["status"] for r in journal["run"]] == ["succeeded", "failed"]
    assert ENV not in os.environ
    assert probes.calls == ["declared"]


async def test_continuous_check_aborts_after_the_threshold(clock: FakeClock) -> None:
    """The hypothesis is checked during the method; N failures in a row abort it."""
    experiment = parse_experiment(
        {
            "title": "abort",
            "hypothesis": {"probes": [HEALTHY], "during": {"interval": 1.0, "abort_after": 2}},
            "method": [{"type": "chaos", "env": ENV}, {"type": "sleep", "seconds": 60}],
        }
    )
    journal = await run_experiment(experiment, clock=clock)
    assert journal["status"] == "aborted" and journal["deviated"] is True
    assert [c["met"] for c in journal["steady_state"]["during"]] == [False, False]
    assert clock.monotonic() == pytest.approx(2.0)
    assert journal["run"][-1]["status"] == "interrupted"
    assert ENV not in os.environ


async def test_deviation_without_abort_completes(clock: FakeClock) -> None:
    """Failed checks below the threshold: completed, but deviated."""
    experiment = parse_experiment(
        {
            "title": "no abort",
            "hypothesis": {"probes": [HEALTHY], "during": {"interval": 1.0}},
            "method": [
                {"type": "chaos", "env": ENV, "rollback": False},
                {"type": "sleep", "seconds": 2.5},
            ],
        }
    )
    journal = await run_experiment(experiment, clock=clock)
    assert (journal["status"], journal["deviated"]) == ("completed", True)
    assert journal["steady_state"]["after"]["met"] is False  # rollback: false kept it broken
    os.environ.pop(ENV)


async def test_steady_state_not_met_before_aborts_without_running(clock: FakeClock) -> None:
    """A system not in its steady state is not experimented on."""
    os.environ[ENV] = "1"
    experiment = parse_experiment(_exp([{"type": "python", "function": "tests.chaos.probes:boom"}]))
    journal = await run_experiment(experiment, clock=clock)
    assert journal["status"] == "aborted" and journal["run"] == []


async def test_cancellation_rolls_back_then_propagates(clock: FakeClock, tmp_path: Path) -> None:
    """Cancelling the run (as Ctrl-C does): rollbacks run, the journal says interrupted."""
    experiment = parse_experiment(_exp([{"type": "chaos", "env": "BUTTRESS_TEST_X"},
                                        {"type": "sleep", "seconds": 100}]))  # fmt: skip
    clock_real = FakeClock(autojump=False)
    task = asyncio.ensure_future(
        run_experiment(experiment, journal_path=tmp_path / "j.json", clock=clock_real)
    )
    for _ in range(50):
        await asyncio.sleep(0)
    assert os.environ.get("BUTTRESS_TEST_X") == "1"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    journal = json.loads((tmp_path / "j.json").read_text())
    assert journal["status"] == "interrupted"
    assert "BUTTRESS_TEST_X" not in os.environ


async def test_interrupt_marks_the_run_interrupted() -> None:
    """Runner.interrupt (what SIGINT/SIGTERM call) stops the method and returns."""
    clock = FakeClock(autojump=False)
    experiment = parse_experiment(_exp([{"type": "chaos", "env": "BUTTRESS_TEST_Y"},
                                        {"type": "sleep", "seconds": 100}]))  # fmt: skip
    runner = Runner(experiment, clock=clock)
    task = asyncio.ensure_future(runner.run())
    for _ in range(50):
        await asyncio.sleep(0)
    runner.interrupt("received SIGINT")
    journal = await task
    assert (journal["status"], journal["reason"]) == ("interrupted", "received SIGINT")
    assert "BUTTRESS_TEST_Y" not in os.environ


async def test_toxic_action_over_the_http_api(fault_proxy_server, redis_server) -> None:
    """A toxic added through the API is removed afterwards; probes see the proxy."""
    proxy = fault_proxy_server.create("redis", f"127.0.0.1:{redis_server.port}")
    experiment = parse_experiment(
        {
            "title": "toxic",
            "proxy": fault_proxy_server.api_url,
            "hypothesis": {"probes": [{"name": "port", "type": "tcp",
                                       "address": f"127.0.0.1:{proxy.port}"}]},
            "method": [
                {"type": "toxic", "proxy": "redis",
                 "toxic": {"type": "latency", "attributes": {"latency": 20}}},
                {"type": "proxy", "proxy": "redis", "enabled": False},
            ],
        }
    )  # fmt: skip
    journal = await run_experiment(experiment)
    assert journal["status"] == "completed" and journal["deviated"] is True  # port closed after
    assert journal["run"][0]["output"]["attributes"] == {"latency": 20, "jitter": 0}
    assert proxy.toxics() == [] and proxy.enabled


async def test_local_proxy_server_and_explicit_rollback(redis_server) -> None:
    """Without an API URL the in-process server is used; `rollback:` replaces the undo."""
    async with __import__("buttress.chaos", fromlist=["ProxyServer"]).ProxyServer() as server:
        proxy = server.create("redis", f"127.0.0.1:{redis_server.port}")
        experiment = parse_experiment(
            {"title": "local", "method": [
                {"type": "toxic", "proxy": "redis", "toxic": {"type": "timeout"},
                 "rollback": {"type": "python", "function": "tests.chaos.probes:record",
                              "arguments": {"label": "custom"}}}]}
        )  # fmt: skip
        journal = await run_experiment(experiment, proxy_server=server)
        assert journal["status"] == "completed"
        assert probes.calls == ["custom"]
        assert [t.name for t in proxy.toxics()] == ["timeout_downstream"]


async def test_processes_are_killed_only_if_ours(tmp_path: Path) -> None:
    """Patterns match only processes the experiment started; all are stopped at the end."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    experiment = parse_experiment(
        {"title": "procs", "method": [
            {"type": "process", "name": "sleeper", "command": sleeper, "detach": True},
            {"type": "process", "name": "other", "command": sleeper, "detach": True},
            {"type": "kill", "pattern": "time.sleep", "signal": "KILL"},
            {"type": "process", "command": [sys.executable, "-c", "raise SystemExit(3)"],
             "exit_code": 3},
        ]}
    )  # fmt: skip
    journal = await run_experiment(experiment)
    assert journal["status"] == "completed", journal
    killed = journal["run"][2]["output"]["killed"]
    assert len(killed) == 2
    none = parse_experiment({"title": "x", "method": [{"type": "kill", "pattern": "sleep"}]})
    journal = await run_experiment(none)
    assert journal["status"] == "failed" and "only ever match" in journal["run"][0]["error"]


async def test_detached_process_is_stopped_by_the_rollback() -> None:
    """A process the experiment started does not outlive it."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    experiment = parse_experiment(
        {"title": "p", "method": [{"type": "process", "name": "s", "detach": True,
                                   "command": sleeper}]}
    )  # fmt: skip
    journal = await run_experiment(experiment)
    pid = journal["run"][0]["output"]["pid"]
    assert journal["rollbacks"][0]["output"] == "terminated"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: gone for good


async def test_load_and_http_probe(http_upstream) -> None:
    """The load action drives requests at a rate; the HTTP probe checks status and latency."""
    url = f"http://{http_upstream}/len"
    experiment = parse_experiment(
        {"title": "load", "hypothesis": {"probes": [
            {"name": "web", "type": "http", "url": url,
             "tolerance": {"status": 200, "max_latency": 2}},
            {"name": "closed", "type": "tcp", "address": "127.0.0.1:1", "tolerance": False}]},
         "method": [{"type": "load", "url": url, "rate": 40, "duration": 0.25}]}
    )  # fmt: skip
    journal = await run_experiment(experiment)
    assert journal["status"] == "completed" and not journal["deviated"]
    output = journal["run"][0]["output"]
    assert output["requests"] == 10 and output["ok"] == 10


def test_cli_validate(tmp_path: Path) -> None:
    """validate: exit 0 for a good file, 2 with the problems for a bad one."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"title": "g", "method": [{"type": "sleep", "seconds": 0}]}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"title": "b", "method": [{"type": "sleep", "seconds": -1}]}))
    cli = [sys.executable, "-m", "buttress.cli", "experiment", "validate"]
    ok = subprocess.run([*cli, str(good)], capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0 and "valid" in ok.stdout
    no = subprocess.run([*cli, str(bad)], capture_output=True, text=True, timeout=20)
    assert no.returncode == 2 and "method[0].seconds: must be a number of seconds" in no.stderr


def test_cli_sigint_rolls_back_and_exits_130(
    tmp_path: Path, fault_proxy_server, redis_server
) -> None:
    """SIGINT during the method: exit 130, journal interrupted, the toxic is gone."""
    proxy = fault_proxy_server.create("redis", f"127.0.0.1:{redis_server.port}")
    path = tmp_path / "exp.json"
    journal_path = tmp_path / "journal.json"
    path.write_text(json.dumps({
        "title": "interrupt me",
        "proxy": fault_proxy_server.api_url,
        "method": [
            {"type": "toxic", "proxy": "redis", "toxic": {"type": "timeout"}},
            {"type": "sleep", "seconds": 30},
        ],
    }))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "buttress.cli", "experiment", "run", str(path),
         "--journal", str(journal_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not proxy.toxics():
            time.sleep(0.02)
        assert proxy.toxics(), process.communicate(timeout=1)
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted" and journal["reason"] == "received SIGINT"
    assert proxy.toxics() == []
    assert "interrupted" in out


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["redis-latency.yaml", "http-errors.json"])
def test_examples_are_valid(name: str) -> None:
    """The shipped examples pass validation."""
    assert load_experiment(EXAMPLES / name).method


async def test_redis_example_runs_and_rolls_back(
    fault_proxy_server, redis_server, tmp_path
) -> None:
    """The Redis example, pointed at a private redis-server and proxy, shortened."""
    import yaml

    raw = yaml.safe_load((EXAMPLES / "redis-latency.yaml").read_text())
    proxy = fault_proxy_server.create("redis", f"127.0.0.1:{redis_server.port}")
    text = json.dumps(raw).replace("26379", str(proxy.port))
    text = text.replace("/tmp/buttress-chaos-on", str(tmp_path / "flag"))
    raw = json.loads(text)
    raw["proxy"] = fault_proxy_server.api_url
    raw["method"][2]["seconds"] = 0.6
    raw["hypothesis"]["during"]["abort_after"] = 1
    journal = await run_experiment(parse_experiment(raw))
    assert journal["status"] == "aborted", journal["reason"]
    assert journal["steady_state"]["before"]["met"] is True
    assert any(not check["met"] for check in journal["steady_state"]["during"])
    assert proxy.toxics() == [] and proxy.enabled
    assert not (tmp_path / "flag").exists()
