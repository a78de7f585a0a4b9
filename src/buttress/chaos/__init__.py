"""Chaos tools: prove that the resilience holds.

* **In-process fault injection** — pipeline policies that inject an exception
  (:class:`Fault`), latency (:class:`Latency`), a fake result (:class:`Outcome`) or run a
  behaviour (:class:`Behavior`), at a rate, behind a switch (a bool, a callable,
  :func:`env`, :func:`flag_file`), with seeded randomness. Put them innermost. See
  ``docs/chaos.md``.
* **The fault proxy** — :class:`ProxyServer` / :class:`FaultProxy`: a TCP proxy with
  Toxiproxy's toxics and HTTP API (``buttress proxy``), plus fail-first-N, atomic
  snapshot/restore and HTTP toxics. See ``docs/fault-proxy.md``.
* **Experiments** — :mod:`buttress.chaos.experiment` (``buttress experiment run``). See
  ``docs/experiments.md``.

Example::

    import buttress as bt

    policy = bt.pipeline(
        bt.Retry(attempts=3, on=ConnectionError),
        bt.chaos.Fault(ConnectionError, rate=0.2, enabled=bt.chaos.env("BUTTRESS_CHAOS")),
    )
"""

from ._errors import ExperimentInvalidError, ProxyConflictError, ProxyError, ProxyNotFoundError
from ._events import FaultInjected, ToxicApplied
from ._policies import (
    Behavior,
    ChaosStats,
    EnvSwitch,
    Fault,
    FileSwitch,
    Latency,
    Outcome,
    Switch,
    env,
    flag_file,
)
from ._proxy import FaultProxy, ProxyServer, ProxySnapshot, ProxyStats
from ._toxics import TOXIC_TYPES, Toxic, make_toxic

__all__ = [
    "TOXIC_TYPES",
    "Behavior",
    "ChaosStats",
    "EnvSwitch",
    "ExperimentInvalidError",
    "Fault",
    "FaultInjected",
    "FaultProxy",
    "FileSwitch",
    "Latency",
    "Outcome",
    "ProxyConflictError",
    "ProxyError",
    "ProxyNotFoundError",
    "ProxyServer",
    "ProxySnapshot",
    "ProxyStats",
    "Switch",
    "Toxic",
    "ToxicApplied",
    "env",
    "flag_file",
    "make_toxic",
]
