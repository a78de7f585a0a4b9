"""The errors a balancer raises, under :class:`~buttress.RejectedError`::

ButtressError
└── RejectedError
    └── NoHealthyEndpointError   no endpoint may take the request (all ejected / unhealthy)
"""

from __future__ import annotations

from .._errors import RejectedError

__all__ = ["NoHealthyEndpointError"]


class NoHealthyEndpointError(RejectedError):
    """The balancer has no endpoint it may send this request to.

    Raised by ``Balancer.pick()`` / ``call()`` when every endpoint is ejected or
    unhealthy and the panic mode is ``"fail"`` (or ``panic_threshold`` is 0), and by the
    ``"hash"`` strategy when none of the key's candidate endpoints is available. Nothing
    was sent. ``retry_after`` is the time until the first ejected endpoint returns,
    when known; ``policy`` is the balancer's ``name``.

    Example::

        try:
            async with balancer.pick() as ep:
                ...
        except bt.NoHealthyEndpointError as exc:
            return cached_answer   # exc.retry_after: when an endpoint comes back
    """
