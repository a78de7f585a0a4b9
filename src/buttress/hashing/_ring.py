"""A hash ring with virtual nodes (Karger et al.), optionally ketama-compatible."""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from hashlib import md5
from types import MappingProxyType
from typing import Literal

from .._validate import choice, fail, integer
from ._hash import HashFunction, Key, blake2b64, key_bytes, key_hasher, md5_ketama
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

__all__ = ["HashRing"]

_KIND = "HashRing"


class HashRing:
    """Consistent hashing on a ring with virtual nodes.

    Each node puts ``round(vnodes * weight)`` points on a ring of 64-bit hashes (the
    hash of ``"{node}-{i}"``); a key belongs to the first point clockwise after its
    hash. Adding a node takes only the arcs in front of its new points (about
    ``1/(n+1)`` of the keys, all moving *to* the new node); removing one gives its arcs to
    the next points clockwise, spread over the others. The points of a node do not depend
    on the other nodes, so a change never moves keys between two nodes that stayed.

    With ``compat="ketama"`` (or :meth:`ketama`) the ring is built exactly like libketama
    and uhashring's ``hash_fn="ketama"``: ``vnodes / 4`` MD5 digests of ``"{node}-{i}"``
    per node, scaled by ``weight * n / total_weight``, four 32-bit points per digest, and
    keys hashed with the first 4 bytes of their MD5, so keys land on the same servers as
    a memcached client using ketama (pylibmc, uhashring). Ketama renormalises weights:
    with unequal weights, a change of the node set also moves a few keys between nodes
    that stayed (that is how ketama behaves).

    Arguments:
        nodes: node names (weight 1.0 each) or a mapping ``{node: weight}``; weights are
            positive numbers (relative shares).
        vnodes: points per node of weight 1.0 (default 160); with ``compat="ketama"``
            a multiple of 4 (160 gives libketama's 160 points per server).
        compat: ``None`` (default: BLAKE2b-64 points, fast, 64-bit) or ``"ketama"``.
        hash: a :class:`~buttress.hashing.HashFunction` from bytes to a 64-bit int for
            keys and points (default BLAKE2b-64); not with ``compat="ketama"``.

    Raises:
        ConfigError: no nodes, a repeated node, a weight that is not > 0, ``vnodes`` < 1
            (or not a multiple of 4 for ketama), an unknown ``compat``, a bad ``hash``.

    Example::

        ring = HashRing(["cache-1", "cache-2", "cache-3"])
        ring.node_for("user:42")          # 'cache-2'
        ring.nodes_for("user:42", 2)      # ['cache-2', 'cache-1']: owner, then replica
        ring.add("cache-4")               # ~1/4 of the keys move, all to cache-4
        legacy = HashRing.ketama({"10.0.0.1:11211": 1, "10.0.0.2:11211": 2})
    """

    __slots__ = (
        "_compat",
        "_custom",
        "_hash",
        "_hash_fn",
        "_lock",
        "_lookup",
        "_points",
        "_vnodes",
        "_weights",
    )

    def __init__(
        self,
        nodes: Iterable[str] | Mapping[str, float],
        vnodes: int = 160,
        *,
        compat: Literal["ketama"] | None = None,
        hash: HashFunction | None = None,
    ) -> None:
        if compat is not None:
            choice("compat", compat, ("ketama",))
        self._compat = compat
        self._vnodes = integer("vnodes", vnodes, minimum=1)
        fn = check_hash(hash)
        self._custom = fn
        if compat == "ketama":
            if fn is not None:
                raise fail("hash", "None with compat='ketama' (ketama hashes with MD5)", hash)
            if vnodes % 4:
                raise fail("vnodes", "a multiple of 4 with compat='ketama'", vnodes)
            fn = md5_ketama
        # Points are hashed once per change, keys on every lookup: BLAKE2b for the
        # structured vnode names, the fast CRC-32/Fibonacci hash for keys (see _hash.py).
        self._hash_fn: HashFunction = fn if fn is not None else blake2b64
        self._hash = key_hasher(fn)
        self._lock = threading.Lock()
        self._weights = MappingProxyType(parse_nodes(nodes, _KIND))
        self._points: dict[str, list[int]] = {}
        # (sorted points, owner per point + the first owner again at the end, the nodes):
        # a key's owner is owners[bisect_right(points, hash)], so the wrap-around needs
        # no branch. Replaced whole on every change: readers never see a half state.
        self._lookup: tuple[list[int], list[str], tuple[str, ...]] = ([], [], ())
        self._rebuild()

    @classmethod
    def ketama(cls, nodes: Iterable[str] | Mapping[str, float], vnodes: int = 160) -> HashRing:
        """A libketama-compatible ring: ``HashRing(nodes, vnodes, compat="ketama")``.

        Arguments:
            nodes: server names exactly as the memcached client names them (uhashring
                and pylibmc use the string you give them, e.g. ``"10.0.0.1:11211"``),
                or a mapping of name to weight.
            vnodes: points per server (default 160, libketama's), a multiple of 4.

        Raises:
            ConfigError: as for the constructor.

        Example::

            ring = HashRing.ketama(["mc1:11211", "mc2:11211"])
            ring.node_for("session:9")   # the server uhashring(hash_fn="ketama") picks
        """
        return cls(nodes, vnodes, compat="ketama")

    # -- lookups (hot path) -------------------------------------------------------------

    def node_for(self, key: Key) -> str:
        """The node owning ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: every node was removed.
            TypeError: the key is of another type.

        Example::

            ring.node_for("user:42")   # 'cache-2'
        """
        points, owners, _ = self._lookup
        try:
            return owners[bisect_right(points, self._hash(key))]
        except IndexError:
            raise no_nodes(_KIND, key) from None

    def nodes_for(self, key: Key, n: int) -> list[str]:
        """``n`` distinct nodes for ``key`` in preference order: the owner, then the next
        distinct nodes clockwise (where replicas go, and where the key goes if the owner
        is removed).

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many nodes, ``1 <= n <= len(ring)``.

        Raises:
            ConfigError: ``n`` out of range.
            NoNodesError: the ring is empty.

        Example::

            ring.nodes_for("user:42", 2)   # ['cache-2', 'cache-1']
        """
        points, owners, nodes = self._lookup
        if not points:
            raise no_nodes(_KIND, key)
        if n.__class__ is not int or not 1 <= n <= len(nodes):
            check_n(n, len(nodes))
        count = len(points)
        i = bisect_right(points, self._hash(key))
        result = [owners[i]]
        # Walk clockwise to the next distinct owners (inlined: this is the replica path).
        step = 1
        while len(result) < n and step < count:
            node = owners[(i + step) % count]
            if node not in result:
                result.append(node)
            step += 1
        if len(result) < n:  # ketama nodes without points; see preference()
            result.extend(node for node in nodes if node not in result)
            del result[n:]
        return result

    def preference(self, key: Key) -> Iterator[str]:
        """Every node once, in preference order for ``key`` (clockwise from its hash).

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Raises:
            NoNodesError: the ring is empty (on the first ``next``).

        Example::

            for node in ring.preference("user:42"):
                if healthy(node):
                    break
        """
        points, owners, nodes = self._lookup
        if not points:
            raise no_nodes(_KIND, key)
        count = len(points)
        total = len(nodes)
        start = bisect_right(points, self._hash(key))
        seen: set[str] = set()
        for step in range(count):
            node = owners[(start + step) % count]
            if node not in seen:
                seen.add(node)
                yield node
                if len(seen) == total:
                    return
        # Only a ketama ring can get here: a node whose weight is tiny next to the others
        # gets no digest at all. It owns no key but still counts as a replica target.
        for node in nodes:
            if node not in seen:
                yield node

    def key_hash(self, key: Key) -> int:
        """The position of ``key`` on the ring (its hash), as used by :attr:`ReshardPlan.ranges`.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Example::

            ring.key_hash("user:42")   # an int in [0, ring.space)
        """
        return self._hash(key)

    @property
    def space(self) -> int:
        """The size of the hash space: ``2**64``, or ``2**32`` for ketama."""
        return 1 << 32 if self._compat == "ketama" else 1 << 64

    @property
    def points(self) -> tuple[tuple[int, str], ...]:
        """The ring: ``(point, node)`` pairs in ascending order (a key belongs to the
        first point strictly greater than its hash, wrapping to the first point)."""
        points, owners, _ = self._lookup
        return tuple(zip(points, owners, strict=False))

    # -- node set -----------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._weights)

    @property
    def weights(self) -> Mapping[str, float]:
        """A read-only snapshot ``{node: weight}`` (the same object until the next change)."""
        return self._weights

    @property
    def vnodes(self) -> int:
        """Points per node of weight 1.0."""
        return self._vnodes

    @property
    def compat(self) -> str | None:
        """``"ketama"`` or ``None``."""
        return self._compat

    def add(self, node: str, weight: float = 1.0) -> None:
        """Add ``node`` with ``weight`` (default 1.0).

        Arguments:
            node: a new node name.
            weight: its relative share, a number > 0.

        Raises:
            ConfigError: the node is already present, or a bad name or weight.

        Example::

            ring.add("cache-4", weight=2.0)
        """
        check_node(node)
        w = check_weight(weight, node)
        with self._lock:
            if node in self._weights:
                raise duplicate(_KIND, node)
            # Copy on write: readers iterate the old dict while we build the new state.
            self._weights = MappingProxyType({**self._weights, node: w})
            self._rebuild()

    def remove(self, node: str) -> None:
        """Remove ``node``; its keys go to the next nodes clockwise.

        Arguments:
            node: a present node.

        Raises:
            UnknownNodeError: the node is not in the ring (also a ``KeyError``).

        Example::

            ring.remove("cache-2")
        """
        with self._lock:
            if node not in self._weights:
                raise unknown(_KIND, node, self._weights)
            self._weights = MappingProxyType({n: w for n, w in self._weights.items() if n != node})
            self._points.pop(node, None)
            self._rebuild()

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, node: object) -> bool:
        return node in self._weights

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its options in the other process (locks and closures do not
        # pickle); a custom hash must itself be picklable (a module-level function).
        return (_rebuild, (dict(self._weights), self._vnodes, self._compat, self._custom))

    def __repr__(self) -> str:
        compat = f", compat={self._compat!r}" if self._compat else ""
        return f"HashRing({list(self._weights)!r}, vnodes={self._vnodes}{compat})"

    # -- building -----------------------------------------------------------------------

    def _rebuild(self) -> None:
        if self._compat == "ketama":
            pairs = self._ketama_points()
        else:
            pairs = []
            for node, weight in self._weights.items():
                points = self._points.get(node)
                count = max(1, round(self._vnodes * weight))
                if points is None or len(points) != count:
                    fn = self._hash_fn
                    points = [fn(f"{node}-{i}".encode()) for i in range(count)]
                    self._points[node] = points
                pairs.extend((p, node) for p in points)
            # Two points colliding (2**-64 per pair) go to the smaller name: placement then
            # depends on the node set only, never on the order the nodes were added in.
            pairs.sort()
            deduped: list[tuple[int, str]] = []
            for pair in pairs:
                if not deduped or deduped[-1][0] != pair[0]:
                    deduped.append(pair)
            pairs = deduped
        points_list = [p for p, _ in pairs]
        owners = [n for _, n in pairs]
        if owners:
            owners.append(owners[0])
        self._lookup = (points_list, owners, tuple(self._weights))

    def _ketama_points(self) -> list[tuple[int, str]]:
        # libketama / uhashring: a node gets floor(vnodes/4 * n * w / W) digests of
        # "{node}-{i}", four little-endian 32-bit points each; a point two nodes share
        # belongs to the node added later (uhashring's dict overwrite).
        total = sum(self._weights.values())
        count = len(self._weights)
        per_digest = self._vnodes // 4
        ring: dict[int, str] = {}
        for node, weight in self._weights.items():
            if float(weight).is_integer() and float(total).is_integer():
                digests = (per_digest * count * int(weight)) // int(total)
            else:
                digests = int(per_digest * count * weight // total)
            for i in range(digests):
                d = md5(key_bytes(f"{node}-{i}")).digest()
                for r in range(4):
                    ring[int.from_bytes(d[4 * r : 4 * r + 4], "little")] = node
        return sorted(ring.items())


def _rebuild(
    weights: dict[str, float],
    vnodes: int,
    compat: Literal["ketama"] | None,
    fn: HashFunction | None,
) -> HashRing:
    ring = HashRing(weights or {"-": 1.0}, vnodes, compat=compat, hash=fn)
    if not weights:
        ring.remove("-")
    return ring
