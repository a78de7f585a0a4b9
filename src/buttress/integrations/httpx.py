"""An httpx transport that balances requests over endpoints (needs the ``httpx`` extra).

:class:`BalancedTransport` plugs a :class:`~buttress.Balancer` into ``httpx.AsyncClient``
and ``httpx.Client``: each request goes to an endpoint the balancer picks (the URL's
scheme, host and port are rewritten; the ``Host`` header keeps the name the caller
used), through a circuit breaker per endpoint; idempotent requests that fail are retried
on a different endpoint within a :class:`~buttress.RetryBudget`; and the remaining
:func:`~buttress.deadline` travels upstream as a header, which
:class:`buttress.integrations.asgi.DeadlineMiddleware` reads on the other side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Literal

import httpx

from .. import _validate as v
from .._breaker import CircuitBreaker
from .._budget import RetryBudget
from .._clock import Clock
from .._deadline import DEADLINE_HEADER, format_timeout, remaining
from .._errors import CircuitOpenError, DeadlineExceededError
from ..balance import Balancer, Endpoint, Pick

__all__ = ["IDEMPOTENT_METHODS", "BalancedTransport", "default_breaker"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods retried after a failure (RFC 9110 idempotent methods)."""

_SAFE_TO_RESEND = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def default_breaker(endpoint: Endpoint, *, clock: Clock | None = None) -> CircuitBreaker:
    """The breaker :class:`BalancedTransport` gives each endpoint by default: opens after
    5 failures in a row (5xx answers and transport errors), probes after 10 s. The
    transport passes its balancer's ``clock`` (default ``None``: the system clock), so
    breakers and balancer share one time.

    Example::

        BalancedTransport(balancer, breaker=lambda ep: bt.CircuitBreaker(
            consecutive_failures=3, record_result=lambda r: r.status_code >= 500))
    """
    return CircuitBreaker(
        consecutive_failures=5,
        open_for=10.0,
        record_result=_server_error,
        name=f"breaker:{endpoint.address}",
        clock=clock,
    )


def _server_error(response: object) -> bool:
    return isinstance(response, httpx.Response) and response.status_code >= 500


class _Attempts:
    """The retry decisions of one request, shared by the sync and async runners."""

    __slots__ = ("attempt", "budget", "idempotent", "owner", "tried")

    def __init__(self, owner: BalancedTransport, request: httpx.Request) -> None:
        self.owner = owner
        self.budget = owner.budget
        self.idempotent = request.method.upper() in owner.retry_methods
        self.tried: set[str] = set()
        self.attempt = 0
        if self.budget is not None:
            self.budget.deposit()

    def pick(self) -> Pick:
        """A pick that avoids the endpoints already tried, when the balancer can."""
        balancer = self.owner.balancer
        for _ in range(3):
            pick = balancer.pick()
            endpoint = pick.__enter__()
            if endpoint.address not in self.tried:
                break
            pick.ignore()
            pick.__exit__(None, None, None)
        else:
            pick = balancer.pick()
            endpoint = pick.__enter__()
        self.tried.add(endpoint.address)
        self.attempt += 1
        return pick

    def may_retry(self, resend_safe: bool) -> bool:
        """Whether one more attempt may go: attempts left, method (or nothing sent), budget."""
        if self.attempt >= self.owner.attempts:
            return False
        if not (self.idempotent or resend_safe):
            return False
        left = remaining()
        if left is not None and left <= 0.0:
            return False
        return self.budget is None or self.budget.try_withdraw()

    def prepare(self, request: httpx.Request, endpoint: Endpoint) -> None:
        """Point ``request`` at ``endpoint`` and put the remaining deadline on it."""
        request.url = request.url.copy_with(
            scheme=endpoint.scheme, host=endpoint.host, port=endpoint.port
        )
        left = remaining()
        if left is None:
            return
        if left <= 0.0:
            raise DeadlineExceededError("no time left to send the request", timeout=0.0)
        header = self.owner.deadline_header
        if header is not None:
            request.headers[header] = format_timeout(left)
        timeouts = request.extensions.get("timeout")
        if isinstance(timeouts, dict):
            request.extensions["timeout"] = {
                k: left if t is None else min(t, left) for k, t in timeouts.items()
            }

    def judge(self, pick: Pick, status: int) -> bool:
        """Mark the pick from the status; True when the response should be retried."""
        owner = self.owner
        if status in owner.reject_statuses:
            pick.reject()
        elif status in owner.failure_statuses:
            pick.fail()
        return status in owner.retry_statuses and self.may_retry(False)


class BalancedTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport sending each request to an endpoint chosen by a balancer.

    Use it with ``httpx.AsyncClient(transport=...)`` or ``httpx.Client(transport=...)``;
    the request URL's host is a logical name (kept in the ``Host`` header), its scheme,
    host and port are replaced by the chosen endpoint's.

    Per attempt: the balancer picks an endpoint (avoiding the ones this request already
    tried); the endpoint's breaker (one per endpoint, from ``breaker``) lets it through
    or rejects it (then another endpoint is tried: nothing was sent); the remaining
    :func:`~buttress.deadline` is sent as ``deadline_header`` and clamps httpx's own
    timeouts. The pick records the outcome: a status in ``failure_statuses`` is a
    failure (outlier ejection, breaker), one in ``reject_statuses`` a rejection
    (latency penalty), a transport error a failure.

    Retries go to a different endpoint when one is available, up to ``attempts`` in
    all, only for idempotent methods (``retry_methods``) — except connection failures,
    which sent nothing and are retried for any method — on a transport error or a
    status in ``retry_statuses``, while the ``budget`` allows and the deadline has time
    left. When retries run out the last response is returned (or the last error raised).

    Args:
        balancer: the :class:`~buttress.Balancer` over the upstream endpoints.
        transport: the inner transport for async clients. Default
            ``httpx.AsyncHTTPTransport()``.
        sync_transport: the inner transport for sync clients. Default
            ``httpx.HTTPTransport()``.
        breaker: ``(endpoint) -> CircuitBreaker``, or ``None`` for no breakers. Default
            :func:`default_breaker`.
        attempts: attempts per request in all, ``>= 1``. Default 3.
        budget: the :class:`~buttress.RetryBudget` retries draw from; ``None`` (default)
            for a fresh ``RetryBudget()`` (20 % of requests + 10/s), ``False`` for none.
        retry_methods: methods that may be retried. Default :data:`IDEMPOTENT_METHODS`.
        retry_statuses: statuses retried on another endpoint. Default 502, 503, 504.
        failure_statuses: statuses recorded as failures. Default 500-599.
        reject_statuses: statuses recorded as rejections. Default 429.
        deadline_header: the header for the remaining budget, or ``None`` not to send
            it. Default ``"x-request-timeout"``.

    Raises:
        ConfigError: an option is out of range.
        NoHealthyEndpointError: (per request) no endpoint may take it.
        httpx.TransportError: (per request) the last attempt's error.
        DeadlineExceededError: (per request) the deadline ran out before sending.

    Example::

        balancer = bt.Balancer(["10.0.0.1:8000", "10.0.0.2:8000"])
        async with httpx.AsyncClient(transport=BalancedTransport(balancer),
                                     base_url="http://users") as client:
            with bt.deadline(2.0):
                response = await client.get("/users/42")
    """

    def __init__(
        self,
        balancer: Balancer,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
        breaker: Callable[[Endpoint], CircuitBreaker] | None = default_breaker,
        attempts: int = 3,
        budget: RetryBudget | Literal[False] | None = None,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        retry_statuses: Collection[int] = (502, 503, 504),
        failure_statuses: Collection[int] = range(500, 600),
        reject_statuses: Collection[int] = (429,),
        deadline_header: str | None = DEADLINE_HEADER,
    ) -> None:
        if not isinstance(balancer, Balancer):
            raise v.fail("balancer", "a buttress Balancer", balancer)
        self.balancer = balancer
        self._async = transport
        self._sync = sync_transport
        self.breaker = v.optional_callable("breaker", breaker)
        self.attempts = v.integer("attempts", attempts, minimum=1)
        if budget is None:
            budget = RetryBudget(clock=balancer.clock, name=f"{balancer.name}:retries")
        elif budget is not False and not isinstance(budget, RetryBudget):
            raise v.fail("budget", "a RetryBudget, None or False", budget)
        self.budget: RetryBudget | None = None if budget is False else budget
        self.retry_methods = frozenset(m.upper() for m in retry_methods)
        self.retry_statuses = frozenset(retry_statuses)
        self.failure_statuses = frozenset(failure_statuses)
        self.reject_statuses = frozenset(reject_statuses)
        if deadline_header is not None and (
            not isinstance(deadline_header, str) or not deadline_header
        ):
            raise v.fail("deadline_header", "a non-empty header name or None", deadline_header)
        self.deadline_header = deadline_header
        self._breakers: dict[str, CircuitBreaker] = {}

    def __repr__(self) -> str:
        return f"BalancedTransport({self.balancer!r})"

    def breaker_for(self, endpoint: Endpoint) -> CircuitBreaker | None:
        """The breaker of ``endpoint`` (made on first use), or ``None`` without breakers."""
        if self.breaker is None:
            return None
        found = self._breakers.get(endpoint.address)
        if found is None:
            made = (
                default_breaker(endpoint, clock=self.balancer.clock)
                if self.breaker is default_breaker
                else self.breaker(endpoint)
            )
            found = self._breakers.setdefault(endpoint.address, made)
        return found

    def _record_result(self, response: httpx.Response) -> bool:
        return response.status_code in self.failure_statuses

    # -- async ------------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to a balanced endpoint, retrying as the class docs say."""
        if self._async is None:
            self._async = httpx.AsyncHTTPTransport()
        inner = self._async
        plan = _Attempts(self, request)
        if plan.idempotent and self.attempts > 1:
            await request.aread()  # a body that can be sent again
        while True:
            pick = plan.pick()
            with _finishing(pick) as endpoint:
                plan.prepare(request, endpoint)
                breaker = self.breaker_for(endpoint)
                try:
                    if breaker is None:
                        response = await inner.handle_async_request(request)
                    else:
                        response = await breaker.call(inner.handle_async_request, request)
                except CircuitOpenError:
                    pick.ignore()
                    if plan.may_retry(True):
                        continue
                    raise
                except httpx.TransportError as exc:
                    pick.fail()
                    if plan.may_retry(isinstance(exc, _SAFE_TO_RESEND)):
                        continue
                    raise
                if not plan.judge(pick, response.status_code):
                    return response
            await response.aclose()

    async def aclose(self) -> None:
        """Close the inner async transport."""
        if self._async is not None:
            await self._async.aclose()

    # -- sync -------------------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to a balanced endpoint, retrying as the class docs say."""
        if self._sync is None:
            self._sync = httpx.HTTPTransport()
        inner = self._sync
        plan = _Attempts(self, request)
        if plan.idempotent and self.attempts > 1:
            request.read()
        while True:
            pick = plan.pick()
            with _finishing(pick) as endpoint:
                plan.prepare(request, endpoint)
                breaker = self.breaker_for(endpoint)
                try:
                    if breaker is None:
                        response = inner.handle_request(request)
                    else:
                        response = breaker.call_sync(inner.handle_request, request)
                except CircuitOpenError:
                    pick.ignore()
                    if plan.may_retry(True):
                        continue
                    raise
                except httpx.TransportError as exc:
                    pick.fail()
                    if plan.may_retry(isinstance(exc, _SAFE_TO_RESEND)):
                        continue
                    raise
                if not plan.judge(pick, response.status_code):
                    return response
            response.close()

    def close(self) -> None:
        """Close the inner sync transport."""
        if self._sync is not None:
            self._sync.close()


@contextmanager
def _finishing(pick: Pick) -> Iterator[Endpoint]:
    """Finish an already entered pick when the block ends (``continue`` included)."""
    endpoint = pick.endpoint
    assert endpoint is not None
    try:
        yield endpoint
    except BaseException as exc:
        pick.__exit__(type(exc), exc, exc.__traceback__)
        raise
    pick.__exit__(None, None, None)
