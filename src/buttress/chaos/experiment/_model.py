"""Experiment files: load (YAML or JSON), validate with every problem named by its path.

The format (see docs/experiments.md)::

    title: redis answers through a slow network
    proxy: http://127.0.0.1:8474            # optional: default proxy API for proxy actions
    hypothesis:                              # the steady state; optional
      probes:
        - {name: app up, type: http, url: "http://127.0.0.1:8000/", tolerance: 200}
      during: {interval: 0.5, abort_after: 3}   # check while the method runs; optional
    method:
      - {type: toxic, proxy: redis, toxic: {type: latency, attributes: {latency: 200}}}
      - {type: load, url: "http://127.0.0.1:8000/", rate: 20, duration: 2}
    rollbacks:
      - {type: sleep, seconds: 0.1}
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import ExperimentInvalidError
from .._toxics import toxic_from_json

__all__ = [
    "ACTION_TYPES",
    "PROBE_TYPES",
    "Action",
    "Continuous",
    "Experiment",
    "Hypothesis",
    "Probe",
    "load_experiment",
    "parse_experiment",
]

PROBE_TYPES = ("http", "tcp", "python", "process")
ACTION_TYPES = ("toxic", "proxy", "chaos", "kill", "process", "load", "sleep", "python")
SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2")


@dataclass(frozen=True)
class Probe:
    """One steady-state measurement and its tolerance. ``spec`` holds the type's fields."""

    name: str
    type: str
    timeout: float
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Continuous:
    """Check the hypothesis every ``interval`` s while the method runs; abort after
    ``abort_after`` failed checks in a row (``None``: never abort)."""

    interval: float
    abort_after: int | None


@dataclass(frozen=True)
class Hypothesis:
    """The steady-state hypothesis: all probes within tolerance."""

    title: str
    probes: tuple[Probe, ...]
    during: Continuous | None = None


@dataclass(frozen=True)
class Action:
    """One step of the method or of the rollbacks.

    ``rollback`` is the explicit undo (``None``: the type's automatic one; ``False``: none).
    """

    name: str
    type: str
    spec: Mapping[str, Any]
    timeout: float = 30.0
    background: bool = False
    pause_after: float = 0.0
    rollback: Action | bool | None = None


@dataclass(frozen=True)
class Experiment:
    """A validated experiment."""

    title: str
    method: tuple[Action, ...]
    hypothesis: Hypothesis | None = None
    rollbacks: tuple[Action, ...] = ()
    description: str = ""
    proxy_api: str | None = None
    source: str = "<experiment>"
    raw: Mapping[str, Any] = field(default_factory=dict)


# -- validation --------------------------------------------------------------------------------


class _Checker:
    """Collects problems as ``path: what is wrong; what is allowed``."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def fields(
        self, path: str, data: Mapping[str, Any], allowed: set[str], required: set[str]
    ) -> None:
        for key in sorted(required - set(data)):
            self.bad(f"{path}.{key}" if path else key, "is required")
        for key in sorted(set(data) - allowed):
            shown = ", ".join(sorted(allowed))
            self.bad(f"{path}.{key}" if path else str(key), f"unknown field; allowed: {shown}")

    def string(self, path: str, value: Any, *, empty: bool = False) -> str | None:
        if not isinstance(value, str) or (not empty and not value):
            self.bad(path, f"must be a non-empty string, got {value!r}")
            return None
        return value

    def seconds(self, path: str, value: Any, *, positive: bool = False) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and math.isfinite(value) and (value > 0 if positive else value >= 0):
            return float(value)
        bound = "> 0" if positive else ">= 0"
        self.bad(path, f"must be a number of seconds {bound}, got {value!r}")
        return None

    def integer(self, path: str, value: Any, low: int, high: int | None = None) -> int | None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and value >= low and (high is None or value <= high):
            return int(value)
        top = "" if high is None else f" and <= {high}"
        self.bad(path, f"must be an int >= {low}{top}, got {value!r}")
        return None

    def boolean(self, path: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        self.bad(path, f"must be true or false, got {value!r}")
        return None

    def address(self, path: str, value: Any) -> None:
        if not isinstance(value, str) or not re.fullmatch(r"\[?[^\s\]]*\]?:\d{1,5}", value):
            self.bad(path, f"must be an address 'host:port', got {value!r}")

    def url(self, path: str, value: Any) -> None:
        if not isinstance(value, str) or not re.match(r"^http://[^/\s]+", value):
            self.bad(path, f"must be an http:// URL, got {value!r}")

    def command(self, path: str, value: Any) -> None:
        ok = (isinstance(value, str) and value.strip()) or (
            isinstance(value, list) and value and all(isinstance(x, str) for x in value)
        )
        if not ok:
            self.bad(path, f"must be a command: a string or a list of strings, got {value!r}")

    def function(self, path: str, value: Any) -> None:
        if not isinstance(value, str) or not re.fullmatch(r"[\w.]+:[\w.]+", value):
            self.bad(path, f"must be 'module:function', got {value!r}")

    def codes(self, path: str, value: Any, low: int, high: int) -> None:
        items = value if isinstance(value, list) else [value]
        if not items or not all(
            isinstance(x, int) and not isinstance(x, bool) and low <= x <= high for x in items
        ):
            self.bad(path, f"must be an int in [{low}, {high}] or a list of them, got {value!r}")


_COMMON_PROBE = {"name", "type", "timeout", "tolerance"}
_PROBE_FIELDS = {
    "http": ({"url", "method", "headers"}, {"url"}),
    "tcp": ({"address"}, {"address"}),
    "python": ({"function", "arguments"}, {"function"}),
    "process": ({"command"}, {"command"}),
}
_COMMON_ACTION = {"name", "type", "timeout", "background", "pause_after", "rollback"}
_ACTION_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "toxic": ({"proxy", "api", "toxic"}, {"proxy", "toxic"}),
    "proxy": ({"proxy", "api", "enabled"}, {"proxy", "enabled"}),
    "chaos": ({"env", "value", "file"}, set()),
    "kill": ({"pid", "pidfile", "pattern", "process", "signal"}, set()),
    "process": ({"command", "detach", "wait_for", "exit_code", "env"}, {"command"}),
    "load": ({"url", "rate", "duration", "method", "concurrency", "request_timeout"}, {"url"}),
    "sleep": ({"seconds"}, {"seconds"}),
    "python": ({"function", "arguments"}, {"function"}),
}


def _probe(check: _Checker, path: str, data: Any) -> Probe | None:
    if not isinstance(data, Mapping):
        check.bad(path, f"must be an object (a probe), got {data!r}")
        return None
    kind = data.get("type")
    if kind not in PROBE_TYPES:
        check.bad(f"{path}.type", f"must be one of {', '.join(PROBE_TYPES)}, got {kind!r}")
        return None
    extra, required = _PROBE_FIELDS[kind]
    check.fields(path, data, _COMMON_PROBE | extra, required | {"name"})
    name = data.get("name")
    if "name" in data:
        check.string(f"{path}.name", name)
    timeout = check.seconds(f"{path}.timeout", data.get("timeout", 2.0), positive=True)
    tolerance = data.get("tolerance")
    where = f"{path}.tolerance"
    if kind == "http":
        check.url(f"{path}.url", data.get("url"))
        if "method" in data and data["method"] not in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            check.bad(
                f"{path}.method", f"must be GET, HEAD, POST, PUT or DELETE, got {data['method']!r}"
            )
        if isinstance(tolerance, Mapping):
            check.fields(where, tolerance, {"status", "max_latency"}, set())
            if "status" in tolerance:
                check.codes(f"{where}.status", tolerance["status"], 100, 599)
            if "max_latency" in tolerance:
                check.seconds(f"{where}.max_latency", tolerance["max_latency"], positive=True)
        elif tolerance is not None:
            check.codes(where, tolerance, 100, 599)
    elif kind == "tcp":
        check.address(f"{path}.address", data.get("address"))
        if tolerance is not None:
            check.boolean(where, tolerance)
    elif kind == "python":
        check.function(f"{path}.function", data.get("function"))
        if "arguments" in data and not isinstance(data["arguments"], Mapping):
            check.bad(f"{path}.arguments", f"must be an object, got {data['arguments']!r}")
        if isinstance(tolerance, Mapping):
            check.fields(where, tolerance, {"min", "max"}, set())
            for key in ("min", "max"):
                if key in tolerance and not isinstance(tolerance[key], int | float):
                    check.bad(f"{where}.{key}", f"must be a number, got {tolerance[key]!r}")
    else:
        check.command(f"{path}.command", data.get("command"))
        if tolerance is not None:
            check.codes(where, tolerance, 0, 255)
    spec = {k: v for k, v in data.items() if k not in ("name", "type", "timeout")}
    return Probe(str(name), kind, timeout or 2.0, spec)


def _action(
    check: _Checker, path: str, data: Any, index: int, nested: bool = False
) -> Action | None:
    if not isinstance(data, Mapping):
        check.bad(path, f"must be an object (an action), got {data!r}")
        return None
    kind = data.get("type")
    if kind not in ACTION_TYPES:
        check.bad(f"{path}.type", f"must be one of {', '.join(ACTION_TYPES)}, got {kind!r}")
        return None
    extra, required = _ACTION_FIELDS[kind]
    check.fields(path, data, _COMMON_ACTION | extra, required)
    if "name" in data:
        check.string(f"{path}.name", data["name"])
    timeout = check.seconds(f"{path}.timeout", data.get("timeout", 30.0), positive=True)
    background = check.boolean(f"{path}.background", data.get("background", False))
    pause = check.seconds(f"{path}.pause_after", data.get("pause_after", 0.0))
    if kind == "toxic":
        check.string(f"{path}.proxy", data.get("proxy"))
        if "api" in data:
            check.url(f"{path}.api", data["api"])
        try:
            toxic_from_json(data.get("toxic"))
        except ValueError as exc:
            check.bad(f"{path}.toxic", str(exc))
    elif kind == "proxy":
        check.string(f"{path}.proxy", data.get("proxy"))
        if "api" in data:
            check.url(f"{path}.api", data["api"])
        check.boolean(f"{path}.enabled", data.get("enabled"))
    elif kind == "chaos":
        if ("env" in data) == ("file" in data):
            check.bad(path, "give exactly one of 'env' (a variable) or 'file' (a flag file)")
        if "env" in data:
            check.string(f"{path}.env", data["env"])
            value = data.get("value", "1")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                check.bad(f"{path}.value", f"must be a string or number, got {value!r}")
        if "file" in data:
            check.string(f"{path}.file", data["file"])
            if "value" in data and not isinstance(data["value"], str):
                check.bad(
                    f"{path}.value", f"must be a string (the file's content), got {data['value']!r}"
                )
    elif kind == "kill":
        targets = [k for k in ("pid", "pidfile", "pattern", "process") if k in data]
        if len(targets) != 1:
            check.bad(path, "give exactly one of pid, pidfile, pattern, process")
        if "pid" in data:
            check.integer(f"{path}.pid", data["pid"], 2)
        for key in ("pidfile", "process"):
            if key in data:
                check.string(f"{path}.{key}", data[key])
        if "pattern" in data:
            try:
                re.compile(str(data["pattern"]))
            except re.error as exc:
                check.bad(f"{path}.pattern", f"must be a regular expression: {exc}")
        sig = data.get("signal", "TERM")
        if not isinstance(sig, str) or sig.upper().removeprefix("SIG") not in SIGNALS:
            check.bad(f"{path}.signal", f"must be one of {', '.join(SIGNALS)}, got {sig!r}")
    elif kind == "process":
        check.command(f"{path}.command", data.get("command"))
        if "detach" in data:
            check.boolean(f"{path}.detach", data["detach"])
        if "wait_for" in data:
            check.address(f"{path}.wait_for", data["wait_for"])
        if "exit_code" in data:
            check.codes(f"{path}.exit_code", data["exit_code"], 0, 255)
        if "env" in data and not (
            isinstance(data["env"], Mapping)
            and all(isinstance(v, str) for v in data["env"].values())
        ):
            check.bad(f"{path}.env", f"must be an object of strings, got {data['env']!r}")
    elif kind == "load":
        check.url(f"{path}.url", data.get("url"))
        rate = data.get("rate", 10)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= 10_000:
            check.bad(f"{path}.rate", f"must be requests per second in (0, 10000], got {rate!r}")
        check.seconds(f"{path}.duration", data.get("duration", 1.0), positive=True)
        check.integer(f"{path}.concurrency", data.get("concurrency", 50), 1, 10_000)
        check.seconds(f"{path}.request_timeout", data.get("request_timeout", 2.0), positive=True)
    elif kind == "sleep":
        check.seconds(f"{path}.seconds", data.get("seconds"))
    elif kind == "python":
        check.function(f"{path}.function", data.get("function"))
        if "arguments" in data and not isinstance(data["arguments"], Mapping):
            check.bad(f"{path}.arguments", f"must be an object, got {data['arguments']!r}")
    rollback: Action | bool | None = None
    if "rollback" in data:
        raw = data["rollback"]
        if raw is False:
            rollback = False
        elif nested:
            check.bad(f"{path}.rollback", "a rollback cannot have its own rollback")
        else:
            rollback = _action(check, f"{path}.rollback", raw, 0, nested=True)
    name = data.get("name") or f"{kind}-{index + 1}"
    spec = {k: v for k, v in data.items() if k not in _COMMON_ACTION}
    return Action(str(name), kind, spec, timeout or 30.0, bool(background), pause or 0.0, rollback)


def parse_experiment(data: Any, source: str = "<experiment>") -> Experiment:
    """Validate a decoded experiment (a dict from YAML or JSON).

    Raises:
        ExperimentInvalidError: with every problem found, each naming its path.
    """
    check = _Checker()
    if not isinstance(data, Mapping):
        raise ExperimentInvalidError(
            [f"(top): must be an object, got {type(data).__name__}"], source
        )
    check.fields(
        "",
        data,
        {"title", "description", "proxy", "hypothesis", "method", "rollbacks"},
        {"title", "method"},
    )
    title = data.get("title")
    if "title" in data:
        check.string("title", title)
    if "description" in data:
        check.string("description", data["description"], empty=True)
    proxy_api = data.get("proxy")
    if proxy_api is not None:
        check.url("proxy", proxy_api)
    hypothesis = None
    raw_h = data.get("hypothesis")
    if raw_h is not None:
        if not isinstance(raw_h, Mapping):
            check.bad("hypothesis", f"must be an object, got {raw_h!r}")
        else:
            check.fields("hypothesis", raw_h, {"title", "probes", "during"}, {"probes"})
            probes_raw = raw_h.get("probes")
            probes: list[Probe] = []
            if not isinstance(probes_raw, list) or not probes_raw:
                check.bad("hypothesis.probes", "must be a non-empty list of probes")
            else:
                for i, item in enumerate(probes_raw):
                    probe = _probe(check, f"hypothesis.probes[{i}]", item)
                    if probe is not None:
                        probes.append(probe)
                names = [p.name for p in probes]
                for dup in sorted({n for n in names if names.count(n) > 1}):
                    check.bad("hypothesis.probes", f"probe names must be unique; {dup!r} repeats")
            during = None
            raw_d = raw_h.get("during")
            if raw_d is not None:
                if not isinstance(raw_d, Mapping):
                    check.bad("hypothesis.during", f"must be an object, got {raw_d!r}")
                else:
                    check.fields("hypothesis.during", raw_d, {"interval", "abort_after"}, set())
                    interval = check.seconds(
                        "hypothesis.during.interval", raw_d.get("interval", 1.0), positive=True
                    )
                    abort_after = raw_d.get("abort_after")
                    if abort_after is not None:
                        abort_after = check.integer("hypothesis.during.abort_after", abort_after, 1)
                    during = Continuous(interval or 1.0, abort_after)
            hypothesis = Hypothesis(str(raw_h.get("title", "steady state")), tuple(probes), during)
    method: list[Action] = []
    raw_m = data.get("method")
    if "method" in data:
        if not isinstance(raw_m, list) or not raw_m:
            check.bad("method", "must be a non-empty list of actions")
        else:
            for i, item in enumerate(raw_m):
                action = _action(check, f"method[{i}]", item, i)
                if action is not None:
                    method.append(action)
    rollbacks: list[Action] = []
    raw_r = data.get("rollbacks", [])
    if not isinstance(raw_r, list):
        check.bad("rollbacks", "must be a list of actions")
    else:
        for i, item in enumerate(raw_r):
            action = _action(check, f"rollbacks[{i}]", item, i, nested=True)
            if action is not None:
                rollbacks.append(action)
    if check.problems:
        raise ExperimentInvalidError(check.problems, source)
    return Experiment(
        title=str(title),
        method=tuple(method),
        hypothesis=hypothesis,
        rollbacks=tuple(rollbacks),
        description=str(data.get("description", "")),
        proxy_api=proxy_api,
        source=source,
        raw=dict(data),
    )


def load_experiment(path: str | os.PathLike[str]) -> Experiment:
    """Read and validate an experiment file (``.json``, or ``.yaml``/``.yml`` with PyYAML).

    Raises:
        ExperimentInvalidError: unreadable, undecodable or invalid; every problem listed.
    """
    file = Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentInvalidError(
            [f"(file): cannot read it: {exc.strerror or exc}"], source
        ) from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExperimentInvalidError(
                [f"(file): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"],
                source,
            ) from None
    else:
        try:
            import yaml
        except ImportError:
            raise ExperimentInvalidError(
                ["(file): reading YAML needs PyYAML: pip install 'buttress[chaos]' (or use .json)"],
                source,
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ExperimentInvalidError([f"(file): not valid YAML: {exc}"], source) from None
    return parse_experiment(data, source)


def signal_number(name: str) -> int:
    """``"TERM"``/``"SIGTERM"`` → ``signal.SIGTERM``."""
    return int(getattr(signal, "SIG" + name.upper().removeprefix("SIG")))
