"""The protocol every placement algorithm implements, and the validation they share."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from .._errors import ConfigError
from .._validate import fail
from ._errors import NoNodesError, UnknownNodeError
from ._hash import HashFunction, Key

__all__ = ["ConsistentHash"]


@runtime_checkable
class ConsistentHash(Protocol):
    """What :class:`HashRing`, :class:`JumpHash`, :class:`Rendezvous`, :class:`Maglev`
    and :class:`BoundedLoad` have in common: keys to nodes, stable as nodes come and go.

    Nodes are non-empty strings (a host name, ``"host:port"``, a shard name): a node's
    name is what its placement is hashed from, so it must be the same in every process.

    - ``node_for(key)``: the node that owns ``key``.
    - ``nodes_for(key, n)``: ``n`` distinct nodes in preference order (the owner first),
      for replicas or fallbacks; ``1 <= n <= len(nodes)``.
    - ``preference(key)``: every node, lazily, in the same preference order.
    - ``add(node, weight=1.0)`` / ``remove(node)``: change the node set; weights are
      relative (``2.0`` takes about twice the keys of ``1.0``) where the algorithm has
      them, and a :class:`~buttress.ConfigError` where it does not.
    - ``nodes`` (tuple) and ``weights`` (mapping): the current node set.

    Lookups never block and are safe from any thread while another thread adds or
    removes nodes (a change builds new lookup state and swaps it in one assignment).

    Example::

        def owner(placement: ConsistentHash, user_id: int) -> str:
            return placement.node_for(user_id)
    """

    @property
    def nodes(self) -> tuple[str, ...]: ...

    @property
    def weights(self) -> Mapping[str, float]: ...

    def node_for(self, key: Key) -> str: ...

    def nodes_for(self, key: Key, n: int) -> list[str]: ...

    def preference(self, key: Key) -> Iterator[str]: ...

    def add(self, node: str, weight: float = 1.0) -> None: ...

    def remove(self, node: str) -> None: ...

    def __len__(self) -> int: ...

    def __contains__(self, node: object) -> bool: ...


def check_node(node: object, argument: str = "node") -> str:
    if not isinstance(node, str) or not node:
        raise fail(argument, "a non-empty str", node)
    return node


def check_weight(weight: object, node: str) -> float:
    if (
        not isinstance(weight, int | float)
        or isinstance(weight, bool)
        or math.isnan(weight)
        or math.isinf(weight)
        or weight <= 0
    ):
        raise fail(f"weight of node {node!r}", "a finite number > 0", weight)
    return float(weight)


def parse_nodes(nodes: object, kind: str) -> dict[str, float]:
    """``nodes`` as an ordered ``{node: weight}``: an iterable of names (weight 1.0) or a
    mapping of name to weight. Empty, repeated or badly typed nodes raise ConfigError."""
    result: dict[str, float] = {}
    if isinstance(nodes, Mapping):
        items: Iterable[tuple[object, object]] = nodes.items()
    elif isinstance(nodes, str | bytes) or not isinstance(nodes, Iterable):
        raise fail("nodes", "an iterable of node names or a mapping of node name to weight", nodes)
    else:
        items = ((node, 1.0) for node in nodes)
    for node, weight in items:
        name = check_node(node, "each node")
        if name in result:
            raise ConfigError(f"nodes must not repeat a node, got {name!r} twice")
        result[name] = check_weight(weight, name)
    if not result:
        raise ConfigError(f"nodes must hold at least one node for {kind}, got {nodes!r}")
    return result


def check_n(n: object, count: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= max(count, 1):
        raise fail("n", f"an int in [1, {count}] (the number of nodes)", n)
    return n


def check_hash(fn: object) -> HashFunction | None:
    if fn is None:
        return None
    if not callable(fn):
        raise fail("hash", "a callable from bytes to an int in [0, 2**64), or None", fn)
    probe = fn(b"buttress")
    if not isinstance(probe, int) or isinstance(probe, bool) or not 0 <= probe < 1 << 64:
        raise fail("hash", "a callable returning an int in [0, 2**64)", probe)
    return fn


def no_nodes(kind: str, key: object) -> NoNodesError:
    return NoNodesError(f"{kind} has no nodes to map {key!r} to")


def unknown(kind: str, node: object, nodes: Iterable[str]) -> UnknownNodeError:
    known = ", ".join(repr(n) for n in nodes) or "none"
    return UnknownNodeError(f"{kind} has no node {node!r}; nodes: {known}", node=str(node))


def duplicate(kind: str, node: str) -> ConfigError:
    return ConfigError(f"node {node!r} is already in this {kind}; remove it first")
