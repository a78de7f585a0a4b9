"""Rendezvous (highest random weight) hashing, weighted (Thaler & Ravishankar; Schindelhauer
& Schomaker's logarithmic method)."""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from ._hash import MASK64, HashFunction, Key, blake2b64, key_bytes, key_hasher
from ._protocol import (
    check_hash,
    check_n,
    check_node,
    check_weight,
    duplicate,
    no_nodes,
    parse_nodes,
    unknown,
)

__all__ = ["Rendezvous"]

_KIND = "Rendezvous"
_SCALE = 1.0 / 18446744073709551616.0  # 2**-64


def _score(h: int, seed: int) -> int:
    # SplitMix64's finalizer over key ^ node: a fast, well-mixed per-(key, node) draw.
    z = h ^ seed
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class Rendezvous:
    """Rendezvous (highest-random-weight) hashing: each node scores each key, and the
    highest score wins.

    No table and no virtual nodes: a lookup scores every node (O(n), fine up to a few
    dozen nodes; prefer :class:`HashRing` or :class:`Maglev` beyond). Removing a node
    moves only its keys, spread evenly over the rest; adding one takes ``w/W`` of the keys
    from every node in proportion. ``nodes_for`` is the top ``n`` scores: the natural
    replica set, and the order a key fails over in.

    Weights use the logarithmic method: a node's score is ``-weight / ln(u)`` with ``u``
    its uniform draw in (0, 1), so node ``i`` wins ``weight_i / total`` of the keys exactly
    in expectation, and changing one weight moves keys only to or from that node.

    Arguments:
        nodes: node names (weight 1.0) or a mapping ``{node: weight}`` (weights > 0).
        hash: a :class:`~buttress.hashing.HashFunction` for keys and node seeds (default:
            :func:`~buttress.hashing.crc32fib` for keys, BLAKE2b-64 for node names).

    Raises:
        ConfigError: no nodes, a repeated node, or a weight that is not > 0.

    Example::

        hrw = Rendezvous({"a": 1.0, "b": 1.0, "c": 2.0})
        hrw.node_for("user:42")        # 'c' (c owns about half of the keys)
        hrw.nodes_for("user:42", 2)    # ['c', 'a']
    """

    __slots__ = ("_custom", "_hash", "_lock", "_point_hash", "_state", "_weights")

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float],
        *,
        hash: HashFunction | None = None,
    ) -> None:
        fn = check_hash(hash)
        self._custom = fn
        self._hash = key_hasher(fn)
        self._point_hash: HashFunction = fn if fn is not None else blake2b64
        self._lock = threading.Lock()
        self._weights = MappingProxyType(parse_nodes(nodes, _KIND))
        # (((seed, node, weight), ...), all weights equal): rebuilt on every change.
        self._state: tuple[tuple[tuple[int, str, float], ...], bool] = ((), True)
        self._rebuild()

    def node_for(self, key: Key) -> str:
        """The node with the highest score for ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: every node was removed.

        Example::

            hrw.node_for("user:42")
        """
        entries, uniform = self._state
        h = self._hash(key)
        best = ""
        if uniform:
            top = -1
            for seed, node, _ in entries:
                z = h ^ seed
                z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
                z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
                z ^= z >> 31
                if z >= top:
                    top, best = z, node
        else:
            top_w = -math.inf
            log = math.log
            for seed, node, weight in entries:
                score = -weight / log((_score(h, seed) + 0.5) * _SCALE)
                if score >= top_w:  # ties: the larger name, as nodes_for's sort does
                    top_w, best = score, node
        if not best:
            raise no_nodes(_KIND, key)
        return best

    def nodes_for(self, key: Key, n: int) -> list[str]:
        """The ``n`` highest-scoring nodes for ``key``, best first.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many nodes, ``1 <= n <= len(nodes)``.

        Raises:
            ConfigError: ``n`` out of range.
            NoNodesError: no nodes.

        Example::

            hrw.nodes_for("user:42", 2)
        """
        entries, uniform = self._state
        if not entries:
            raise no_nodes(_KIND, key)
        check_n(n, len(entries))
        scored = self._scores(key, entries, uniform)
        return [node for _, node in heapq.nlargest(n, scored)]

    def preference(self, key: Key) -> Iterator[str]:
        """Every node once, by decreasing score for ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: no nodes.

        Example::

            list(hrw.preference("user:42"))   # ['c', 'a', 'b']
        """
        entries, uniform = self._state
        if not entries:
            raise no_nodes(_KIND, key)
        scored = self._scores(key, entries, uniform)
        scored.sort(reverse=True)
        return iter([node for _, node in scored])

    def _scores(
        self, key: Key, entries: tuple[tuple[int, str, float], ...], uniform: bool
    ) -> list[tuple[float, str]]:
        h = self._hash(key)
        if uniform:
            return [(_score(h, seed), node) for seed, node, _ in entries]
        log = math.log
        # Ties break on the node name, the same in every process.
        return [
            (-weight / log((_score(h, seed) + 0.5) * _SCALE), node)
            for seed, node, weight in entries
        ]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._weights)

    @property
    def weights(self) -> Mapping[str, float]:
        """A read-only snapshot ``{node: weight}`` (the same object until the next change)."""
        return self._weights

    def add(self, node: str, weight: float = 1.0) -> None:
        """Add ``node`` with ``weight`` (default 1.0).

        Arguments:
            node: a new node name.
            weight: its relative share, a number > 0.

        Raises:
            ConfigError: the node is present, or a bad name or weight.

        Example::

            hrw.add("d", weight=0.5)
        """
        check_node(node)
        w = check_weight(weight, node)
        with self._lock:
            if node in self._weights:
                raise duplicate(_KIND, node)
            self._weights = MappingProxyType({**self._weights, node: w})
            self._rebuild()

    def remove(self, node: str) -> None:
        """Remove ``node``; only its keys move.

        Arguments:
            node: a present node.

        Raises:
            UnknownNodeError: the node is not present (also a ``KeyError``).

        Example::

            hrw.remove("b")
        """
        with self._lock:
            if node not in self._weights:
                raise unknown(_KIND, node, self._weights)
            self._weights = MappingProxyType({n: w for n, w in self._weights.items() if n != node})
            self._rebuild()

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, node: object) -> bool:
        return node in self._weights

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (dict(self._weights), self._custom))

    def __repr__(self) -> str:
        return f"Rendezvous({dict(self._weights)!r})"

    def _rebuild(self) -> None:
        fn = self._point_hash
        # Sorted by name so that a tie goes the same way whatever the insertion order.
        entries = tuple(
            (fn(key_bytes(node)), node, weight) for node, weight in sorted(self._weights.items())
        )
        uniform = len({w for _, _, w in entries}) <= 1
        self._state = (entries, uniform)


def _rebuild(weights: dict[str, float], fn: HashFunction | None) -> Rendezvous:
    placement = Rendezvous(weights or {"-": 1.0}, hash=fn)
    if not weights:
        placement.remove("-")
    return placement
