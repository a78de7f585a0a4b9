"""The replicas scenario: three upstream replicas; one turns slow, then dies, then recovers.

The service each arm hosts is a client of :data:`REPLICAS` real HTTP replicas on
loopback ports (small asyncio servers in the lab's process, :class:`Replica`), each
answering in :data:`SERVICE_TIME`. One of them, the *victim*, follows the phases:

* ``steady`` — all healthy;
* ``slow`` — the victim answers after :data:`SLOW` seconds;
* ``dead`` — the victim is killed: its socket closes, open connections are cut, new ones
  are refused;
* ``recovered`` — it listens again on the same port, healthy.

* The **naked** arm is the usual client-side balancing: plain round robin over the
  replicas with a plain ``httpx`` client (no retries): a third of the traffic waits on
  the slow replica, then fails on the dead one.
* The **protected** arm sends through :class:`~buttress.integrations.httpx.BalancedTransport`
  over a :class:`~buttress.Balancer` (power of two choices over peak-EWMA latency,
  outlier ejection after 3 consecutive failures, TCP health checks every 0.2 s, refused
  connections re-sent to another replica within a retry budget).

The lab's own upstream (and each arm's pipeline) is not used: the requests go to the
replicas, so the report's amplification column reads 0. The notes give, per arm and per
phase, the p50/p99 latency in milliseconds and the errors, and the requests the victim
received in each phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

import buttress as bt

from ..balance import Balancer, HealthCheck, OutlierDetection, TcpCheck
from ..integrations.httpx import BalancedTransport
from ._driver import UpstreamError
from ._hosting import HostContext, Service
from ._hypotheses import Hypothesis, phase_success_at_least, success_beats_naked
from ._model import BuildContext, Phase, Scenario, register
from ._results import ArmResult, percentile
from ._upstream import Faults

__all__ = [
    "PHASES",
    "REPLICAS",
    "REPLICAS_SCENARIO",
    "SERVICE_TIME",
    "SLOW",
    "Replica",
    "ReplicaSet",
    "victim_share_below_naked",
    "victim_used_again",
]

REPLICAS = 3
"""Replicas behind each arm."""
SERVICE_TIME = 0.002
"""Seconds a healthy replica takes to answer."""
SLOW = 0.3
"""Seconds the victim takes to answer in the ``slow`` phase."""
PHASES = ("steady", "slow", "dead", "recovered")
"""The phases, in order; the victim's state follows their names."""


class Replica:
    """A tiny HTTP/1.1 server on a loopback port of the running loop.

    ``GET`` of any path is answered ``200`` after ``delay`` seconds. :meth:`kill` closes
    the listening socket and aborts open connections; :meth:`start` (again) listens on
    the same port.
    """

    def __init__(self, delay: float = SERVICE_TIME) -> None:
        self.delay = delay
        self.port = 0
        self.hits = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on the same port as before, if it ran before)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def kill(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        self._transports.add(transport)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                self.hits += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._transports.discard(transport)
            transport.close()


class ReplicaSet:
    """One arm's service: the replicas, the victim's script, and the arm's client.

    ``serve`` ignores the lab's ``call`` and GETs ``/`` from the replicas: round robin
    with a plain client (``balanced=False``) or through a balancer.
    """

    def __init__(self, context: HostContext, *, balanced: bool) -> None:
        self.context = context
        self.balanced = balanced
        self.replicas = [Replica() for _ in range(REPLICAS)]
        self.victim = self.replicas[0]
        self.balancer: Balancer | None = None
        self.client: httpx.AsyncClient | None = None
        self._next = 0
        self._t0 = 0.0
        self._phase = 0
        self._victim_hits_at: list[int] = []
        # per phase: (latencies, errors)
        self._latency: list[list[float]] = [[] for _ in context.spans]
        self._errors = [0] * len(context.spans)

    async def serve(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """GET ``/`` from a replica; raise :class:`UpstreamError` on 5xx."""
        client = self.client
        assert client is not None
        phase = self._phase
        started = time.monotonic()
        try:
            if self.balanced:
                response = await client.get("/")
            else:
                replica = self.replicas[self._next % REPLICAS]
                self._next += 1
                response = await client.get(f"http://{replica.address}/")
            if response.status_code >= 500:
                raise UpstreamError(response.status_code)
        except Exception:
            self._errors[phase] += 1
            raise
        finally:
            self._latency[phase].append(time.monotonic() - started)
        return response

    async def _script(self) -> None:
        """Set the victim's state at the start of each phase."""
        loop = asyncio.get_running_loop()
        for index, span in enumerate(self.context.spans):
            wait = self._t0 + span.start - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._phase = index
            self._victim_hits_at.append(self.victim.hits)
            if span.name == "slow":
                self.victim.delay = SLOW
            elif span.name == "dead":
                self.victim.delay = SERVICE_TIME
                await self.victim.kill()
            elif span.name == "recovered":
                await self.victim.start()

    def notes(self) -> Mapping[str, float]:
        """Per phase: p50 and p99 in ms, requests, errors, and the requests the victim got."""
        out: dict[str, float] = {}
        marks = [*self._victim_hits_at, self.victim.hits]
        for index, span in enumerate(self.context.spans):
            values = self._latency[index]
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            out[f"{span.name} p50 ms"] = round((p50 or 0.0) * 1000, 1)
            out[f"{span.name} p99 ms"] = round((p99 or 0.0) * 1000, 1)
            out[f"{span.name} requests"] = len(values)
            out[f"{span.name} errors"] = self._errors[index]
            if index + 1 < len(marks):
                out[f"{span.name} victim hits"] = marks[index + 1] - marks[index]
        return out

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ReplicaSet]:
        """Start the replicas, the client (and balancer), and the victim's script."""
        for replica in self.replicas:
            await replica.start()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        async with contextlib.AsyncExitStack() as stack:
            if self.balanced:
                balancer = Balancer(
                    [r.address for r in self.replicas],
                    outlier=OutlierDetection(
                        consecutive_failures=3,
                        base_ejection_time=1.0,
                        max_ejection_time=2.0,
                        max_ejection_percent=34,
                        interval=1.0,
                    ),
                    health_check=HealthCheck(
                        TcpCheck(),
                        interval=0.2,
                        timeout=1.0,
                        healthy_threshold=1,
                        unhealthy_threshold=2,
                    ),
                    failure_penalty=0.5,
                    decay=2.0,
                    random=self.context.random,
                    name="lab-replicas",
                )
                self.balancer = await stack.enter_async_context(balancer)
                transport = BalancedTransport(
                    balancer,
                    transport=httpx.AsyncHTTPTransport(limits=limits),
                    budget=bt.RetryBudget(ratio=0.2, min_per_second=20.0),
                )
                self.client = await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://replicas", timeout=10.0)
                )
            else:
                self.client = await stack.enter_async_context(
                    httpx.AsyncClient(limits=limits, timeout=10.0, trust_env=False)
                )
            self._t0 = asyncio.get_running_loop().time()
            script = asyncio.ensure_future(self._script())
            try:
                yield self
            finally:
                script.cancel()
                await asyncio.wait([script])
                for replica in self.replicas:
                    await replica.kill()


def _host(context: HostContext) -> contextlib.AbstractAsyncContextManager[Service]:
    return ReplicaSet(context, balanced=context.arm != "naked").running()


def victim_share_below_naked(phase: str, factor: float) -> Hypothesis:
    """In ``phase``, the share of the requests that went to the victim is, in the
    protected arm, at most ``factor`` times the naked arm's (read from the notes)."""

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        ours, theirs = _victim_share(protected, phase), _victim_share(naked, phase)
        if ours is None or not theirs:
            return False, f"no requests to the victim in the naked arm's {phase} phase"
        return ours <= factor * theirs, f"{ours * 100:.1f} % vs naked {theirs * 100:.1f} %"

    return Hypothesis(f"protected sends <= {factor:g} x naked's share to the {phase} one", test)


def _victim_share(arm: ArmResult, phase: str) -> float | None:
    hits = arm.notes.get(f"{phase} victim hits")
    total = arm.notes.get(f"{phase} requests")
    if hits is None or not total:
        return None
    return hits / total


def victim_used_again(phase: str = "recovered") -> Hypothesis:
    """In ``phase`` the protected arm sends traffic to the recovered replica again."""

    def test(naked: ArmResult, protected: ArmResult) -> tuple[bool, str]:
        hits = protected.notes.get(f"{phase} victim hits", 0)
        return hits > 0, f"{hits:g} requests to the recovered replica"

    return Hypothesis(f"protected uses the victim again in {phase}", test)


def _protect(ctx: BuildContext) -> bt.Policy:
    # Unused: the hosted ReplicaSet sends the requests; the lab needs a policy.
    return bt.pipeline(name="replicas")


REPLICAS_SCENARIO = register(
    Scenario(
        name="replicas",
        description="3 replicas; one turns slow, dies, recovers: round robin vs Balancer",
        phases=(
            Phase("steady", 2.0, Faults()),
            Phase("slow", 3.0, Faults()),
            Phase("dead", 3.0, Faults()),
            Phase("recovered", 3.0, Faults()),
        ),
        protect=_protect,
        hypotheses=(
            victim_share_below_naked("slow", 0.3),
            phase_success_at_least("dead", 0.97),
            success_beats_naked(by=0.04),
            victim_used_again("recovered"),
        ),
        host=_host,
        quick=4.0,
    )
)
