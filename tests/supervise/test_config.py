"""Bad specs and options get clear errors naming the argument, its value and what is allowed."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

import buttress as bt
from buttress.supervise import ChildSpec, DynamicSupervisor, Supervisor

from .helpers import returns


async def worker() -> None:
    """A trivial child."""


def test_spec_defaults() -> None:
    """A spec is permanent, 5 s shutdown, no handshake, a worker by default."""
    spec = ChildSpec("w", worker)
    assert (spec.restart, spec.shutdown, spec.significant, spec.handshake) == (
        "permanent",
        5.0,
        False,
        False,
    )
    assert spec.kind == "worker" and spec.start_timeout is None and not spec.waits_forever


def test_spec_accepts_infinite_and_timedelta_shutdown() -> None:
    """shutdown may be math.inf (child supervisors) or a timedelta."""
    assert ChildSpec("w", worker, shutdown=math.inf).waits_forever
    assert ChildSpec("w", worker, shutdown=timedelta(milliseconds=250)).shutdown == 0.25


def test_spec_refuses_a_coroutine_object() -> None:
    """Passing worker() instead of worker says so (and closes the coroutine: no warning)."""
    with pytest.raises(bt.ConfigError, match=r"factory must be a callable .* not ChildSpec\(id"):
        ChildSpec("w", worker())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": ""}, "id must be a non-empty str, got ''"),
        ({"id": 3}, "id must be a non-empty str, got 3"),
        ({"factory": 42}, "factory must be a callable returning an awaitable, got 42"),
        ({"restart": "sometimes"}, "restart must be one of 'permanent' | 'transient'"),
        ({"shutdown": 0}, "shutdown must be a duration > 0 seconds, got 0"),
        ({"shutdown": -1.0}, "shutdown must be a duration > 0 seconds, got -1.0"),
        ({"significant": True}, "significant must be False for a permanent child"),
        ({"start_timeout": 1.0}, "start_timeout must be None unless handshake=True, got 1.0"),
        ({"kind": "manager"}, "kind must be one of 'worker' | 'supervisor', got 'manager'"),
        ({"handshake": 1}, "handshake must be a bool, got 1"),
    ],
)
def test_spec_validation(kwargs: dict[str, object], message: str) -> None:
    """Every bad argument raises ConfigError naming it and its value."""
    args: dict[str, object] = {"id": "w", "factory": worker, **kwargs}
    with pytest.raises(bt.ConfigError, match=message.replace("(", r"\(").replace("|", r"\|")):
        ChildSpec(**args)  # type: ignore[arg-type]


def test_spec_refuses_generator_functions() -> None:
    """An async generator function is not a child."""

    async def stream():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(bt.ConfigError, match="not a generator function"):
        ChildSpec("g", stream)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "one_for_some"}, "strategy must be one of 'one_for_one'"),
        ({"max_restarts": -1}, "max_restarts must be an int >= 0, got -1"),
        ({"max_restarts": 2.5}, "max_restarts must be an int >= 0, got 2.5"),
        ({"within": 0}, "within must be a duration > 0 seconds, got 0"),
        ({"within": math.inf}, "within must be a finite duration > 0 seconds"),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown must be one of 'never'"),
        ({"backoff": 1.0}, "backoff must be a buttress Backoff or None, got 1.0"),
        ({"name": ""}, "name must be a non-empty str or None"),
        ({"listeners": [1]}, "listeners must be an iterable of callables"),
        ({"clock": object()}, "clock must be a Clock"),
    ],
)
def test_supervisor_validation(kwargs: dict[str, object], message: str) -> None:
    """Bad supervisor options raise ConfigError at construction."""
    with pytest.raises(bt.ConfigError, match=message):
        Supervisor(**kwargs)  # type: ignore[arg-type]


def test_duplicate_ids_are_refused() -> None:
    """Two children with one id: the message names the index and the id."""
    with pytest.raises(bt.ConfigError, match=r"children\[1\]\.id must be unique .* got 'a' twice"):
        Supervisor([ChildSpec("a", worker), ChildSpec("a", returns)])


def test_children_must_be_specs() -> None:
    """A bare function in the children list is refused, and so is a lone spec."""
    with pytest.raises(bt.ConfigError, match=r"children\[0\] must be a ChildSpec"):
        Supervisor([worker])  # type: ignore[list-item]
    with pytest.raises(bt.ConfigError, match="children must be an iterable of ChildSpec"):
        Supervisor(ChildSpec("a", worker))  # type: ignore[arg-type]


def test_significant_children_need_auto_shutdown() -> None:
    """OTP refuses significant children under auto_shutdown=never; so do we."""
    spec = ChildSpec("a", worker, restart="transient", significant=True)
    with pytest.raises(bt.ConfigError, match=r"children\[0\]\.significant must be False when"):
        Supervisor([spec])
    Supervisor([spec], auto_shutdown="any_significant")


def test_dynamic_validation() -> None:
    """max_children must be a positive int or None."""
    with pytest.raises(bt.ConfigError, match="max_children must be an int >= 1, got 0"):
        DynamicSupervisor(max_children=0)
    assert DynamicSupervisor(max_children=None).max_children is None


def test_default_names_and_repr() -> None:
    """Names default to supervisor-N / dynamic-supervisor-N; repr shows the essentials."""
    sup = Supervisor([ChildSpec("a", worker)])
    assert sup.name.startswith("supervisor-")
    assert DynamicSupervisor().name.startswith("dynamic-supervisor-")
    assert "strategy='one_for_one'" in repr(sup) and "running=False" in repr(sup)


def test_defaults_are_three_restarts_in_five_seconds() -> None:
    """The documented defaults."""
    sup = Supervisor()
    assert (sup.strategy, sup.max_restarts, sup.within) == ("one_for_one", 3, 5.0)
    assert sup.auto_shutdown == "never" and sup.backoff is None


def test_child_spec_of_a_supervisor() -> None:
    """A supervisor's child spec: run as factory, handshake, infinite shutdown."""
    inner = Supervisor(name="inner")
    spec = inner.child_spec()
    assert spec.id == "inner" and spec.factory == inner.run
    assert spec.handshake and spec.waits_forever and spec.kind == "supervisor"
    assert inner.child_spec("other", restart="transient").id == "other"


def test_public_names_are_documented() -> None:
    """Every exported class and function has a docstring; the main classes give their
    arguments, defaults, errors and an example."""
    import inspect

    from buttress import supervise

    for name in supervise.__all__:
        obj = getattr(supervise, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
    for cls in (Supervisor, DynamicSupervisor, ChildSpec):
        doc = cls.__doc__ or ""
        assert all(part in doc for part in ("Args:", "Raises:", "Example::", "Default")), cls
