"""Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, SODA 2018)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

from .._validate import number
from ._errors import HashingError
from ._hash import Key
from ._protocol import ConsistentHash, no_nodes, unknown

__all__ = ["BoundedLoad", "BoundedLoadStats"]

_KIND = "BoundedLoad"


@dataclass(frozen=True, slots=True)
class BoundedLoadStats:
    """A snapshot of a :class:`BoundedLoad`.

    Attributes:
        total: the load held now (acquired and not yet released).
        loads: ``{node: load}`` for every node.
        caps: ``{node: cap}``: the most load each node may hold when the next key
            arrives, ``ceil(c * (total + 1) * weight / total_weight)``.
        overflowed: acquisitions that did not go to the key's first-choice node because
            it was at its cap (the "forwarded" keys of the paper), since construction.
        acquired: acquisitions since construction.
    """

    total: int
    loads: Mapping[str, int]
    caps: Mapping[str, int]
    overflowed: int
    acquired: int


class BoundedLoad:
    """Consistent hashing with bounded loads: no node holds more than
    ``ceil(c * average)`` of the current load.

    Wraps any :class:`~buttress.hashing.ConsistentHash`. Each :meth:`acquire` places one
    unit of load (a connection, a request, a session) on the first node in the key's
    preference order whose load is below its cap, where the cap is
    ``ceil(c * (total + 1) / n)`` (scaled by ``weight / mean weight`` when nodes are
    weighted) and ``total`` is the load held before this acquisition. Keys stay where
    consistent hashing puts them until that node is full; then they spill to the next
    node clockwise, as Vimeo's and HAProxy's ``hash-balance-factor`` do. Some node is
    always below its cap, so :meth:`acquire` never fails while there are nodes.

    The load is the caller's to return: :meth:`release` (or use :meth:`lease`). A node
    removed while it held load forgets that load; releasing it later is a no-op.

    Lookups that take no load (``node_for``, ``nodes_for``, ``preference``) follow the
    inner algorithm, except ``node_for``, which answers where :meth:`acquire` would go
    now.

    Arguments:
        inner: the placement to bound, e.g. ``HashRing(nodes)`` (the paper's setting).
        c: the balance factor, a number >= 1 (default 1.25: no node above 125 % of the
            average; HAProxy's ``hash-balance-factor 125``). Lower is more even and moves
            more keys off their first choice.

    Raises:
        ConfigError: ``c`` < 1 or not a number.

    Example::

        lb = BoundedLoad(HashRing(["s1", "s2", "s3"]), c=1.25)
        node = lb.acquire("session:7")     # counts one unit on node
        try:
            serve(node)
        finally:
            lb.release(node)
        with lb.lease("session:8") as node:  # the same, as a context manager
            serve(node)
    """

    __slots__ = (
        "_acquired",
        "_c",
        "_inner",
        "_loads",
        "_lock",
        "_overflowed",
        "_seen",
        "_total",
        "_total_weight",
    )

    def __init__(self, inner: ConsistentHash, c: float = 1.25) -> None:
        self._inner = inner
        self._c = number("c", c, low=1.0)
        self._lock = threading.Lock()
        self._loads: dict[str, int] = dict.fromkeys(inner.nodes, 0)
        self._total = 0
        self._acquired = 0
        self._overflowed = 0
        # The inner weights mapping last seen, and its sum: buttress's algorithms return
        # the same mapping object until their node set changes, so this is summed once
        # per change rather than once per acquisition.
        self._seen: Mapping[str, float] | None = None
        self._total_weight = 0.0

    @property
    def c(self) -> float:
        """The balance factor."""
        return self._c

    @property
    def inner(self) -> ConsistentHash:
        """The wrapped placement."""
        return self._inner

    def acquire(self, key: Key) -> str:
        """Place one unit of load for ``key`` and return its node.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: there are no nodes.

        Example::

            node = lb.acquire("session:7")
        """
        with self._lock:
            node = self._pick(key)
            self._loads[node] = self._loads.get(node, 0) + 1
            self._total += 1
            self._acquired += 1
            return node

    def release(self, node: str) -> None:
        """Return one unit of load from ``node``.

        Arguments:
            node: a node returned by :meth:`acquire`.

        Raises:
            UnknownNodeError: ``node`` was never a node here (a node removed since its
                acquisition is ignored instead).
            HashingError: ``node`` holds no load (more releases than acquisitions).

        Example::

            lb.release(node)
        """
        with self._lock:
            load = self._loads.get(node)
            if load is None:
                if node in self._inner:
                    raise HashingError(f"release({node!r}) without a matching acquire")
                return
            if load == 0:
                raise HashingError(f"release({node!r}) without a matching acquire")
            self._loads[node] = load - 1
            self._total -= 1

    @contextmanager
    def lease(self, key: Key) -> Iterator[str]:
        """Acquire a node for ``key`` for the ``with`` block, and release it after.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: there are no nodes.

        Example::

            with lb.lease("session:7") as node:
                serve(node)
        """
        node = self.acquire(key)
        try:
            yield node
        finally:
            self.release(node)

    def node_for(self, key: Key) -> str:
        """Where :meth:`acquire` would place ``key`` now, without taking load.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: there are no nodes.

        Example::

            lb.node_for("session:7")
        """
        with self._lock:
            return self._pick(key, count=False)

    def nodes_for(self, key: Key, n: int) -> list[str]:
        """The inner algorithm's ``n`` nodes for ``key`` (loads not considered).

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many nodes, ``1 <= n <= len(nodes)``.

        Raises:
            ConfigError: ``n`` out of range.
            NoNodesError: no nodes.

        Example::

            lb.nodes_for("session:7", 2)
        """
        return self._inner.nodes_for(key, n)

    def preference(self, key: Key) -> Iterator[str]:
        """The inner algorithm's preference order for ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Example::

            list(lb.preference("session:7"))
        """
        return self._inner.preference(key)

    def cap(self, node: str) -> int:
        """The most load ``node`` may hold when the next key arrives.

        Arguments:
            node: a present node.

        Raises:
            UnknownNodeError: ``node`` is not present.

        Example::

            lb.cap("s1")   # ceil(1.25 * (total + 1) / 3) with 3 equal nodes
        """
        weights = self._inner.weights
        if node not in weights:
            raise unknown(_KIND, node, weights)
        with self._lock:
            return self._cap(weights[node], sum(weights.values()), len(weights))

    @property
    def loads(self) -> Mapping[str, int]:
        """A read-only snapshot ``{node: load}``."""
        with self._lock:
            return MappingProxyType({n: self._loads.get(n, 0) for n in self._inner.nodes})

    def stats(self) -> BoundedLoadStats:
        """A snapshot: loads, caps and how many acquisitions spilled over.

        Example::

            lb.stats().overflowed / max(1, lb.stats().acquired)   # share of spilled keys
        """
        weights = self._inner.weights
        total_weight = sum(weights.values())
        with self._lock:
            loads = {n: self._loads.get(n, 0) for n in weights}
            caps = {n: self._cap(w, total_weight, len(weights)) for n, w in weights.items()}
            return BoundedLoadStats(
                total=self._total,
                loads=MappingProxyType(loads),
                caps=MappingProxyType(caps),
                overflowed=self._overflowed,
                acquired=self._acquired,
            )

    @property
    def nodes(self) -> tuple[str, ...]:
        """The inner algorithm's nodes."""
        return self._inner.nodes

    @property
    def weights(self) -> Mapping[str, float]:
        """The inner algorithm's weights."""
        return self._inner.weights

    def add(self, node: str, weight: float = 1.0) -> None:
        """Add ``node`` to the inner algorithm, with no load.

        Arguments:
            node: a new node name.
            weight: its relative share where the inner algorithm has weights.

        Raises:
            ConfigError: as the inner algorithm's ``add``.

        Example::

            lb.add("s4")
        """
        with self._lock:
            self._inner.add(node, weight)
            self._loads[node] = 0

    def remove(self, node: str) -> None:
        """Remove ``node`` from the inner algorithm and forget its load.

        Arguments:
            node: a present node.

        Raises:
            UnknownNodeError: as the inner algorithm's ``remove``.

        Example::

            lb.remove("s2")
        """
        with self._lock:
            self._inner.remove(node)
            self._total -= self._loads.pop(node, 0)

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, node: object) -> bool:
        return node in self._inner

    def __repr__(self) -> str:
        return f"BoundedLoad({self._inner!r}, c={self._c:g})"

    # -- internals (called with the lock held) ------------------------------------------

    def _cap(self, weight: float, total_weight: float, count: int) -> int:
        if count == 0:
            return 0
        # The same arithmetic as _pick, so cap() reports exactly what acquire enforces.
        scale = self._c * (self._total + 1) / total_weight
        return math.ceil(scale * weight - 1e-9)

    def _pick(self, key: Key, *, count: bool = True) -> str:
        weights = self._inner.weights
        if weights is not self._seen:
            self._seen = weights
            self._total_weight = sum(weights.values())
        if not weights:
            raise no_nodes(_KIND, key)
        # cap(node) = ceil(c * (total + 1) * weight / total_weight); the small epsilon
        # keeps float noise (1.25 * 8 / 2 = 5.000000001) from adding 1.
        scale = self._c * (self._total + 1) / self._total_weight
        loads = self._loads
        ceil = math.ceil
        # Fast path: the first choice is under its cap (the common case unless c is
        # tight or the keys are hot); node_for is much cheaper than a preference walk.
        node = self._inner.node_for(key)
        if loads.get(node, 0) < ceil(scale * weights.get(node, 0.0) - 1e-9):
            return node
        first = True
        for node in self._inner.preference(key):
            if loads.get(node, 0) < ceil(scale * weights.get(node, 0.0) - 1e-9):
                if count and not first:
                    self._overflowed += 1
                return node
            first = False
        # Unreachable while the inner preference lists every node: the caps sum to at
        # least c * (total + 1) > total.
        return next(iter(self._inner.preference(key)))
