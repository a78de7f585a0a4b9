"""Events emitted by buttress policies, and how to listen to them.

Every event is a small frozen dataclass whose ``policy`` field names the emitting policy.
Register a listener on one policy (``listeners=[...]`` or ``policy.add_listener``) or on
all of them (:func:`buttress.add_listener`). A listener that raises is logged and
ignored. With no listener registered, emitting costs one check.

Example::

    from buttress import events

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.BreakerStateChanged):
            log.warning("breaker %s: %s -> %s", event.policy, event.old, event.new)

    bt.add_listener(on_event)
"""

from typing import TYPE_CHECKING, Any

from ._events import (
    BreakerStateChanged,
    BulkheadQueued,
    CallRejected,
    Event,
    FallbackUsed,
    HedgeLaunched,
    LimitChanged,
    Listener,
    RetryGaveUp,
    RetryScheduled,
    StoreFellBack,
    TimeoutFired,
    TimeoutOverran,
    add_listener,
    remove_listener,
)
from .balance._events import (
    EndpointEjected,
    EndpointHealthChanged,
    EndpointRestored,
    PanicEntered,
    PanicExited,
    PriorityLoadChanged,
)
from .cache import (
    CacheEvicted,
    CacheLoadFailed,
    CacheWriteFailed,
    NearCacheFlushed,
)
from .messaging import (
    ConsumerFetchFailed,
    ConsumerStopped,
    ForwardBuffered,
    ForwardDrained,
    ForwardDropped,
    ForwardFailed,
    InboxDuplicate,
    MessageDeadLettered,
    MessageHandled,
    MessageReleased,
    MessageRetried,
    MessageSettleFailed,
    OutboxLag,
    OutboxPublished,
    OutboxPublishFailed,
)
from .supervise._events import (
    ChildExited,
    ChildRestarted,
    ChildStarted,
    ChildUnkillable,
    SupervisorGaveUp,
    SupervisorStopped,
)

if TYPE_CHECKING:
    from .chaos._events import FaultInjected, ToxicApplied

__all__ = [
    "BreakerStateChanged",
    "BulkheadQueued",
    "CacheEvicted",
    "CacheLoadFailed",
    "CacheWriteFailed",
    "CallRejected",
    "ChildExited",
    "ChildRestarted",
    "ChildStarted",
    "ChildUnkillable",
    "ConsumerFetchFailed",
    "ConsumerStopped",
    "EndpointEjected",
    "EndpointHealthChanged",
    "EndpointRestored",
    "Event",
    "FallbackUsed",
    "FaultInjected",
    "ForwardBuffered",
    "ForwardDrained",
    "ForwardDropped",
    "ForwardFailed",
    "HedgeLaunched",
    "InboxDuplicate",
    "LimitChanged",
    "Listener",
    "MessageDeadLettered",
    "MessageHandled",
    "MessageReleased",
    "MessageRetried",
    "MessageSettleFailed",
    "NearCacheFlushed",
    "OutboxLag",
    "OutboxPublishFailed",
    "OutboxPublished",
    "PanicEntered",
    "PanicExited",
    "PriorityLoadChanged",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreFellBack",
    "SupervisorGaveUp",
    "SupervisorStopped",
    "TimeoutFired",
    "TimeoutOverran",
    "ToxicApplied",
    "add_listener",
    "remove_listener",
]


def __getattr__(name: str) -> Any:
    # The chaos events load with buttress.chaos, on first use, not with every import.
    if name in ("FaultInjected", "ToxicApplied"):
        from .chaos import _events

        return getattr(_events, name)
    raise AttributeError(f"module 'buttress.events' has no attribute {name!r}")
