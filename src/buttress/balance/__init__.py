"""Client-side load balancing: strategies, outlier ejection, health checks, failover.

* :class:`Balancer` — picks an endpoint per request (power of two choices over peak
  EWMA latency by default), tracks in-flight requests and latency, ejects outliers,
  runs active health checks, panics and fails over between priority groups.
* :class:`Endpoint`, :class:`OutlierDetection`, :class:`HealthCheck`,
  :class:`HttpCheck`, :class:`TcpCheck`, :class:`HealthStatus` — its options.
* :class:`NoHealthyEndpointError` — raised when no endpoint may take a request.

See ``docs/balancer.md``.
"""

from ._balancer import STRATEGIES, Balancer, BalancerStats, EndpointStats, KeyHasher, Pick
from ._endpoint import Endpoint
from ._errors import NoHealthyEndpointError
from ._events import (
    EndpointEjected,
    EndpointHealthChanged,
    EndpointRestored,
    PanicEntered,
    PanicExited,
    PriorityLoadChanged,
)
from ._health import Checker, HealthCheck, HealthStatus, HttpCheck, TcpCheck
from ._outlier import OutlierDetection

__all__ = [
    "STRATEGIES",
    "Balancer",
    "BalancerStats",
    "Checker",
    "Endpoint",
    "EndpointEjected",
    "EndpointHealthChanged",
    "EndpointRestored",
    "EndpointStats",
    "HealthCheck",
    "HealthStatus",
    "HttpCheck",
    "KeyHasher",
    "NoHealthyEndpointError",
    "OutlierDetection",
    "PanicEntered",
    "PanicExited",
    "Pick",
    "PriorityLoadChanged",
    "TcpCheck",
]
