"""A real HTTP upstream on a loopback port, with faults injected on demand.

The upstream is a raw ASGI app (no framework) served by uvicorn in a thread of its own,
with its own event loop, on a socket bound to ``127.0.0.1`` port 0: the port is known
before the server starts and never collides with anything. The app asks a thread-safe
:class:`FaultState` what to do with each request and counts every request it receives;
that count is the numerator of the lab's amplification.
"""

from __future__ import annotations

import asyncio
import collections
import random as _random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import uvicorn

from .._deadline import DEADLINE_HEADER, parse_timeout
from .._validate import fail, integer, number, seconds

__all__ = ["Decision", "FaultState", "Faults", "Upstream", "UpstreamStats"]

Outage = Literal["fail", "hang"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A held request with no end in sight (``hang`` with no ``until``) still gives up after
# this long, so a forgotten phase cannot pin a connection for ever.
_MAX_HOLD = 60.0
# Waits shorter than this are plain sleeps; longer ones also watch for the client leaving
# and for the server stopping (two extra tasks, only worth it for the slow minority).
_WATCH_FROM = 0.05


@dataclass(frozen=True, slots=True)
class Faults:
    """What the upstream does to requests while these faults are set.

    Each request is judged in this order: during an ``outage`` every request fails
    (``"fail"``: answered 503 at once; ``"hang"``: held without an answer until the
    outage phase ends, then answered 503). Otherwise a share ``error_rate`` is answered
    503 at once, a share ``slow_rate`` of the rest waits a uniform draw from
    ``slow_seconds`` on top of ``latency``, and the others wait ``latency`` and get 200.

    **Capacity.** By default the upstream serves any number of requests at once. With
    ``workers`` set, a request that is to be answered 200 (ok or slow) must first get one
    of ``workers`` workers and holds it for its whole service time; the others wait in a
    FIFO queue, and when ``queue`` requests are already waiting a new one is answered 503
    at once (counted in ``queue_full``), as a server with a bounded backlog does. A
    request whose propagated deadline runs out while it waits is answered 504 without
    being served. Errors and outages are answered without a worker, as before.

    Args:
        error_rate: share of requests answered 503, in [0, 1]. Default 0.
        slow_rate: share of the non-failed requests that are slow, in [0, 1]. Default 0.
        slow_seconds: ``(low, high)`` extra delay of a slow request, seconds. Default (1, 2).
        latency: service time of every answered request, seconds ``>= 0``. Default 0.
        outage: ``None`` (default), ``"fail"`` or ``"hang"``.
        workers: requests served at once, ``>= 1``, or ``None`` (default: no limit).
        queue: requests allowed to wait for a worker, ``>= 0``, or ``None`` (default:
            no bound). Needs ``workers``.

    Raises:
        ConfigError: an argument is out of range.

    Example::

        Faults(error_rate=0.25)                       # a flaky upstream
        Faults(slow_rate=0.05, slow_seconds=(1, 2))   # a latency tail
        Faults(outage="hang")                         # a black hole until the phase ends
        Faults(latency=0.06, workers=2, queue=8)      # capacity 2 / 0.06 = 33 requests/s
    """

    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: tuple[float, float] = (1.0, 2.0)
    latency: float = 0.0
    outage: Outage | None = None
    workers: int | None = None
    queue: int | None = None

    def __post_init__(self) -> None:
        number("error_rate", self.error_rate, low=0.0, high=1.0)
        number("slow_rate", self.slow_rate, low=0.0, high=1.0)
        if not isinstance(self.slow_seconds, tuple) or len(self.slow_seconds) != 2:
            raise fail("slow_seconds", "a (low, high) tuple of seconds", self.slow_seconds)
        low = seconds("slow_seconds[0]", self.slow_seconds[0])
        high = seconds("slow_seconds[1]", self.slow_seconds[1])
        if high < low:
            raise fail("slow_seconds", "(low, high) with low <= high", self.slow_seconds)
        object.__setattr__(self, "slow_seconds", (low, high))
        seconds("latency", self.latency)
        if self.outage not in (None, "fail", "hang"):
            raise fail("outage", "None, 'fail' or 'hang'", self.outage)
        if self.workers is not None:
            integer("workers", self.workers, minimum=1)
        if self.queue is not None:
            integer("queue", self.queue, minimum=0)
            if self.workers is None:
                raise fail("queue", "None unless workers is set", self.queue)

    def describe(self) -> str:
        """A short human description, e.g. ``"25 % errors"`` or ``"healthy"``."""
        if self.outage == "fail":
            return "outage: 503 at once"
        if self.outage == "hang":
            return "outage: requests hang"
        parts = []
        if self.error_rate:
            parts.append(f"{self.error_rate:.0%} errors")
        if self.slow_rate:
            low, high = self.slow_seconds
            parts.append(f"{self.slow_rate:.0%} take {low:g}-{high:g} s")
        if self.latency:
            parts.append(f"{self.latency * 1000:g} ms service time")
        if self.workers is not None:
            backlog = "" if self.queue is None else f", queue {self.queue}"
            parts.append(f"{self.workers} workers{backlog}")
        return ", ".join(parts) if parts else "healthy"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: answer ``status`` after ``delay`` seconds.

    ``hold_until`` (a ``time.monotonic()`` reading) replaces ``delay`` for a hanging
    outage; ``kind`` is ``"ok"``, ``"error"``, ``"slow"`` or ``"outage"``. ``workers``
    and ``queue`` are the capacity the request must be served within (see
    :class:`Faults`); ``None`` for requests answered without a worker.
    """

    status: int
    delay: float
    kind: str
    hold_until: float | None = None
    workers: int | None = None
    queue: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamStats:
    """Counters of an upstream since it was built.

    ``requests`` counts every request received (whatever happened to it); ``by_kind``
    splits them by fault decision; ``cut_by_deadline`` counts waits cut short because the
    caller's propagated budget (the ``x-request-timeout`` header) ran out;
    ``client_gone`` counts requests whose client hung up before the answer;
    ``queue_full`` counts requests answered 503 because every worker was busy and the
    queue was full (see :class:`Faults`; they are also in ``ok`` or ``slow``).
    ``span`` is the seconds from the first request received to the last (0 with fewer
    than two): the real time over which the load arrived, which a loaded machine can
    stretch beyond the schedule's.
    """

    requests: int
    ok: int
    errors: int
    slow: int
    outage: int
    cut_by_deadline: int
    client_gone: int
    queue_full: int = 0
    span: float = 0.0


class FaultState:
    """The faults in force, shared by the server thread and the driver; thread-safe.

    Every request draws three numbers from one seeded ``random.Random``, whatever the
    faults, so a phase change never shifts the sequence: with the same seed, the n-th
    request received gets the same draws.

    Args:
        faults: the initial faults. Default: healthy.
        seed: seeds the fault sampling. Default ``None`` (unseeded).

    Example::

        state = FaultState(Faults(error_rate=0.2), seed=7)
        state.set(Faults(outage="hang"), until=time.monotonic() + 3.0)
    """

    def __init__(self, faults: Faults | None = None, *, seed: int | str | None = None) -> None:
        self._lock = threading.Lock()
        self._faults = faults if faults is not None else Faults()
        self._until: float | None = None
        self._random = _random.Random(seed)
        self._requests = self._ok = self._errors = self._slow = self._outage = 0
        self._cut = self._gone = self._full = 0
        self._arrivals: list[float] = []

    def __repr__(self) -> str:
        return f"FaultState({self._faults!r})"

    @property
    def faults(self) -> Faults:
        """The faults in force now."""
        return self._faults

    def set(self, faults: Faults, *, until: float | None = None) -> None:
        """Put ``faults`` in force; ``until`` (``time.monotonic()``) is when they end,
        which is when a hanging outage releases its requests."""
        if not isinstance(faults, Faults):
            raise fail("faults", "a Faults", faults)
        with self._lock:
            self._faults = faults
            self._until = until

    def decide(self) -> Decision:
        """Count one request and decide its fate."""
        with self._lock:
            faults, until = self._faults, self._until
            u_error, u_slow, u_delay = (
                self._random.random(),
                self._random.random(),
                self._random.random(),
            )
            self._requests += 1
            self._arrivals.append(time.monotonic())
            if faults.outage is not None:
                self._outage += 1
            elif u_error < faults.error_rate:
                self._errors += 1
            elif u_slow < faults.slow_rate:
                self._slow += 1
            else:
                self._ok += 1
        if faults.outage == "fail":
            return Decision(503, 0.0, "outage")
        if faults.outage == "hang":
            hold = until if until is not None else time.monotonic() + _MAX_HOLD
            return Decision(503, 0.0, "outage", hold_until=hold)
        if u_error < faults.error_rate:
            return Decision(503, 0.0, "error")
        if u_slow < faults.slow_rate:
            low, high = faults.slow_seconds
            delay = faults.latency + low + u_delay * (high - low)
            return Decision(200, delay, "slow", None, faults.workers, faults.queue)
        return Decision(200, faults.latency, "ok", None, faults.workers, faults.queue)

    def arrivals(self) -> list[float]:
        """When each request arrived (``time.monotonic()``), in order: the upstream's
        load over time."""
        with self._lock:
            return list(self._arrivals)

    def _note(self, *, cut: bool = False, gone: bool = False, full: bool = False) -> None:
        with self._lock:
            self._cut += cut
            self._gone += gone
            self._full += full

    def stats(self) -> UpstreamStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return UpstreamStats(
                requests=self._requests,
                ok=self._ok,
                errors=self._errors,
                slow=self._slow,
                outage=self._outage,
                cut_by_deadline=self._cut,
                client_gone=self._gone,
                queue_full=self._full,
                span=self._arrivals[-1] - self._arrivals[0] if self._arrivals else 0.0,
            )


def _budget_of(scope: Scope) -> float | None:
    """The caller's remaining budget from the deadline header, if it sent a valid one."""
    wanted = DEADLINE_HEADER.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            try:
                return parse_timeout(value.decode("latin-1").strip())
            except ValueError:
                return None
    return None


class _App:
    """The ASGI app: judge, wait, answer. Runs on the server thread's loop only."""

    def __init__(self, state: FaultState) -> None:
        self.state = state
        self.stopping: asyncio.Event | None = None  # made on the server loop
        self.workers = _Workers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        decision = self.state.decide()
        if decision.workers is not None:
            await self._serve_with_workers(decision, scope, receive, send)
            return
        status = decision.status
        if decision.hold_until is not None:
            wait = decision.hold_until - time.monotonic()
        else:
            wait = decision.delay
        budget = _budget_of(scope)
        cut = False
        if budget is not None and budget < wait:
            # Honour the propagated deadline: nobody is waiting for the answer any more.
            wait, cut = budget, True
        if wait > 0.0:
            outcome = await self._wait(wait, receive)
            if outcome == "gone":
                self.state._note(gone=True)
                return
            if outcome == "stopping":
                status, cut = 503, False
        if cut:
            self.state._note(cut=True)
            status = 504
        body = b"ok\n" if status == 200 else b"fault injected by buttress lab\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _serve_with_workers(
        self, decision: Decision, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Wait for a worker (or be turned away), then hold it for the service time."""
        workers = decision.workers
        assert workers is not None
        budget = _budget_of(scope)
        started = time.monotonic()
        got = await self.workers.acquire(workers, decision.queue, budget)
        if got == "full":
            self.state._note(full=True)
            await _respond(send, 503)
            return
        if got == "expired":
            self.state._note(cut=True)
            await _respond(send, 504)
            return
        try:
            wait, cut = decision.delay, False
            if budget is not None:
                left = budget - (time.monotonic() - started)
                if left < wait:
                    wait, cut = max(0.0, left), True
            status = decision.status
            if wait > 0.0:
                outcome = await self._wait(wait, receive)
                if outcome == "gone":
                    self.state._note(gone=True)
                    return
                if outcome == "stopping":
                    status, cut = 503, False
        finally:
            self.workers.release(workers)
        if cut:
            self.state._note(cut=True)
            status = 504
        await _respond(send, status)

    async def _wait(self, seconds: float, receive: Receive) -> str:
        """Wait; ``"done"``, or ``"gone"`` if the client hung up, ``"stopping"`` if the
        server is shutting down."""
        if seconds < _WATCH_FROM or self.stopping is None:
            await asyncio.sleep(seconds)
            return "done"
        gone = asyncio.ensure_future(_disconnected(receive))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {gone, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            stopping.cancel()
        if gone in done:
            return "gone"
        if stopping in done:
            return "stopping"
        return "done"


class _Workers:
    """A FIFO pool of workers on the server's loop (one thread: no lock needed).

    The number of workers comes with each request (it may change between phases); a
    freed worker goes straight to the first waiter while no more than that many are busy.
    """

    def __init__(self) -> None:
        self.busy = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, workers: int, queue: int | None, budget: float | None) -> str:
        """``"ok"`` (a worker is ours), ``"full"`` (no room to wait) or ``"expired"``."""
        if self.busy < workers and not self.waiters:
            self.busy += 1
            return "ok"
        if queue is not None and len(self.waiters) >= queue:
            return "full"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            if budget is None:
                await future
            else:
                await asyncio.wait_for(asyncio.shield(future), budget)
        except BaseException as exc:
            if future.done() and not future.cancelled():
                self.release(workers)  # handed a worker just as we gave up: pass it on
            else:
                future.cancel()
                try:
                    self.waiters.remove(future)
                except ValueError:
                    pass
            if isinstance(exc, TimeoutError):
                return "expired"
            raise
        return "ok"

    def release(self, workers: int) -> None:
        """Free a worker: hand it to the first waiter, or put it back."""
        while self.waiters and self.busy <= workers:
            future = self.waiters.popleft()
            if not future.done():
                future.set_result(None)  # the busy count moves with the worker
                return
        self.busy -= 1


async def _respond(send: Send, status: int) -> None:
    body = b"ok\n" if status == 200 else b"fault injected by buttress lab\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Upstream:
    """A real HTTP server on ``127.0.0.1``, in a background thread, with injected faults.

    ``start()`` binds a socket on port 0 (so the port is known at once and never
    collides), starts uvicorn on it in a thread with its own event loop and waits until
    it serves. ``stop()`` asks uvicorn to exit, releases held requests, joins the thread
    and closes the socket; it is safe to call twice and runs on ``with``-exit whatever
    happened inside the block (exceptions, ``KeyboardInterrupt``).

    The server answers any GET: 200 ``ok`` or, per :class:`FaultState`, 503 (an injected
    error or outage) or 504 (the caller's ``x-request-timeout`` budget ran out while the
    request waited: a deadline-aware server stops working for a caller that is gone).

    Args:
        state: the fault state to consult. Default: a fresh, healthy one.
        startup_timeout: seconds to wait for the server to start. Default 5.

    Raises:
        RuntimeError: (from ``start``) the server did not start in time or failed.

    Example::

        with Upstream(FaultState(Faults(error_rate=0.2), seed=1)) as upstream:
            httpx.get(upstream.url)
            print(upstream.stats().requests)
    """

    def __init__(self, state: FaultState | None = None, *, startup_timeout: float = 5.0) -> None:
        self.state = state if state is not None else FaultState()
        self.startup_timeout = seconds("startup_timeout", startup_timeout, allow_zero=False)
        self._app = _App(self.state)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None  # uvicorn.Server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._port = 0

    def __repr__(self) -> str:
        where = f"{self.url!r}" if self._thread is not None else "not started"
        return f"Upstream({where})"

    @property
    def port(self) -> int:
        """The bound port (0 before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    def stats(self) -> UpstreamStats:
        """The fault state's counters (every request received so far)."""
        return self.state.stats()

    def start(self) -> None:
        """Bind, start the server thread and wait until it serves."""
        if self._thread is not None:
            raise RuntimeError("this Upstream was already started")
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and without it every answer written in two parts (headers, body) waits
        # ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            ws="none",
            log_config=None,  # never reconfigure the host program's logging
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"buttress-lab-upstream-{self._port}", daemon=True
        )
        self._thread.start()
        # A blocking wait, even when called from async code: startup takes milliseconds,
        # and the lab starts upstreams only while no load is running.
        deadline = time.monotonic() + self.startup_timeout
        try:
            while not self._server.started:
                if self._error is not None or not self._thread.is_alive():
                    raise RuntimeError(f"the lab upstream failed to start: {self._error!r}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the lab upstream did not start within {self.startup_timeout:g} s"
                    )
                time.sleep(0.002)
        except BaseException:
            self.stop()
            raise

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); the thread must end quietly
            self._error = exc

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._app.stopping = asyncio.Event()
        await self._server.serve(sockets=[self._sock])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, release held requests, join the thread, close the socket."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._server.should_exit = True
            loop, stopping = self._loop, self._app.stopping
            if loop is not None and stopping is not None:
                try:
                    loop.call_soon_threadsafe(stopping.set)
                except RuntimeError:  # the loop already closed: nothing is held
                    pass
            thread.join(timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> Upstream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
