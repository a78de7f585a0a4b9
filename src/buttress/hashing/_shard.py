"""Sharding: keys to shards, and the plan of what moves when the shard set changes."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType
from typing import Generic, TypeVar, overload

from .._errors import ConfigError
from .._validate import integer
from ._errors import UnsupportedOperationError
from ._hash import Key
from ._protocol import ConsistentHash, check_node
from ._ring import HashRing

__all__ = ["HashRange", "Move", "ReshardPlan", "ShardMap"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Move:
    """One key that changes shard: it lives on ``source`` now and belongs on ``target``.

    Example::

        Move(key="user:42", source="db-1", target="db-4")
    """

    key: object
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class HashRange:
    """A range of ring positions that changes owner: every key with
    ``start <= ring.key_hash(key) < end`` moves from ``source`` to ``target``.

    Example::

        r = plan.ranges[0]
        if r.start <= old_ring.key_hash(key) < r.end:
            copy(key, r.source, r.target)
    """

    start: int
    end: int
    source: str
    target: str

    def __contains__(self, position: object) -> bool:
        return isinstance(position, int) and self.start <= position < self.end

    @property
    def size(self) -> int:
        """How many ring positions the range covers (``end - start``)."""
        return self.end - self.start


class ReshardPlan:
    """What moves when placement changes from ``old`` to ``new``: a migration plan to run
    *before* switching readers and writers to ``new``.

    For any two placements, :meth:`moves` tells whether one key moves and where, and
    :meth:`moved` filters an iterable of keys (a table scan, ``SCAN`` output) down to the
    moves. Between two :class:`HashRing` of the same kind (same ``compat`` and hash),
    :attr:`ranges` lists the arcs of the hash space that change owner, so a store that
    keeps each key's ring position (or can compute it in a query) can migrate by range,
    and :meth:`moved_share` is exact.

    Arguments:
        old: the placement in use now.
        new: the placement to switch to.

    Raises:
        ConfigError: either placement has no nodes.

    Example::

        old = HashRing(["db-1", "db-2", "db-3"])
        new = HashRing(["db-1", "db-2", "db-3", "db-4"])
        plan = ReshardPlan(old, new)
        for move in plan.moved(all_user_ids()):
            copy(move.key, move.source, move.target)   # every target is db-4
        plan.moved_share()                              # ~0.25
    """

    __slots__ = ("_new", "_old", "_ranges")

    def __init__(self, old: ConsistentHash, new: ConsistentHash) -> None:
        if not len(old) or not len(new):
            raise ConfigError(
                f"a reshard plan needs nodes on both sides, got {len(old)} old and "
                f"{len(new)} new nodes"
            )
        self._old = old
        self._new = new
        self._ranges: tuple[HashRange, ...] | None = None

    @property
    def old(self) -> ConsistentHash:
        """The placement in use now."""
        return self._old

    @property
    def new(self) -> ConsistentHash:
        """The placement to switch to."""
        return self._new

    @property
    def added(self) -> tuple[str, ...]:
        """Nodes in ``new`` and not in ``old``."""
        return tuple(n for n in self._new.nodes if n not in self._old)

    @property
    def removed(self) -> tuple[str, ...]:
        """Nodes in ``old`` and not in ``new``."""
        return tuple(n for n in self._old.nodes if n not in self._new)

    def moves(self, key: Key) -> Move | None:
        """The move of ``key``, or ``None`` if it stays on its node.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Example::

            if (move := plan.moves("user:42")) is not None:
                copy("user:42", move.source, move.target)
        """
        source = self._old.node_for(key)
        target = self._new.node_for(key)
        return None if source == target else Move(key, source, target)

    def moved(self, keys: Iterable[K]) -> Iterator[Move]:
        """The moves among ``keys``, lazily, in the order given.

        Arguments:
            keys: keys (``str``, ``bytes`` or ``int``), e.g. the result of a scan.

        Example::

            for move in plan.moved(scan_keys()):
                copy(move.key, move.source, move.target)
        """
        old, new = self._old.node_for, self._new.node_for
        for key in keys:
            source = old(key)  # type: ignore[arg-type]
            target = new(key)  # type: ignore[arg-type]
            if source != target:
                yield Move(key, source, target)

    @property
    def ranges(self) -> tuple[HashRange, ...]:
        """The ring positions that change owner, as ``[start, end)`` ranges in ascending
        order (adjacent ranges with the same source and target merged).

        Raises:
            UnsupportedOperationError: ``old`` and ``new`` are not both :class:`HashRing`
                of the same ``compat`` and hash (other algorithms have no ranges: a
                rendezvous or jump hash owner changes key by key).

        Example::

            for r in plan.ranges:
                db.execute("... WHERE ring_pos >= %s AND ring_pos < %s", r.start, r.end)
        """
        if self._ranges is None:
            self._ranges = _ring_ranges(self._old, self._new)
        return self._ranges

    def moved_share(self, samples: int = 100_000) -> float:
        """The share of keys that move, in ``[0, 1]``.

        Exact (the share of the hash space in :attr:`ranges`) between compatible rings;
        otherwise estimated over ``samples`` synthetic keys (``0 .. samples-1``).

        Arguments:
            samples: keys to sample when not exact (default 100 000), an int >= 1.

        Raises:
            ConfigError: ``samples`` < 1.

        Example::

            plan.moved_share()   # 0.246 for 3 -> 4 equal nodes on a ring (ideal 0.25)
        """
        integer("samples", samples, minimum=1)
        if isinstance(self._old, HashRing) and _compatible(self._old, self._new):
            return sum(r.size for r in self.ranges) / self._old.space
        old, new = self._old.node_for, self._new.node_for
        return sum(old(i) != new(i) for i in range(samples)) / samples

    def flows(self) -> Mapping[tuple[str, str], float]:
        """The share of the hash space moving from each source to each target (rings
        only, exact).

        Raises:
            UnsupportedOperationError: as :attr:`ranges`.

        Example::

            plan.flows()   # {('db-3', 'db-4'): 0.101, ('db-2', 'db-4'): 0.072, ...}
        """
        space = self._ring_space()
        result: dict[tuple[str, str], float] = {}
        for r in self.ranges:
            pair = (r.source, r.target)
            result[pair] = result.get(pair, 0.0) + r.size / space
        return MappingProxyType(result)

    def _ring_space(self) -> int:
        self.ranges  # noqa: B018 - raises UnsupportedOperationError for non-rings
        assert isinstance(self._old, HashRing)
        return self._old.space

    def __repr__(self) -> str:
        return (
            f"ReshardPlan(old={self._old!r}, new={self._new!r}, "
            f"added={list(self.added)!r}, removed={list(self.removed)!r})"
        )


def _compatible(old: HashRing, new: object) -> bool:
    return isinstance(new, HashRing) and old.compat == new.compat and old._custom is new._custom


def _ring_ranges(old: ConsistentHash, new: ConsistentHash) -> tuple[HashRange, ...]:
    if not (isinstance(old, HashRing) and _compatible(old, new)):
        raise UnsupportedOperationError(
            "ReshardPlan.ranges needs two HashRing placements with the same compat and "
            f"hash, got {type(old).__name__} and {type(new).__name__}; use "
            "plan.moved(keys) to find the moves key by key"
        )
    assert isinstance(new, HashRing)
    old_points, old_owners, _ = old._lookup
    new_points, new_owners, _ = new._lookup
    space = old.space
    # Owners are constant between consecutive points of either ring: a position h
    # belongs to the first point > h, so [b_{i-1}, b_i) has one owner in each ring.
    bounds = sorted({0, *old_points, *new_points})
    bounds.append(space)
    ranges: list[HashRange] = []
    for lo, hi in pairwise(bounds):
        if lo >= hi:
            continue
        source = old_owners[bisect_right(old_points, lo)]
        target = new_owners[bisect_right(new_points, lo)]
        if source == target:
            continue
        last = ranges[-1] if ranges else None
        if last is not None and last.end == lo and (last.source, last.target) == (source, target):
            ranges[-1] = HashRange(last.start, hi, source, target)
        else:
            ranges.append(HashRange(lo, hi, source, target))
    return tuple(ranges)


class ShardMap(Generic[T]):
    """Keys to shards: a placement algorithm plus what each shard is (a connection pool,
    a DSN, a client).

    Arguments:
        shards: a mapping ``{shard name: shard}``, or just shard names (then each shard
            is its name).
        placement: the :class:`~buttress.hashing.ConsistentHash` that places keys; its
            nodes must be exactly the shard names (default: ``HashRing(names)``).

    Raises:
        ConfigError: no shards, a bad shard name, or a ``placement`` whose nodes are not
            the shard names.

    Example::

        shards = ShardMap({"db-1": pool1, "db-2": pool2, "db-3": pool3})
        shards.shard_for("user:42")        # 'db-3'
        shards.value_for("user:42")        # pool3
        shards.group(["a", "b", "c"])      # {'db-1': ['a', 'c'], 'db-2': ['b']}

        bigger = ShardMap({**shards.shards, "db-4": pool4})
        plan = shards.plan_to(bigger)      # migrate plan.moved(keys), then switch
    """

    __slots__ = ("_placement", "_shards")

    @overload
    def __init__(
        self, shards: Mapping[str, T], *, placement: ConsistentHash | None = None
    ) -> None: ...

    @overload
    def __init__(
        self: ShardMap[str], shards: Iterable[str], *, placement: ConsistentHash | None = None
    ) -> None: ...

    def __init__(
        self,
        shards: Mapping[str, T] | Iterable[str],
        *,
        placement: ConsistentHash | None = None,
    ) -> None:
        if isinstance(shards, Mapping):
            table: dict[str, object] = dict(shards)
        elif isinstance(shards, str | bytes) or not isinstance(shards, Iterable):
            raise ConfigError(
                f"shards must be a mapping of shard name to shard or an iterable of "
                f"names, got {shards!r}"
            )
        else:
            names = list(shards)
            table = {name: name for name in names}
            if len(table) != len(names):
                raise ConfigError(f"shards must not repeat a name, got {names!r}")
        if not table:
            raise ConfigError("shards must hold at least one shard, got none")
        for name in table:
            check_node(name, "each shard name")
        if placement is None:
            placement = HashRing(list(table))
        elif set(placement.nodes) != set(table):
            raise ConfigError(
                f"placement nodes must be the shard names {sorted(table)!r}, got "
                f"{sorted(placement.nodes)!r}"
            )
        self._shards: Mapping[str, T] = MappingProxyType(table)  # type: ignore[arg-type]
        self._placement = placement

    @property
    def shards(self) -> Mapping[str, T]:
        """``{shard name: shard}`` (read-only)."""
        return self._shards

    @property
    def placement(self) -> ConsistentHash:
        """The placement algorithm."""
        return self._placement

    def shard_for(self, key: Key) -> str:
        """The name of the shard that owns ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Example::

            shards.shard_for("user:42")   # 'db-3'
        """
        return self._placement.node_for(key)

    def value_for(self, key: Key) -> T:
        """The shard object (pool, client, DSN) that owns ``key``.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.

        Example::

            shards.value_for("user:42").execute(...)
        """
        return self._shards[self._placement.node_for(key)]

    def replicas_for(self, key: Key, n: int) -> list[str]:
        """``n`` distinct shard names for ``key`` (owner first), for replication.

        Arguments:
            key: a ``str``, ``bytes`` or ``int``.
            n: how many, ``1 <= n <= len(shards)``.

        Raises:
            ConfigError: ``n`` out of range.

        Example::

            shards.replicas_for("user:42", 2)   # ['db-3', 'db-1']
        """
        return self._placement.nodes_for(key, n)

    def group(self, keys: Iterable[K]) -> dict[str, list[K]]:
        """``keys`` grouped by shard name (order kept within a shard): one batch per
        shard for a multi-get.

        Arguments:
            keys: ``str``, ``bytes`` or ``int`` keys.

        Example::

            for name, batch in shards.group(ids).items():
                shards.shards[name].mget(batch)
        """
        node_for = self._placement.node_for
        result: dict[str, list[K]] = {}
        for key in keys:
            result.setdefault(node_for(key), []).append(key)  # type: ignore[arg-type]
        return result

    def plan_to(self, new: ShardMap[T] | ConsistentHash) -> ReshardPlan:
        """The :class:`ReshardPlan` from this map to ``new``.

        Arguments:
            new: the next shard map (or just its placement).

        Example::

            plan = shards.plan_to(ShardMap({**shards.shards, "db-4": pool4}))
        """
        placement = new.placement if isinstance(new, ShardMap) else new
        return ReshardPlan(self._placement, placement)

    def __len__(self) -> int:
        return len(self._shards)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_shard_map, (dict(self._shards), self._placement))

    def __repr__(self) -> str:
        return f"ShardMap({list(self._shards)!r}, placement={self._placement!r})"


def _rebuild_shard_map(shards: dict[str, T], placement: ConsistentHash) -> ShardMap[T]:
    return ShardMap(shards, placement=placement)
