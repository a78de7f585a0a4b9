"""Chaos experiments: a steady-state hypothesis, a method that injects faults, rollbacks.

Write one in YAML (with the ``chaos`` extra: PyYAML) or JSON, check it with
``buttress experiment validate FILE`` and run it with ``buttress experiment run FILE
--journal journal.json``. See ``docs/experiments.md`` for the format.

Example::

    from buttress.chaos.experiment import load_experiment, run_experiment

    journal = await run_experiment(load_experiment("redis-latency.yaml"))
    print(journal["status"], journal["deviated"])
"""

from .._errors import ExperimentInvalidError
from ._model import (
    ACTION_TYPES,
    PROBE_TYPES,
    Action,
    Continuous,
    Experiment,
    Hypothesis,
    Probe,
    load_experiment,
    parse_experiment,
)
from ._run import ActionFailedError, Runner, run_experiment

__all__ = [
    "ACTION_TYPES",
    "PROBE_TYPES",
    "Action",
    "ActionFailedError",
    "Continuous",
    "Experiment",
    "ExperimentInvalidError",
    "Hypothesis",
    "Probe",
    "Runner",
    "load_experiment",
    "parse_experiment",
    "run_experiment",
]
