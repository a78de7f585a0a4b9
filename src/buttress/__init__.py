"""buttress: the back-end patterns that keep services fast, up and steady.

Stability policies (timeouts and deadlines, retries with budgets, circuit breakers,
bulkheads, fallbacks, hedged requests) that compose into one pipeline, run the same logic
for ``async def`` and ``def`` callers, and take an injectable clock so they can be tested
without sleeping.

Example::

    import buttress as bt

    policy = bt.pipeline(
        bt.Fallback(lambda exc: None),
        bt.Retry(attempts=3, on=(ConnectionError, bt.TimeoutError)),
        bt.CircuitBreaker(failure_rate=0.5, window=bt.CountWindow(100)),
        bt.Timeout(1.0),
    )

    @policy
    async def get_user(uid: int) -> dict[str, object]: ...
"""

from typing import TYPE_CHECKING, Any

from . import events
from ._backoff import Backoff
from ._breaker import BreakerState, BreakerStats, CircuitBreaker, CountWindow, TimeWindow
from ._budget import RetryBudget, RetryBudgetStats
from ._bulkhead import Bulkhead, BulkheadStats
from ._clock import SYSTEM_CLOCK, Clock, SystemClock, TimerHandle
from ._deadline import (
    DEADLINE_HEADER,
    Deadline,
    current_deadline,
    deadline,
    deadline_from_headers,
    deadline_headers,
    format_timeout,
    parse_timeout,
    remaining,
)
from ._errors import (
    BulkheadFullError,
    ButtressError,
    CircuitOpenError,
    ConfigError,
    DeadlineExceededError,
    OverloadedError,
    RateLimitedError,
    RejectedError,
    StoreError,
    TimeoutError,
)
from ._events import add_listener, remove_listener
from ._fallback import Fallback, FallbackStats
from ._hedge import Hedge, HedgeStats, LatencyPercentile
from ._policy import Pipeline, Policy, pipeline
from ._retry import Retry, RetryStats
from ._timeout import Timeout, TimeoutStats
from ._version import __version__
from .adaptive import (
    AIMD,
    AdaptiveLimit,
    AdaptiveLimitStats,
    AdaptiveThrottle,
    AdaptiveThrottleStats,
    Gradient2,
    Vegas,
)
from .balance import (
    Balancer,
    BalancerStats,
    Endpoint,
    EndpointStats,
    HealthCheck,
    HealthStatus,
    HttpCheck,
    NoHealthyEndpointError,
    OutlierDetection,
    TcpCheck,
)
from .cache import (
    BackingStore,
    Cache,
    CacheError,
    CacheStats,
    CacheWriteError,
    Codec,
    JsonCodec,
    LocalTier,
    PickleCodec,
    WriteBehind,
    WriteThrough,
    cached,
)
from .hashing import (
    BoundedLoad,
    BoundedLoadStats,
    ConsistentHash,
    HashingError,
    HashRing,
    JumpHash,
    Maglev,
    NoNodesError,
    Rendezvous,
    ReshardPlan,
    ShardMap,
    UnknownNodeError,
    UnsupportedOperationError,
)
from .messaging import (
    BrokerError,
    BrokerUnavailableError,
    Consumer,
    ConsumerStats,
    ForwardBufferFullError,
    ForwardStats,
    InboxBusyError,
    MemoryTransport,
    Message,
    MessagingError,
    OutboxRelay,
    OutboxStats,
    Publisher,
    RedisStreamsTransport,
    Reject,
    RequestTimeoutError,
    Requeue,
    StoreAndForward,
    Subscription,
    Transport,
)
from .ratelimit import Decision, RateLimiter, RateLimiterStats
from .stores import MemoryStore, Store
from .supervise import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    Supervisor,
    SupervisorError,
    SupervisorGaveUpError,
    SupervisorStats,
)

if TYPE_CHECKING:
    from . import chaos
    from .cache import RedisCache, RedisCacheStats, TieredCache, TieredCacheStats
    from .stores.redis import RedisStore

__all__ = [
    "AIMD",
    "DEADLINE_HEADER",
    "SYSTEM_CLOCK",
    "AdaptiveLimit",
    "AdaptiveLimitStats",
    "AdaptiveThrottle",
    "AdaptiveThrottleStats",
    "BackingStore",
    "Backoff",
    "Balancer",
    "BalancerStats",
    "BoundedLoad",
    "BoundedLoadStats",
    "BreakerState",
    "BreakerStats",
    "BrokerError",
    "BrokerUnavailableError",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStats",
    "ButtressError",
    "Cache",
    "CacheError",
    "CacheStats",
    "CacheWriteError",
    "ChildSpec",
    "ChildStartError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "Codec",
    "ConfigError",
    "ConsistentHash",
    "Consumer",
    "ConsumerStats",
    "CountWindow",
    "Deadline",
    "DeadlineExceededError",
    "Decision",
    "DynamicSupervisor",
    "Endpoint",
    "EndpointStats",
    "Fallback",
    "FallbackStats",
    "ForwardBufferFullError",
    "ForwardStats",
    "Gradient2",
    "HashRing",
    "HashingError",
    "HealthCheck",
    "HealthStatus",
    "Hedge",
    "HedgeStats",
    "HttpCheck",
    "InboxBusyError",
    "JsonCodec",
    "JumpHash",
    "LatencyPercentile",
    "LocalTier",
    "Maglev",
    "MemoryStore",
    "MemoryTransport",
    "Message",
    "MessagingError",
    "NoHealthyEndpointError",
    "NoNodesError",
    "OutboxRelay",
    "OutboxStats",
    "OutlierDetection",
    "OverloadedError",
    "PickleCodec",
    "Pipeline",
    "Policy",
    "Publisher",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterStats",
    "RedisCache",
    "RedisCacheStats",
    "RedisStore",
    "RedisStreamsTransport",
    "Reject",
    "RejectedError",
    "Rendezvous",
    "RequestTimeoutError",
    "Requeue",
    "ReshardPlan",
    "Retry",
    "RetryBudget",
    "RetryBudgetStats",
    "RetryStats",
    "ShardMap",
    "Store",
    "StoreAndForward",
    "StoreError",
    "Subscription",
    "Supervisor",
    "SupervisorError",
    "SupervisorGaveUpError",
    "SupervisorStats",
    "SystemClock",
    "TcpCheck",
    "TieredCache",
    "TieredCacheStats",
    "TimeWindow",
    "Timeout",
    "TimeoutError",
    "TimeoutStats",
    "TimerHandle",
    "Transport",
    "UnknownNodeError",
    "UnsupportedOperationError",
    "Vegas",
    "WriteBehind",
    "WriteThrough",
    "__version__",
    "add_listener",
    "cached",
    "chaos",
    "current_deadline",
    "deadline",
    "deadline_from_headers",
    "deadline_headers",
    "events",
    "format_timeout",
    "parse_timeout",
    "pipeline",
    "remaining",
    "remove_listener",
]


_REDIS_CACHE_NAMES = frozenset({"RedisCache", "RedisCacheStats", "TieredCache", "TieredCacheStats"})


def __getattr__(name: str) -> Any:
    # RedisStore imports redis-py, an optional dependency: only when someone asks for it.
    if name == "RedisStore":
        from .stores.redis import RedisStore

        return RedisStore
    # The Redis cache tier imports redis-py too.
    if name in _REDIS_CACHE_NAMES:
        from . import cache

        return getattr(cache, name)
    # The chaos tools (fault policies, the fault proxy, experiments) load on first use.
    if name == "chaos":
        import importlib

        return importlib.import_module(".chaos", __name__)
    raise AttributeError(f"module 'buttress' has no attribute {name!r}")
