"""Maglev hashing (Eisenbud et al., NSDI 2016): a prime-sized lookup table."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from hashlib import blake2b
from types import MappingProxyType

from .._validate import fail, integer
from ._hash import HashFunction, Key, key_bytes, key_hasher
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

__all__ = ["Maglev"]

_KIND = "Maglev"


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _populate(
    nodes: list[str], weights: list[float], size: int, fn: HashFunction | None
) -> list[str]:
    """The paper's table population, weighted: every node walks its own permutation of
    the slots (``offset + j * skip mod size``) and, turn by turn, takes the next free
    slot. A node of weight ``w`` takes a turn in ``w / max_weight`` of the rounds."""
    count = len(nodes)
    offsets: list[int] = []
    skips: list[int] = []
    for node in nodes:
        data = key_bytes(node)
        if fn is None:
            digest = blake2b(data, digest_size=16).digest()
            h1 = int.from_bytes(digest[:8], "little")
            h2 = int.from_bytes(digest[8:], "little")
        else:
            h1, h2 = fn(data), fn(data + b"#skip")
        offsets.append(h1 % size)
        skips.append(h2 % (size - 1) + 1)
    top = max(weights)
    shares = [w / top for w in weights]
    credit = [0.0] * count
    table: list[int] = [-1] * size
    position = offsets[:]  # the next slot each node tries
    filled = 0
    while True:
        for i in range(count):
            credit[i] += shares[i]
            if credit[i] < 1.0:
                continue
            credit[i] -= 1.0
            c = position[i]
            skip = skips[i]
            while table[c] >= 0:
                c += skip
                if c >= size:
                    c -= size
            table[c] = i
            c += skip
            position[i] = c - size if c >= size else c
            filled += 1
            if filled == size:
                return [nodes[i] for i in table]


class Maglev:
    """Maglev hashing: a lookup table of ``table_size`` slots filled from each node's own
    permutation, so a lookup is one hash and one index.

    The fastest lookup here and a near-even spread (each node gets ``size/n`` slots, give
    or take one); the cost is memory (one reference per slot) and rebuild time on change
    (tens of ms for 65537 slots in CPython). Disruption on change is small but not
    minimal: besides the removed node's slots, about 1-2 % of other slots change owner,
    which is the paper's trade of a little disruption for perfect balance.

    Arguments:
        nodes: node names (weight 1.0) or a mapping ``{node: weight}`` (weights > 0; a
            node of weight ``w`` fills ``w / max_weight`` of the turns).
        table_size: a prime (default 65537), much larger than the number of nodes (the
            paper uses at least 100x) and at least the number of nodes.
        hash: a :class:`~buttress.hashing.HashFunction` for keys and permutations
            (default: :func:`~buttress.hashing.crc32fib` for keys, BLAKE2b for nodes).

    Raises:
        ConfigError: no nodes, a repeated node, a weight that is not > 0, a
            ``table_size`` that is not a prime, or more nodes than slots.

    Example::

        lb = Maglev(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        lb.node_for("flow:1234")       # one table lookup
        lb.nodes_for("flow:1234", 2)   # the owner, then the next distinct owner in the table
    """

    __slots__ = ("_fn", "_hash", "_lock", "_size", "_state", "_weights")

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float],
        table_size: int = 65537,
        *,
        hash: HashFunction | None = None,
    ) -> None:
        size = integer("table_size", table_size, minimum=2)
        if not _is_prime(size):
            raise fail("table_size", "a prime number (e.g. 65537, 655373)", table_size)
        self._size = size
        fn = check_hash(hash)
        self._fn = fn
        self._hash = key_hasher(fn)
        self._lock = threading.Lock()
        weights = parse_nodes(nodes, _KIND)
        self._check_room(len(weights))
        self._weights = MappingProxyType(weights)
        # (the table, the nodes it was built from): replaced whole on every change.
        self._state: tuple[list[str], tuple[str, ...]] = ([], ())
        self._rebuild()

    def node_for(self, key: Key) -> str:
        """The node in ``key``'s slot.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: every node was removed.

        Example::

            lb.node_for("flow:1234")
        """
        table = self._state[0]
        try:
            return table[self._hash(key) % self._size]
        except IndexError:
            raise no_nodes(_KIND, key) from None

    def nodes_for(self, key: Key, n: int) -> list[str]:
        """``n`` distinct nodes: the owner of ``key``'s slot, then the owners of the
        following slots, skipping repeats.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many nodes, ``1 <= n <= len(nodes)``.

        Raises:
            ConfigError: ``n`` out of range.
            NoNodesError: no nodes.

        Example::

            lb.nodes_for("flow:1234", 2)
        """
        table, nodes = self._state
        if not table:
            raise no_nodes(_KIND, key)
        check_n(n, len(nodes))
        result: list[str] = []
        for node in self.preference(key):
            result.append(node)
            if len(result) == n:
                break
        return result

    def preference(self, key: Key) -> Iterator[str]:
        """Every node once: the slot owner, then the next distinct owners in the table.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: no nodes.

        Example::

            next(lb.preference("flow:1234")) == lb.node_for("flow:1234")
        """
        table, nodes = self._state
        if not table:
            raise no_nodes(_KIND, key)
        size = len(table)
        total = len(nodes)
        start = self._hash(key) % size
        seen: set[str] = set()
        for step in range(size):
            node = table[(start + step) % size]
            if node not in seen:
                seen.add(node)
                yield node
                if len(seen) == total:
                    return
        # A node whose weight is tiny next to the others may win no slot at all: it owns
        # no key but still counts as a replica target.
        for node in nodes:
            if node not in seen:
                yield node

    @property
    def table_size(self) -> int:
        """The number of slots (a prime)."""
        return self._size

    @property
    def table(self) -> tuple[str, ...]:
        """The lookup table: the node of each slot."""
        return tuple(self._state[0])

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._weights)

    @property
    def weights(self) -> Mapping[str, float]:
        """A read-only snapshot ``{node: weight}`` (the same object until the next change)."""
        return self._weights

    def add(self, node: str, weight: float = 1.0) -> None:
        """Add ``node`` with ``weight`` (default 1.0) and rebuild the table.

        Arguments:
            node: a new node name.
            weight: its relative share, a number > 0.

        Raises:
            ConfigError: the node is present, a bad name or weight, or no room left.

        Example::

            lb.add("10.0.0.4")
        """
        check_node(node)
        w = check_weight(weight, node)
        with self._lock:
            if node in self._weights:
                raise duplicate(_KIND, node)
            self._check_room(len(self._weights) + 1)
            self._weights = MappingProxyType({**self._weights, node: w})
            self._rebuild()

    def remove(self, node: str) -> None:
        """Remove ``node`` and rebuild the table.

        Arguments:
            node: a present node.

        Raises:
            UnknownNodeError: the node is not present (also a ``KeyError``).

        Example::

            lb.remove("10.0.0.2")
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
        return (_rebuild, (dict(self._weights), self._size, self._fn))

    def __repr__(self) -> str:
        return f"Maglev({list(self._weights)!r}, table_size={self._size})"

    def _check_room(self, count: int) -> None:
        if count > self._size:
            raise fail("table_size", f"at least the number of nodes ({count})", self._size)

    def _rebuild(self) -> None:
        # Nodes in name order: the table depends on the node set, not on insertion order.
        weights = self._weights
        ordered = sorted(weights)
        if not ordered:
            self._state = ([], ())
            return
        table = _populate(ordered, [weights[n] for n in ordered], self._size, self._fn)
        self._state = (table, tuple(weights))


def _rebuild(weights: dict[str, float], size: int, fn: HashFunction | None) -> Maglev:
    placement = Maglev(weights or {"-": 1.0}, size, hash=fn)
    if not weights:
        placement.remove("-")
    return placement
