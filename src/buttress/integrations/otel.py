"""OpenTelemetry metrics from buttress events.

:class:`OTelMetrics` listens to the events of every policy in the process (see
:mod:`buttress.events`) and records them as OpenTelemetry counters, histograms and gauges
with stable names, so dashboards and alerts can be built once. It needs the ``otel``
extra (``pip install 'buttress[otel]'``: the OpenTelemetry API); the exporter, the reader
and the SDK are the application's choice.

Every data point carries the attribute ``buttress.policy``: the ``name`` of the policy
that emitted the event. Names never change within a major version:

- ``buttress.events`` (counter, ``{event}``): every event; ``buttress.event`` is its
  class name.
- ``buttress.retry.scheduled`` (counter, ``{retry}``) and ``buttress.retry.delay``
  (histogram, ``s``): retries and their backoff.
- ``buttress.retry.gave_up`` (counter, ``{call}``): ``buttress.reason``.
- ``buttress.breaker.state`` (gauge, ``1``): 0 closed, 1 half-open, 2 open, 3 isolated.
- ``buttress.breaker.transitions`` (counter, ``{transition}``): ``buttress.from``,
  ``buttress.to`` (state values such as ``closed``, ``half_open``).
- ``buttress.rejected`` (counter, ``{call}``): ``buttress.kind`` (``breaker``,
  ``ratelimit``, ``bulkhead``, ``adaptive_limit``, ``adaptive_throttle``...).
- ``buttress.timeout.fired`` (counter, ``{call}``): ``buttress.by_deadline``.
- ``buttress.timeout.overran`` (counter, ``{call}``): sync calls that ran past their
  timeout.
- ``buttress.bulkhead.queued``, ``buttress.fallback.used`` (counters, ``{call}``).
- ``buttress.hedge.launched`` (counter, ``{request}``): ``buttress.reason``.
- ``buttress.store.fell_back`` (counter, ``{operation}``): ``buttress.mode``,
  ``error.type``.
- ``buttress.limit`` (gauge, ``{call}``) and ``buttress.limit.rtt`` (histogram, ``s``):
  an adaptive concurrency limit and the latency of the call that moved it.
- ``buttress.supervisor.exits`` (counter, ``{exit}``): ``buttress.child``,
  ``buttress.reason``; ``buttress.supervisor.restarts`` (counter, ``{restart}``):
  ``buttress.child``; ``buttress.supervisor.gave_up`` and
  ``buttress.supervisor.unkillable`` (counters, ``{event}``): ``buttress.child``.
- ``buttress.chaos.injected`` (counter, ``{fault}``): ``buttress.kind``;
  ``buttress.proxy.toxics`` (counter, ``{connection}``): ``buttress.toxic.type``,
  ``buttress.stream``.

- ``buttress.balancer.ejections`` (counter, ``{ejection}``): ``buttress.endpoint``,
  ``buttress.reason``; ``buttress.balancer.endpoint.up`` (gauge, ``1``): 1 when an
  endpoint is in rotation, 0 when ejected or unhealthy (``buttress.endpoint``);
  ``buttress.balancer.panic`` (gauge, ``1``): 1 while the balancer is in panic.
- ``buttress.messaging.handled`` (counter, ``{message}``) and
  ``buttress.messaging.handle_time`` (histogram, ``s``): ``messaging.destination.name``;
  ``buttress.messaging.retried``, ``buttress.messaging.dead_lettered`` (counters,
  ``{message}``): ``messaging.destination.name`` (and ``buttress.reason``);
  ``buttress.messaging.duplicates`` (counter, ``{message}``): deliveries an inbox
  absorbed; ``buttress.outbox.published`` (counter, ``{message}``),
  ``buttress.outbox.lag`` (gauge, ``s``: age of the oldest unsent row) and
  ``buttress.outbox.pending`` (gauge, ``{message}``); ``buttress.forward.buffered`` and
  ``buttress.forward.dropped`` (counters, ``{message}``).

- ``buttress.cache.evictions`` (counter, ``{entry}``): ``buttress.cause`` (``size``,
  ``expired``); ``buttress.cache.load_failures`` (counter, ``{load}``);
  ``buttress.cache.write_failures`` (counter, ``{write}``): ``buttress.mode``,
  ``buttress.gave_up``; ``buttress.cache.near_flushes`` (counter, ``{flush}``):
  ``buttress.reason``.

``buttress.events`` counts every event, including kinds without a dedicated metric, so
nothing a policy reports is invisible. A listener never raises into the call it observes
(see :mod:`buttress.events`).

Example::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from buttress.integrations.otel import OTelMetrics

    reader = InMemoryMetricReader()
    with OTelMetrics(MeterProvider(metric_readers=[reader])):
        ...  # every buttress policy's events become metrics
    print(reader.get_metrics_data())
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from opentelemetry import metrics

from .._breaker import BreakerState
from .._events import (
    GLOBAL_LISTENERS,
    BreakerStateChanged,
    BulkheadQueued,
    CallRejected,
    Event,
    FallbackUsed,
    HedgeLaunched,
    LimitChanged,
    RetryGaveUp,
    RetryScheduled,
    StoreFellBack,
    TimeoutFired,
    TimeoutOverran,
)
from .._validate import fail

__all__ = ["BREAKER_STATE_VALUES", "METER_NAME", "OTelMetrics"]

METER_NAME = "buttress"
"""The instrumentation scope of every buttress metric."""

BREAKER_STATE_VALUES: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
    BreakerState.ISOLATED: 3,
}
"""What ``buttress.breaker.state`` records for each breaker state."""

POLICY = "buttress.policy"

Handler = Callable[["OTelMetrics", Any, dict[str, Any]], None]


def _retry_scheduled(m: OTelMetrics, e: RetryScheduled, a: dict[str, Any]) -> None:
    m.retry_scheduled.add(1, a)
    m.retry_delay.record(e.delay, a)


def _retry_gave_up(m: OTelMetrics, e: RetryGaveUp, a: dict[str, Any]) -> None:
    m.retry_gave_up.add(1, {**a, "buttress.reason": e.reason})


def _breaker(m: OTelMetrics, e: BreakerStateChanged, a: dict[str, Any]) -> None:
    m.breaker_state.set(BREAKER_STATE_VALUES[e.new], a)
    m.breaker_transitions.add(1, {**a, "buttress.from": e.old.value, "buttress.to": e.new.value})


def _rejected(m: OTelMetrics, e: CallRejected, a: dict[str, Any]) -> None:
    m.rejected.add(1, {**a, "buttress.kind": e.kind})


def _timeout_fired(m: OTelMetrics, e: TimeoutFired, a: dict[str, Any]) -> None:
    m.timeout_fired.add(1, {**a, "buttress.by_deadline": e.by_deadline})


def _timeout_overran(m: OTelMetrics, e: TimeoutOverran, a: dict[str, Any]) -> None:
    m.timeout_overran.add(1, a)


def _bulkhead_queued(m: OTelMetrics, e: BulkheadQueued, a: dict[str, Any]) -> None:
    m.bulkhead_queued.add(1, a)


def _fallback(m: OTelMetrics, e: FallbackUsed, a: dict[str, Any]) -> None:
    m.fallback_used.add(1, a)


def _hedge(m: OTelMetrics, e: HedgeLaunched, a: dict[str, Any]) -> None:
    m.hedge_launched.add(1, {**a, "buttress.reason": e.reason})


def _store(m: OTelMetrics, e: StoreFellBack, a: dict[str, Any]) -> None:
    m.store_fell_back.add(1, {**a, "buttress.mode": e.mode, "error.type": type(e.error).__name__})


def _limit(m: OTelMetrics, e: LimitChanged, a: dict[str, Any]) -> None:
    m.limit.set(e.new, a)
    m.limit_rtt.record(e.rtt, a)


def _child_exited(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.supervisor_exits.add(1, {**a, "buttress.child": e.child, "buttress.reason": e.reason})


def _child_restarted(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.supervisor_restarts.add(1, {**a, "buttress.child": e.child})


def _supervisor_gave_up(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.supervisor_gave_up.add(1, {**a, "buttress.child": e.child})


def _child_unkillable(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.supervisor_unkillable.add(1, {**a, "buttress.child": e.child})


def _fault_injected(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.chaos_injected.add(1, {**a, "buttress.kind": e.kind})


def _toxic_applied(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.proxy_toxics.add(1, {**a, "buttress.toxic.type": e.type, "buttress.stream": e.stream})


def _ejected(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    endpoint = {**a, "buttress.endpoint": e.endpoint}
    m.balancer_ejections.add(1, {**endpoint, "buttress.reason": e.reason})
    m.balancer_up.set(0, endpoint)


def _restored(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.balancer_up.set(1, {**a, "buttress.endpoint": e.endpoint})


def _health_changed(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.balancer_up.set(1 if e.healthy else 0, {**a, "buttress.endpoint": e.endpoint})


def _panic_entered(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.balancer_panic.set(1, a)


def _panic_exited(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.balancer_panic.set(0, a)


def _message_handled(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    topic = {**a, "messaging.destination.name": e.topic}
    m.messaging_handled.add(1, topic)
    m.messaging_handle_time.record(e.elapsed, topic)


def _message_retried(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.messaging_retried.add(1, {**a, "messaging.destination.name": e.topic})


def _message_dead_lettered(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.messaging_dead_lettered.add(
        1, {**a, "messaging.destination.name": e.topic, "buttress.reason": e.reason}
    )


def _inbox_duplicate(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.messaging_duplicates.add(1, a)


def _outbox_published(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.outbox_published.add(e.count, a)


def _outbox_lag(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.outbox_lag.set(e.lag, a)
    m.outbox_pending.set(e.pending, a)


def _forward_buffered(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.forward_buffered.add(1, a)


def _forward_dropped(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.forward_dropped.add(1, a)


def _cache_evicted(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.cache_evictions.add(1, {**a, "buttress.cause": e.cause})


def _cache_load_failed(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.cache_load_failures.add(1, a)


def _cache_write_failed(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.cache_write_failures.add(1, {**a, "buttress.mode": e.mode, "buttress.gave_up": e.gave_up})


def _near_flushed(m: OTelMetrics, e: Any, a: dict[str, Any]) -> None:
    m.cache_near_flushes.add(1, {**a, "buttress.reason": e.reason})


# Keyed by the event class's full name, so this module imports none of the packages whose
# events it maps (the chaos tools load only when used).
_HANDLERS: dict[str, Handler] = {
    f"{cls.__module__}.{cls.__qualname__}": handler
    for cls, handler in (
        (RetryScheduled, _retry_scheduled),
        (RetryGaveUp, _retry_gave_up),
        (BreakerStateChanged, _breaker),
        (CallRejected, _rejected),
        (TimeoutFired, _timeout_fired),
        (TimeoutOverran, _timeout_overran),
        (BulkheadQueued, _bulkhead_queued),
        (FallbackUsed, _fallback),
        (HedgeLaunched, _hedge),
        (StoreFellBack, _store),
        (LimitChanged, _limit),
    )
}
_HANDLERS.update(
    {
        "buttress.supervise._events.ChildExited": _child_exited,
        "buttress.supervise._events.ChildRestarted": _child_restarted,
        "buttress.supervise._events.SupervisorGaveUp": _supervisor_gave_up,
        "buttress.supervise._events.ChildUnkillable": _child_unkillable,
        "buttress.chaos._events.FaultInjected": _fault_injected,
        "buttress.chaos._events.ToxicApplied": _toxic_applied,
        "buttress.cache._events.CacheEvicted": _cache_evicted,
        "buttress.cache._events.CacheLoadFailed": _cache_load_failed,
        "buttress.cache._events.CacheWriteFailed": _cache_write_failed,
        "buttress.cache._redis_events.NearCacheFlushed": _near_flushed,
        "buttress.balance._events.EndpointEjected": _ejected,
        "buttress.balance._events.EndpointRestored": _restored,
        "buttress.balance._events.EndpointHealthChanged": _health_changed,
        "buttress.balance._events.PanicEntered": _panic_entered,
        "buttress.balance._events.PanicExited": _panic_exited,
        "buttress.messaging._events.MessageHandled": _message_handled,
        "buttress.messaging._events.MessageRetried": _message_retried,
        "buttress.messaging._events.MessageDeadLettered": _message_dead_lettered,
        "buttress.messaging._inbox.InboxDuplicate": _inbox_duplicate,
        "buttress.messaging._outbox.OutboxPublished": _outbox_published,
        "buttress.messaging._outbox.OutboxLag": _outbox_lag,
        "buttress.messaging._forward.ForwardBuffered": _forward_buffered,
        "buttress.messaging._forward.ForwardDropped": _forward_dropped,
    }
)


def _handler(cls: type) -> Handler | None:
    return _HANDLERS.get(f"{cls.__module__}.{cls.__qualname__}")


class OTelMetrics:
    """Records the events of every buttress policy as OpenTelemetry metrics.

    Build it, then :meth:`install` it (or use it as a context manager); :meth:`close`
    stops listening. The instruments are created at construction from ``meter_provider``
    (default: the global one, ``opentelemetry.metrics.get_meter_provider()``), under the
    instrumentation scope :data:`METER_NAME`. The metric names are in the module docs.

    Args:
        meter_provider: where to create the instruments. Default ``None``: the global
            provider (a no-op until the application sets one up).

    Raises:
        ConfigError: ``meter_provider`` has no ``get_meter``.

    Example::

        metrics = OTelMetrics().install()   # global provider set up by the application
        ...
        metrics.close()
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        if not callable(getattr(provider, "get_meter", None)):
            raise fail("meter_provider", "an OpenTelemetry MeterProvider or None", provider)
        from .._version import __version__

        meter = provider.get_meter(METER_NAME, __version__)
        self.events = meter.create_counter(
            "buttress.events", unit="{event}", description="Events emitted by buttress policies"
        )
        self.retry_scheduled = meter.create_counter(
            "buttress.retry.scheduled", unit="{retry}", description="Retries scheduled"
        )
        self.retry_delay = meter.create_histogram(
            "buttress.retry.delay", unit="s", description="Backoff before a retry"
        )
        self.retry_gave_up = meter.create_counter(
            "buttress.retry.gave_up", unit="{call}", description="Calls a retry gave up on"
        )
        self.breaker_state = meter.create_gauge(
            "buttress.breaker.state",
            unit="1",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open, 3 isolated",
        )
        self.breaker_transitions = meter.create_counter(
            "buttress.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes",
        )
        self.rejected = meter.create_counter(
            "buttress.rejected", unit="{call}", description="Calls rejected without running"
        )
        self.timeout_fired = meter.create_counter(
            "buttress.timeout.fired", unit="{call}", description="Calls cut short by a timeout"
        )
        self.timeout_overran = meter.create_counter(
            "buttress.timeout.overran",
            unit="{call}",
            description="Sync calls that finished after their timeout",
        )
        self.bulkhead_queued = meter.create_counter(
            "buttress.bulkhead.queued", unit="{call}", description="Calls that waited for a slot"
        )
        self.fallback_used = meter.create_counter(
            "buttress.fallback.used", unit="{call}", description="Calls answered by a fallback"
        )
        self.hedge_launched = meter.create_counter(
            "buttress.hedge.launched", unit="{request}", description="Hedged requests sent"
        )
        self.store_fell_back = meter.create_counter(
            "buttress.store.fell_back",
            unit="{operation}",
            description="Store operations answered by the on_store_error policy",
        )
        self.limit = meter.create_gauge(
            "buttress.limit", unit="{call}", description="Adaptive concurrency limit"
        )
        self.limit_rtt = meter.create_histogram(
            "buttress.limit.rtt", unit="s", description="Latency of calls that moved the limit"
        )
        self.supervisor_exits = meter.create_counter(
            "buttress.supervisor.exits", unit="{exit}", description="Supervised children that ended"
        )
        self.supervisor_restarts = meter.create_counter(
            "buttress.supervisor.restarts",
            unit="{restart}",
            description="Restarts a supervisor answered an exit with",
        )
        self.supervisor_gave_up = meter.create_counter(
            "buttress.supervisor.gave_up",
            unit="{event}",
            description="Supervisors that exceeded their restart intensity",
        )
        self.supervisor_unkillable = meter.create_counter(
            "buttress.supervisor.unkillable",
            unit="{event}",
            description="Children that outlived their shutdown timeout and were detached",
        )
        self.chaos_injected = meter.create_counter(
            "buttress.chaos.injected",
            unit="{fault}",
            description="Faults injected by chaos policies",
        )
        self.proxy_toxics = meter.create_counter(
            "buttress.proxy.toxics",
            unit="{connection}",
            description="Fault proxy toxics that started acting on a connection",
        )
        self.balancer_ejections = meter.create_counter(
            "buttress.balancer.ejections",
            unit="{ejection}",
            description="Endpoints ejected by outlier detection",
        )
        self.balancer_up = meter.create_gauge(
            "buttress.balancer.endpoint.up",
            unit="1",
            description="1 while an endpoint is in rotation, 0 while ejected or unhealthy",
        )
        self.balancer_panic = meter.create_gauge(
            "buttress.balancer.panic", unit="1", description="1 while a balancer is in panic"
        )
        self.messaging_handled = meter.create_counter(
            "buttress.messaging.handled", unit="{message}", description="Messages handled and acked"
        )
        self.messaging_handle_time = meter.create_histogram(
            "buttress.messaging.handle_time", unit="s", description="Handler time per message"
        )
        self.messaging_retried = meter.create_counter(
            "buttress.messaging.retried", unit="{message}", description="Deliveries to retry"
        )
        self.messaging_dead_lettered = meter.create_counter(
            "buttress.messaging.dead_lettered",
            unit="{message}",
            description="Messages given up on (dead-lettered)",
        )
        self.messaging_duplicates = meter.create_counter(
            "buttress.messaging.duplicates",
            unit="{message}",
            description="Duplicate deliveries absorbed by an inbox",
        )
        self.outbox_published = meter.create_counter(
            "buttress.outbox.published", unit="{message}", description="Outbox rows published"
        )
        self.outbox_lag = meter.create_gauge(
            "buttress.outbox.lag", unit="s", description="Age of the oldest unsent outbox row"
        )
        self.outbox_pending = meter.create_gauge(
            "buttress.outbox.pending", unit="{message}", description="Unsent outbox rows"
        )
        self.forward_buffered = meter.create_counter(
            "buttress.forward.buffered",
            unit="{message}",
            description="Publishes buffered locally while the broker was unreachable",
        )
        self.forward_dropped = meter.create_counter(
            "buttress.forward.dropped",
            unit="{message}",
            description="Buffered publishes dropped because the buffer was full",
        )
        self.cache_evictions = meter.create_counter(
            "buttress.cache.evictions", unit="{entry}", description="Cache entries evicted"
        )
        self.cache_load_failures = meter.create_counter(
            "buttress.cache.load_failures", unit="{load}", description="Cache loads that failed"
        )
        self.cache_write_failures = meter.create_counter(
            "buttress.cache.write_failures",
            unit="{write}",
            description="Failed writes to a cache's backing store",
        )
        self.cache_near_flushes = meter.create_counter(
            "buttress.cache.near_flushes",
            unit="{flush}",
            description="Near caches emptied because invalidations may have been missed",
        )
        self._dispatch: dict[type, Handler | None] = {}
        self._installed = False

    def __repr__(self) -> str:
        return f"OTelMetrics(installed={self._installed})"

    @property
    def installed(self) -> bool:
        """Whether it is listening."""
        return self._installed

    def record(self, event: Event) -> None:
        """Record one event (what the listener does); usable directly for a policy's own
        ``listeners=[metrics.record]`` without installing globally."""
        attributes: dict[str, Any] = {POLICY: event.policy}
        self.events.add(1, {**attributes, "buttress.event": type(event).__name__})
        cls = type(event)
        try:
            handler = self._dispatch[cls]
        except KeyError:
            handler = self._dispatch[cls] = _handler(cls)
        if handler is not None:
            handler(self, event, attributes)

    def install(self) -> OTelMetrics:
        """Start receiving every policy's events; returns ``self``. Idempotent."""
        if not self._installed:
            GLOBAL_LISTENERS.append(self.record)
            self._installed = True
        return self

    def close(self) -> None:
        """Stop receiving events. Idempotent; the instruments keep what they recorded."""
        if self._installed:
            GLOBAL_LISTENERS.remove(self.record)
            self._installed = False

    def __enter__(self) -> OTelMetrics:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
