"""Checking what Redis answered: anything unexpected is a StoreError, never a crash."""

from __future__ import annotations

from typing import Any

from ..._errors import StoreError
from ...ratelimit._gcra import Decision, RateSpec, make

__all__ = ["gcra_decision"]

_US = 1e-6


def gcra_decision(reply: Any, spec: RateSpec) -> Decision:
    """Turn the gcra.lua reply into a Decision, or raise StoreError if it is garbage."""
    # Plain checks, no generators: a batch parses a hundred of these per round trip.
    if reply.__class__ is list and len(reply) == 5:
        allowed, remaining, retry_after, reset_after, wait = reply
        if (
            allowed.__class__ is int
            and remaining.__class__ is int
            and retry_after.__class__ is int
            and reset_after.__class__ is int
            and wait.__class__ is int
            and (allowed == 0 or allowed == 1)
            and remaining >= 0
            and retry_after >= 0
            and reset_after >= 0
            and wait >= 0
        ):
            return make(
                allowed == 1,
                spec.burst,
                remaining,
                retry_after * _US,
                reset_after * _US,
                wait * _US,
            )
    raise StoreError(f"unexpected reply from Redis for a rate-limit step: {reply!r:.200}")
