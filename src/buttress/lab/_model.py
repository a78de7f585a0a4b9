"""What a scenario is: phases of faults, a protected pipeline, hypotheses; and the registry."""

from __future__ import annotations

import dataclasses
import random as _random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .._errors import ConfigError
from .._policy import Policy
from .._validate import fail, integer, seconds
from ._hosting import Host
from ._hypotheses import Hypothesis
from ._upstream import Faults

__all__ = [
    "BuildContext",
    "Phase",
    "Scenario",
    "get_scenario",
    "register",
    "scenarios",
]

_NAME = re.compile(r"\A[a-z0-9][a-z0-9-]*\Z")


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of a scenario: ``seconds`` long, during which the upstream has ``faults``.

    Raises:
        ConfigError: ``seconds`` is not positive, or ``faults`` is not a :class:`Faults`.

    Example::

        Phase("outage", 4.0, Faults(outage="hang"))
    """

    name: str
    seconds: float
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise fail("name", "a non-empty str", self.name)
        object.__setattr__(self, "seconds", seconds("seconds", self.seconds, allow_zero=False))
        if not isinstance(self.faults, Faults):
            raise fail("faults", "a Faults", self.faults)


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a scenario's ``protect`` function gets to build its pipeline.

    Attributes:
        random: a ``random.Random`` seeded from the lab's ``--seed``; pass it (as
            ``random=``) to policies that draw (retry jitter) so runs are reproducible.
        redis_url: the ``--redis`` URL, for scenarios that ``need`` Redis; else ``None``.
        run_id: unique to this run of this scenario and the same in every worker process
            of it: name shared state with it (a limiter's ``name``) so runs never mix.
    """

    random: _random.Random
    redis_url: str | None = None
    run_id: str = "run"


Protect = Callable[[BuildContext], Policy]
"""Builds the protected arm's policy; called once per run of a scenario."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A lab scenario: a small, declarative definition.

    Args:
        name: a short slug (``[a-z0-9-]``), used by ``buttress lab --scenario``.
        description: one line for ``buttress lab --list`` and the report.
        phases: the phases, in order (at least one).
        protect: builds the protected arm's pipeline from a :class:`BuildContext`. The
            pipeline wraps :func:`~buttress.lab.fetch`, which raises
            :class:`~buttress.lab.UpstreamError` on a 5xx answer; a
            :class:`~buttress.Fallback` should answer :func:`~buttress.lab.degraded`.
        hypotheses: steady-state claims checked after the run (see
            :mod:`buttress.lab` for ready-made ones).
        processes: worker processes that share each arm's load (default 1: in the lab's
            own process). With more, the schedule is dealt out among spawned processes
            that start together, each building its own pipeline with ``protect``: the
            scenario must be registered at import of :mod:`buttress.lab`.
        needs: what the scenario needs beyond the lab: ``("redis",)`` makes it run only
            with ``buttress lab --redis URL``.
        quick: seconds of load per arm under ``buttress lab --quick`` (default 1.0): the
            shortest run at which its hypotheses still hold reliably.
        host: optional: builds, per arm, a service that every request goes through (see
            :mod:`buttress.lab._hosting`); its ``notes()`` appear in the report. Needs
            ``processes == 1``.

    Raises:
        ConfigError: a bad name, no phases, ``processes < 1`` or an unknown need.

    Example::

        Scenario(
            name="flaky",
            description="a quarter of the requests fail with 503",
            phases=(Phase("flaky", 10.0, Faults(error_rate=0.25)),),
            protect=lambda ctx: bt.pipeline(bt.Retry(attempts=3, on=UpstreamError)),
            hypotheses=(success_beats_naked(by=0.10),),
        )
    """

    name: str
    description: str
    phases: tuple[Phase, ...]
    protect: Protect
    hypotheses: tuple[Hypothesis, ...] = ()
    processes: int = 1
    needs: tuple[str, ...] = ()
    host: Host | None = None
    quick: float = 1.0

    def __post_init__(self) -> None:
        if self.host is not None and (not callable(self.host) or self.processes != 1):
            raise fail(
                "host", "None, or a callable (HostContext) -> service with processes=1", self.host
            )
        integer("processes", self.processes, minimum=1, maximum=64)
        needs = tuple(self.needs)
        if not all(need in ("redis",) for need in needs):
            raise fail("needs", "a tuple of 'redis'", self.needs)
        object.__setattr__(self, "needs", needs)
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise fail("name", "a slug of a-z, 0-9 and '-'", self.name)
        phases = tuple(self.phases)
        if not phases or not all(isinstance(p, Phase) for p in phases):
            raise fail("phases", "a non-empty sequence of Phase", self.phases)
        object.__setattr__(self, "phases", phases)
        if not callable(self.protect):
            raise fail("protect", "a callable (BuildContext) -> Policy", self.protect)
        hypotheses = tuple(self.hypotheses)
        if not all(isinstance(h, Hypothesis) for h in hypotheses):
            raise fail("hypotheses", "a sequence of Hypothesis", self.hypotheses)
        object.__setattr__(self, "hypotheses", hypotheses)

    @property
    def duration(self) -> float:
        """Seconds of load per arm: the sum of the phases."""
        return sum(phase.seconds for phase in self.phases)

    def scaled(self, duration: float) -> Scenario:
        """This scenario with every phase stretched or shrunk so they total ``duration``."""
        total = seconds("duration", duration, allow_zero=False)
        factor = total / self.duration
        phases = tuple(dataclasses.replace(p, seconds=p.seconds * factor) for p in self.phases)
        return dataclasses.replace(self, phases=phases)


_registry: dict[str, Scenario] = {}


def register(scenario: Scenario, *, replace: bool = False) -> Scenario:
    """Add ``scenario`` to the registry (``buttress lab --list``); returns it.

    Raises:
        ConfigError: a scenario of that name is registered and ``replace`` is false.
    """
    if not isinstance(scenario, Scenario):
        raise fail("scenario", "a Scenario", scenario)
    if scenario.name in _registry and not replace:
        raise ConfigError(f"a scenario named {scenario.name!r} is already registered")
    _registry[scenario.name] = scenario
    return scenario


def scenarios() -> tuple[Scenario, ...]:
    """Every registered scenario, in registration order."""
    return tuple(_registry.values())


def get_scenario(name: str) -> Scenario:
    """The registered scenario called ``name``.

    Raises:
        ConfigError: no such scenario; the message names it and lists the known ones.
    """
    found = _registry.get(name)
    if found is None:
        known = ", ".join(_registry) or "none registered"
        raise ConfigError(f"unknown scenario {name!r} (known: {known})")
    return found
