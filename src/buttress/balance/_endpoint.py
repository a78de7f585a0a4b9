"""Endpoints: an address with a weight and a priority group."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .. import _validate as v

__all__ = ["Endpoint"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream a :class:`~buttress.Balancer` may send requests to.

    Args:
        address: ``"host:port"`` or a URL base (``"http://10.0.0.7:8080"``); unique within
            a balancer. ``host``, ``port`` and ``scheme`` are parsed from it.
        weight: relative share of traffic, ``>= 0``. Default 1. An endpoint of weight 0
            gets no traffic (a drained endpoint).
        priority: failover group, 0 the first (primary), 1 the next, ... Default 0.
            Lower groups are used first; traffic spills to the next group as the
            healthy share of a group drops.

    Raises:
        ConfigError: an empty address, a negative/NaN weight, a negative priority, or an
            address whose port is not a number.

    Example::

        bt.Endpoint("10.0.0.7:8080", weight=2)
        bt.Endpoint("https://backup.example.com", priority=1)
    """

    address: str
    weight: float = 1.0
    priority: int = 0
    scheme: str = field(init=False, compare=False, repr=False)
    host: str = field(init=False, compare=False, repr=False)
    port: int | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise v.fail("address", "a non-empty str such as 'host:port'", self.address)
        object.__setattr__(self, "weight", v.number("weight", self.weight, low=0.0))
        object.__setattr__(self, "priority", v.integer("priority", self.priority, minimum=0))
        raw = self.address.strip()
        parts = urlsplit(raw if "://" in raw else "//" + raw)
        scheme = parts.scheme or "http"
        try:
            port = parts.port
        except ValueError:
            raise v.fail("address", "'host:port' with a numeric port", self.address) from None
        if port is None:
            port = _DEFAULT_PORTS.get(scheme)
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "host", parts.hostname or "")
        object.__setattr__(self, "port", port)
