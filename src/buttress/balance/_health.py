"""Active health checks: options and the built-in HTTP and TCP checkers."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import _validate as v
from ._endpoint import Endpoint

if TYPE_CHECKING:
    import httpx

__all__ = ["Checker", "HealthCheck", "HealthStatus", "HttpCheck", "TcpCheck"]


class HealthStatus(enum.Enum):
    """What one health check found.

    ``HEALTHY`` and ``UNHEALTHY`` count towards the thresholds; ``DRAINING`` marks the
    endpoint unhealthy at once (an immediate-fail signal: the endpoint is shutting down
    or asked to be taken out).

    Example::

        async def check(ep: bt.Endpoint) -> bt.HealthStatus:
            state = await ask_admin_port(ep)
            return bt.HealthStatus.DRAINING if state == "draining" else bt.HealthStatus.HEALTHY
    """

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"


Checker: TypeAlias = Callable[[Endpoint], Awaitable["HealthStatus | bool"]]
"""An async callable checking one endpoint: returns a :class:`HealthStatus` or a bool
(``True`` healthy). An exception or a timeout counts as ``UNHEALTHY``."""


class HttpCheck:
    """Check an endpoint with an HTTP GET (needs ``httpx``: the ``httpx`` extra).

    A status in ``expected`` is healthy; ``503`` (when ``drain_on_503``) or a response
    carrying ``drain_header`` is an immediate fail (:attr:`HealthStatus.DRAINING`);
    anything else, or a connection error, is unhealthy.

    Args:
        path: the path to GET. Default ``"/health"``.
        expected: healthy statuses. Default ``range(200, 300)``.
        drain_header: a response header that means "take me out now" (Envoy's
            ``x-envoy-immediate-health-check-fail``). Default ``"x-drain"``; ``None``
            to ignore.
        drain_on_503: treat ``503 Service Unavailable`` as an immediate fail. Default True.
        client: an ``httpx.AsyncClient`` to use. Default: one created on first use
            (ignoring proxy settings from the environment) and closed by :meth:`aclose`
            (the balancer calls it on stop).

    Raises:
        ConfigError: ``path`` does not start with ``/``.

    Example::

        bt.HealthCheck(bt.HttpCheck("/ready"), interval=5.0)
    """

    def __init__(
        self,
        path: str = "/health",
        *,
        expected: Collection[int] = range(200, 300),
        drain_header: str | None = "x-drain",
        drain_on_503: bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise v.fail("path", "a str starting with '/'", path)
        self.path = path
        self.expected = expected
        self.drain_header = drain_header
        self.drain_on_503 = bool(drain_on_503)
        self._client = client
        self._own = client is None

    def __repr__(self) -> str:
        return f"HttpCheck({self.path!r})"

    async def __call__(self, endpoint: Endpoint) -> HealthStatus:
        """GET ``path`` on ``endpoint``; see the class docs for the verdicts."""
        import httpx

        if self._client is None:
            # trust_env=False: a proxy from the environment must not answer for the
            # endpoint; the check has to reach the endpoint itself.
            self._client = httpx.AsyncClient(trust_env=False)
        host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
        port = "" if endpoint.port is None else f":{endpoint.port}"
        try:
            response = await self._client.get(f"{endpoint.scheme}://{host}{port}{self.path}")
        except httpx.HTTPError:
            return HealthStatus.UNHEALTHY
        if self.drain_header is not None and self.drain_header in response.headers:
            return HealthStatus.DRAINING
        if self.drain_on_503 and response.status_code == 503:
            return HealthStatus.DRAINING
        if response.status_code in self.expected:
            return HealthStatus.HEALTHY
        return HealthStatus.UNHEALTHY

    async def aclose(self) -> None:
        """Close the client this check created (a client passed in is left open)."""
        if self._own and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class TcpCheck:
    """Check an endpoint by opening (and closing) a TCP connection to its host and port.

    Args:
        none: it connects to the endpoint's ``host`` and ``port``.

    Raises:
        nothing: a refused or failed connection is ``HealthStatus.UNHEALTHY``.

    Example::

        bt.HealthCheck(bt.TcpCheck(), interval=2.0)
    """

    def __repr__(self) -> str:
        return "TcpCheck()"

    async def __call__(self, endpoint: Endpoint) -> HealthStatus:
        """Connect; healthy when the connection opens."""
        try:
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError:
            return HealthStatus.UNHEALTHY
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return HealthStatus.HEALTHY


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checking: probe every endpoint in the background.

    Each endpoint is checked every ``interval`` seconds (``unhealthy_interval`` while it
    is unhealthy, usually shorter so it comes back sooner), each wait jittered by up to
    ± ``jitter`` * the interval so checks from many clients do not synchronise. An
    endpoint turns unhealthy after ``unhealthy_threshold`` failed checks in a row, and
    healthy again after ``healthy_threshold`` passed checks in a row; a
    :attr:`HealthStatus.DRAINING` answer turns it unhealthy at once. A check that
    raises or outlives ``timeout`` failed. Checks run while the balancer is started
    (``async with balancer:`` or ``await balancer.start()``).

    Args:
        checker: an async callable ``(endpoint) -> HealthStatus | bool``:
            :class:`HttpCheck`, :class:`TcpCheck` or your own.
        interval: seconds between checks of a healthy endpoint, ``> 0``. Default 10.
        unhealthy_interval: seconds between checks of an unhealthy endpoint, ``> 0``.
            Default ``None``: the same as ``interval``.
        timeout: seconds a check may take, ``> 0``. Default 1.
        jitter: the ± share of each interval drawn at random, ``[0, 1)``. Default 0.1.
        healthy_threshold: passed checks in a row to become healthy, ``>= 1``. Default 2.
        unhealthy_threshold: failed checks in a row to become unhealthy, ``>= 1``.
            Default 3.
        initially_healthy: whether an endpoint is healthy before its first check.
            Default True (the first check runs at start).
        uneject: a passed check ends an outlier ejection early (Envoy's
            ``successful_active_health_check_uneject_host``). Default True.

    Raises:
        ConfigError: an argument is out of range or ``checker`` is not callable.

    Example::

        balancer = bt.Balancer(addrs, health_check=bt.HealthCheck(
            bt.HttpCheck("/health"), interval=5.0, unhealthy_interval=1.0))
        async with balancer:
            ...
    """

    checker: Checker
    interval: float = 10.0
    unhealthy_interval: float | None = None
    timeout: float = 1.0
    jitter: float = 0.1
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    initially_healthy: bool = True
    uneject: bool = True

    def __post_init__(self) -> None:
        if not callable(self.checker):
            raise v.fail(
                "checker", "an async callable (endpoint) -> HealthStatus | bool", self.checker
            )
        _set(self, "interval", v.seconds("interval", self.interval, allow_zero=False))
        unhealthy = v.optional_seconds(
            "unhealthy_interval", self.unhealthy_interval, allow_zero=False
        )
        _set(self, "unhealthy_interval", unhealthy)
        _set(self, "timeout", v.seconds("timeout", self.timeout, allow_zero=False))
        _set(self, "jitter", v.number("jitter", self.jitter, low=0.0, high=1.0, high_open=True))
        v.integer("healthy_threshold", self.healthy_threshold, minimum=1)
        v.integer("unhealthy_threshold", self.unhealthy_threshold, minimum=1)
        _set(self, "initially_healthy", bool(self.initially_healthy))
        _set(self, "uneject", bool(self.uneject))


def _set(obj: Any, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)
