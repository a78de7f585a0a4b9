"""Jump consistent hash (Lamping & Veach, 2014): no memory, near-perfect spread."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from .._errors import ConfigError
from ._errors import UnsupportedOperationError
from ._hash import MASK64, HashFunction, Key, key_hasher, mix64
from ._protocol import check_hash, check_n, check_node, duplicate, no_nodes, parse_nodes, unknown

__all__ = ["JumpHash"]

_KIND = "JumpHash"


def jump(key: int, buckets: int) -> int:
    """The bucket in ``[0, buckets)`` of a 64-bit ``key`` (the paper's algorithm)."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & MASK64
        j = int((b + 1) * (2147483648.0 / ((key >> 33) + 1)))
    return b


class JumpHash:
    """Jump consistent hash: keys to ``n`` numbered buckets, one node per bucket.

    It needs no table and spreads keys almost perfectly evenly (max/mean ~1.0), and
    growing from ``n`` to ``n + 1`` nodes moves exactly the ``1/(n+1)`` share of keys the
    new node takes. The price: buckets are numbered, so nodes can only be **added or
    removed at the end**. Use it for shards you only ever grow (or shrink from the top);
    use :class:`HashRing`, :class:`Rendezvous` or :class:`Maglev` where any node may go.

    Node order matters: ``nodes[i]`` is bucket ``i``. There are no weights.

    Arguments:
        nodes: node names, in bucket order.
        hash: a :class:`~buttress.hashing.HashFunction` for keys (default
            :func:`~buttress.hashing.crc32fib`).

    Raises:
        ConfigError: no nodes, a repeated node, or a weight other than 1.

    Example::

        shards = JumpHash(["shard-0", "shard-1", "shard-2"])
        shards.node_for(12345)      # 'shard-0'
        shards.add("shard-3")        # ~1/4 of the keys move, all to shard-3
        shards.remove("shard-3")     # fine: the last node
        shards.remove("shard-0")     # UnsupportedOperationError: not the last node
    """

    __slots__ = ("_fn", "_hash", "_lock", "_nodes", "_view")

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float],
        *,
        hash: HashFunction | None = None,
    ) -> None:
        self._fn = check_hash(hash)
        self._hash = key_hasher(self._fn)
        parsed = parse_nodes(nodes, _KIND)
        for node, weight in parsed.items():
            if weight != 1.0:
                raise _no_weights(node, weight)
        self._lock = threading.Lock()
        self._nodes: tuple[str, ...] = tuple(parsed)
        self._view: Mapping[str, float] = MappingProxyType(parsed)

    def node_for(self, key: Key) -> str:
        """The node owning ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: every node was removed.

        Example::

            shards.node_for("user:42")
        """
        nodes = self._nodes
        if not nodes:
            raise no_nodes(_KIND, key)
        return nodes[jump(self._hash(key), len(nodes))]

    def nodes_for(self, key: Key, n: int) -> list[str]:
        """``n`` distinct nodes for ``key``: the owner, then nodes picked by jumping on
        re-hashes of the key (deterministic; each replica is itself a jump hash, so it
        moves little when nodes are added).

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many nodes, ``1 <= n <= len(nodes)``.

        Raises:
            ConfigError: ``n`` out of range.
            NoNodesError: no nodes.

        Example::

            shards.nodes_for("user:42", 2)
        """
        if not self._nodes:
            raise no_nodes(_KIND, key)
        check_n(n, len(self._nodes))
        result: list[str] = []
        for node in self.preference(key):
            result.append(node)
            if len(result) == n:
                break
        return result

    def preference(self, key: Key) -> Iterator[str]:
        """Every node once, in preference order for ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: no nodes.

        Example::

            next(shards.preference("user:42")) == shards.node_for("user:42")
        """
        nodes = self._nodes
        count = len(nodes)
        if not count:
            raise no_nodes(_KIND, key)
        h = self._hash(key)
        seen: set[int] = set()
        # Salted re-hashes find new buckets quickly while few are taken; past a few
        # rounds per node (all but a few taken) walk the rest in bucket order, so a
        # full preference list costs O(n log n), not a coupon collector's tail.
        salt = 0
        while len(seen) < count and salt < 4 * count:
            bucket = jump(h if salt == 0 else mix64(h + salt), count)
            salt += 1
            if bucket not in seen:
                seen.add(bucket)
                yield nodes[bucket]
        start = jump(h, count)
        for step in range(1, count + 1):
            bucket = (start + step) % count
            if bucket not in seen:
                seen.add(bucket)
                yield nodes[bucket]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes in bucket order."""
        return self._nodes

    @property
    def weights(self) -> Mapping[str, float]:
        """``{node: 1.0}``: jump hash has no weights."""
        return self._view

    def add(self, node: str, weight: float = 1.0) -> None:
        """Append ``node`` as the next bucket.

        Arguments:
            node: a new node name.
            weight: must be 1 (jump hash has no weights).

        Raises:
            ConfigError: the node is present, or ``weight`` is not 1.

        Example::

            shards.add("shard-3")
        """
        check_node(node)
        if weight != 1.0 or isinstance(weight, bool):
            raise _no_weights(node, weight)
        with self._lock:
            if node in self._nodes:
                raise duplicate(_KIND, node)
            self._nodes = (*self._nodes, node)
            self._view = MappingProxyType(dict.fromkeys(self._nodes, 1.0))

    def remove(self, node: str) -> None:
        """Remove ``node``, which must be the last bucket.

        Arguments:
            node: the last node.

        Raises:
            UnknownNodeError: the node is not present.
            UnsupportedOperationError: it is not the last node.

        Example::

            shards.remove(shards.nodes[-1])
        """
        with self._lock:
            if node not in self._nodes:
                raise unknown(_KIND, node, self._nodes)
            if node != self._nodes[-1]:
                raise UnsupportedOperationError(
                    f"JumpHash can only remove its last node ({self._nodes[-1]!r}), not "
                    f"{node!r}: jump hash numbers its buckets, and removing bucket "
                    f"{self._nodes.index(node)} would remap most keys; use HashRing, "
                    "Rendezvous or Maglev when any node may leave"
                )
            self._nodes = self._nodes[:-1]
            self._view = MappingProxyType(dict.fromkeys(self._nodes, 1.0))

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self._nodes, self._fn))

    def __repr__(self) -> str:
        return f"JumpHash({list(self._nodes)!r})"


def _no_weights(node: str, weight: object) -> ConfigError:
    return ConfigError(
        f"weight of node {node!r} must be 1 (JumpHash has no weights; use HashRing, "
        f"Rendezvous or Maglev for weighted nodes), got {weight!r}"
    )


def _rebuild(nodes: tuple[str, ...], fn: HashFunction | None) -> JumpHash:
    placement = JumpHash(nodes or ("-",), hash=fn)
    if not nodes:
        placement.remove("-")
    return placement
