"""Outlier detection options (passive health), after Envoy's outlier detection."""

from __future__ import annotations

from dataclasses import dataclass

from .. import _validate as v

__all__ = ["OutlierDetection"]


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Eject endpoints that fail, judged from the requests themselves (passive health).

    Two detectors, as in Envoy:

    * **consecutive failures** — ``consecutive_failures`` failures in a row (exceptions
      from the call, 5xx answers, connection errors) eject the endpoint at once;
    * **success rate** — every ``interval`` seconds, among endpoints that served at least
      ``success_rate_request_volume`` requests in the interval, and only when at least
      ``success_rate_minimum_hosts`` endpoints did, an endpoint whose success rate is
      below ``mean - success_rate_stdev_factor * stdev`` is ejected.

    An ejected endpoint gets no traffic for ``base_ejection_time * n`` seconds, ``n``
    being how many times it has been ejected, capped at ``max_ejection_time``; ``n``
    goes down by one for each ``interval`` it spends un-ejected. At most
    ``max_ejection_percent`` % of the endpoints are ejected at once, but one endpoint
    may always be ejected (as in Envoy). Rejections (a fast 429, a
    :class:`~buttress.RejectedError`) do not eject: they raise the endpoint's latency
    cost instead (``failure_penalty`` on the balancer), so it attracts less traffic.

    Args:
        consecutive_failures: failures in a row that eject, ``>= 1``, or ``None`` to
            disable. Default 5.
        interval: seconds between success-rate evaluations (and multiplier decay),
            ``> 0``. Default 10.
        base_ejection_time: seconds, ``>= 0``. Default 30.
        max_ejection_time: cap on one ejection, seconds ``>= 0``. Default 300.
        max_ejection_percent: share of endpoints that may be ejected at once, ``[0,
            100]``. Default 10 (at least one endpoint may always be ejected).
        success_rate_minimum_hosts: endpoints with enough volume needed to judge,
            ``>= 1``. Default 5.
        success_rate_request_volume: requests in the interval an endpoint needs to be
            judged, ``>= 1``. Default 100.
        success_rate_stdev_factor: how many standard deviations below the mean ejects,
            ``>= 0``. Default 1.9.
        success_rate: enable the success-rate detector. Default True.

    Raises:
        ConfigError: an argument is out of range.

    Example::

        bt.Balancer(addrs, outlier=bt.OutlierDetection(consecutive_failures=3,
                                                       base_ejection_time=10.0))
    """

    consecutive_failures: int | None = 5
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 10.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: float = 1.9
    success_rate: bool = True

    def __post_init__(self) -> None:
        if self.consecutive_failures is not None:
            v.integer("consecutive_failures", self.consecutive_failures, minimum=1)
        _set(self, "interval", v.seconds("interval", self.interval, allow_zero=False))
        _set(self, "base_ejection_time", v.seconds("base_ejection_time", self.base_ejection_time))
        _set(self, "max_ejection_time", v.seconds("max_ejection_time", self.max_ejection_time))
        _set(
            self,
            "max_ejection_percent",
            v.number("max_ejection_percent", self.max_ejection_percent, low=0.0, high=100.0),
        )
        v.integer("success_rate_minimum_hosts", self.success_rate_minimum_hosts, minimum=1)
        v.integer("success_rate_request_volume", self.success_rate_request_volume, minimum=1)
        _set(
            self,
            "success_rate_stdev_factor",
            v.number("success_rate_stdev_factor", self.success_rate_stdev_factor, low=0.0),
        )
        _set(self, "success_rate", bool(self.success_rate))


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)
