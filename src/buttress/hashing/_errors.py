"""The errors of :mod:`buttress.hashing`, under :class:`~buttress.ButtressError`::

ButtressError
├── ConfigError                     bad constructor option or argument (no nodes, a
│                                   duplicate node, weight <= 0, n out of range)
└── HashingError                    a hashing structure cannot do what was asked
    ├── NoNodesError                (also a LookupError) a lookup on an empty structure
    ├── UnknownNodeError            (also a KeyError) remove/release of a node not present
    └── UnsupportedOperationError   the algorithm cannot do this (JumpHash removing a
                                    node other than the last, ranges of a non-ring plan)
"""

from __future__ import annotations

from .._errors import ButtressError

__all__ = ["HashingError", "NoNodesError", "UnknownNodeError", "UnsupportedOperationError"]


class HashingError(ButtressError):
    """A consistent-hashing structure could not do what was asked.

    Example::

        try:
            ring.remove("cache-9")
        except bt.HashingError as exc:
            print(exc)   # HashRing has no node 'cache-9'; nodes: 'cache-1', 'cache-2'
    """


class NoNodesError(HashingError, LookupError):
    """A key was looked up while the structure held no node (every node was removed).

    Example::

        ring = HashRing(["a"])
        ring.remove("a")
        ring.node_for("k")   # NoNodesError: HashRing has no nodes to map 'k' to
    """


class UnknownNodeError(HashingError, KeyError):
    """``remove(node)`` (or ``release(node)``) named a node that is not present.

    ``node`` is the node that was asked for.

    Example::

        try:
            ring.remove("gone")
        except KeyError:   # UnknownNodeError is a KeyError too
            pass
    """

    def __init__(self, message: str = "", *, node: str = "") -> None:
        super().__init__(message)
        self.node = node

    def __str__(self) -> str:
        # KeyError.__str__ shows the repr of its argument; we want the plain message.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_unknown, (str(self), self.node))


def _rebuild_unknown(message: str, node: str) -> UnknownNodeError:
    return UnknownNodeError(message, node=node)


class UnsupportedOperationError(HashingError):
    """The algorithm cannot do this operation without breaking its guarantees.

    Raised by :class:`~buttress.hashing.JumpHash` when removing a node other than the
    last (jump hash numbers its buckets ``0..n-1``; removing a middle bucket would remap
    most keys), and by :attr:`ReshardPlan.ranges` when the plan is not between two
    compatible hash rings.

    Example::

        jump = JumpHash(["a", "b", "c"])
        jump.remove("a")   # UnsupportedOperationError: JumpHash can only remove its last node ...
    """
