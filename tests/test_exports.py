"""The public surface is deliberate: adding or removing a name must be a conscious change."""

from __future__ import annotations

import inspect

import buttress as bt
from buttress import events, testing

EXPECTED = [
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


def test_all_is_locked() -> None:
    """buttress.__all__ is exactly the reviewed list."""
    assert bt.__all__ == EXPECTED


def test_all_is_sorted() -> None:
    """__all__ stays sorted (upper-case constants first, as ruff sorts it)."""
    assert bt.__all__ == sorted(bt.__all__, key=lambda n: (not n.isupper(), n))


def test_every_name_resolves() -> None:
    """Every exported name exists on the package."""
    for name in bt.__all__:
        assert hasattr(bt, name), name


def test_public_names_have_docstrings() -> None:
    """Every exported class and function documents itself, with an example or details."""
    for module, names in ((bt, bt.__all__), (events, events.__all__), (testing, testing.__all__)):
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__ and len(obj.__doc__.strip()) > 20, f"{module.__name__}.{name}"


def test_policy_docstrings_name_defaults_errors_and_example() -> None:
    """Each policy's docstring has its arguments, its errors and an example."""
    for cls in (
        bt.Retry,
        bt.CircuitBreaker,
        bt.Timeout,
        bt.Bulkhead,
        bt.Fallback,
        bt.Hedge,
        bt.RateLimiter,
        bt.AdaptiveLimit,
        bt.AdaptiveThrottle,
    ):
        doc = cls.__doc__ or ""
        assert "Args:" in doc, cls
        assert "Raises:" in doc, cls
        assert "Example::" in doc, cls
        assert "Default" in doc, cls


def test_pattern_docstrings_name_arguments_errors_and_example() -> None:
    """The entry points of every pattern beyond the policies document their arguments
    (with defaults where they take options), their errors and an example."""
    from buttress.integrations.asgi import IdempotencyMiddleware
    from buttress.integrations.httpx import BalancedTransport
    from buttress.messaging import (
        PostgresInbox,
        PostgresOutbox,
        RedisInbox,
        SQLiteInbox,
        SQLiteOutbox,
    )
    from buttress.messaging.nats import NatsTransport

    entry_points: list[object] = [
        bt.Supervisor,
        bt.DynamicSupervisor,
        bt.ChildSpec,
        bt.Cache,
        bt.RedisCache,
        bt.TieredCache,
        bt.WriteBehind,
        bt.WriteThrough,
        bt.cached,
        bt.HashRing,
        bt.JumpHash,
        bt.Rendezvous,
        bt.Maglev,
        bt.BoundedLoad,
        bt.ShardMap,
        bt.Balancer,
        bt.HealthCheck,
        bt.HttpCheck,
        bt.OutlierDetection,
        bt.Consumer,
        bt.MemoryTransport,
        bt.RedisStreamsTransport,
        NatsTransport,
        bt.OutboxRelay,
        bt.StoreAndForward,
        SQLiteInbox,
        RedisInbox,
        PostgresInbox,
        SQLiteOutbox,
        PostgresOutbox,
        BalancedTransport,
        IdempotencyMiddleware,
    ]
    for obj in entry_points:
        doc = getattr(obj, "__doc__", None) or ""
        assert "Args:" in doc or "Arguments:" in doc, obj
        assert "Raises:" in doc, obj
        assert "Example::" in doc, obj
        assert "default" in doc.lower(), obj


def test_private_modules_stay_private() -> None:
    """Implementation modules are underscore-prefixed; users import from the package."""
    public_submodules = {
        "adaptive",
        "balance",
        "cache",
        "chaos",
        "events",
        "testing",
        "cli",
        "hashing",
        "lab",
        "messaging",
        "integrations",
        "ratelimit",
        "stores",
        "supervise",
    }
    for name in dir(bt):
        value = getattr(bt, name)
        if inspect.ismodule(value) and value.__name__.startswith("buttress."):
            short = value.__name__.split(".")[1]
            assert short.startswith("_") or short in public_submodules, short


def test_core_import_does_not_load_optional_dependencies() -> None:
    """import buttress loads neither redis-py, the lab's libraries, YAML nor the chaos tools
    (they load when first used: ``bt.chaos``)."""
    import subprocess
    import sys

    code = (
        "import sys, buttress\n"
        "optional = ('redis', 'httpx', 'uvicorn', 'yaml', 'opentelemetry', 'buttress.chaos')\n"
        "print(sorted(m for m in optional if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
