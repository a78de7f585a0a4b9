"""The consumer's decisions, pure: what to do with a message that arrived or failed.

No I/O and no clock: the consumer carries the decisions out. Tested with hypothesis.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Literal

from .._backoff import Backoff
from ._errors import Reject, Requeue

__all__ = ["Settlement", "on_arrival", "on_failure"]


@dataclass(frozen=True, slots=True)
class Settlement:
    """A decision: ``action`` is ``"retry"`` (after ``delay`` seconds) or
    ``"dead_letter"`` (``reason`` says why)."""

    action: Literal["retry", "dead_letter"]
    delay: float = 0.0
    reason: str = ""


def on_arrival(deliveries: int, max_deliveries: int | None) -> Settlement | None:
    """``None`` to run the handler; a dead-letter decision for a message delivered more
    than ``max_deliveries`` times already (its earlier deliveries crashed)."""
    if max_deliveries is not None and deliveries > max_deliveries:
        return Settlement("dead_letter", reason="redelivered")
    return None


def on_failure(
    deliveries: int,
    error: BaseException,
    *,
    max_deliveries: int | None,
    backoff: Backoff,
    rng: _random.Random,
    max_delay: float | None = None,
) -> Settlement:
    """Settle a failed delivery number ``deliveries``.

    * :class:`Reject` → dead-letter now (its ``reason``);
    * delivery ``max_deliveries`` reached → dead-letter (``"max_deliveries"``);
    * :class:`Requeue` with a delay → retry after it; otherwise retry after
      ``backoff.compute(deliveries, ...)``; either capped at ``max_delay``.
    """
    if isinstance(error, Reject):
        return Settlement("dead_letter", reason=error.reason)
    if max_deliveries is not None and deliveries >= max_deliveries:
        return Settlement("dead_letter", reason="max_deliveries")
    if isinstance(error, Requeue) and error.delay is not None:
        delay = max(0.0, float(error.delay))
    else:
        delay = backoff.compute(max(deliveries, 1), 0.0, rng)
    if max_delay is not None:
        delay = min(delay, max_delay)
    return Settlement("retry", delay=delay)
