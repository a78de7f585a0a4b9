"""Proof: kill -9 a consumer process mid-batch, restart it: every message is processed,
none is lost; duplicates (effect done, ack lost) are counted, and allowed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ..servers import NatsServer, RedisServer
from ._helpers import topic

ROOT = Path(__file__).resolve().parents[2]
N = 400


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line]


def _spawn(kind: str, url: str, name: str, out: Path, consumer: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.messaging._worker", kind, url, name, str(out), consumer],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _wait_lines(path: Path, count: int, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    while len(set(_lines(path))) < count:
        if time.monotonic() > end:
            raise AssertionError(f"only {len(set(_lines(path)))} of {count} processed")
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_kill_9_mid_batch_loses_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    name = topic()
    if kind == "redis":
        import redis.asyncio as redis

        from buttress.messaging import RedisStreamsTransport

        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
        transport = RedisStreamsTransport(redis.Redis.from_url(url))
    else:
        from buttress.messaging.nats import NatsTransport

        nserver: NatsServer = request.getfixturevalue("nats_server")
        url = nserver.url
        transport = await NatsTransport.connect(url)
    try:
        for i in range(N):
            await transport.publish(name, b"x", msg_id=f"m{i}")
    finally:
        await transport.close()
    out = tmp_path / "handled.txt"
    first = _spawn(kind, url, name, out, "w1")
    try:
        await _wait_lines(out, N // 4)
        first.send_signal(signal.SIGKILL)  # mid-batch: up to 16 fetched, 8 in flight
        first.wait(5)
        done_before = len(set(_lines(out)))
        assert done_before < N, "the worker finished before it was killed"
        second = _spawn(kind, url, name, out, "w1")
        try:
            await _wait_lines(out, N)
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    counts = Counter(_lines(out))
    assert set(counts) == {f"m{i}" for i in range(N)}  # none lost
    duplicates = sum(counts.values()) - N
    print(f"{kind}: {N} messages, killed after {done_before}, duplicates {duplicates}")
    assert duplicates <= 16  # at most one prefetch batch was in doubt
