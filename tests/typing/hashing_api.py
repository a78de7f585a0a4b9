"""Type-checked, never run: buttress.hashing's public API as documented."""

from __future__ import annotations

from typing import assert_type

from buttress.hashing import (
    BoundedLoad,
    ConsistentHash,
    HashRing,
    JumpHash,
    Maglev,
    Move,
    Rendezvous,
    ReshardPlan,
    ShardMap,
)


class Pool:
    def query(self) -> int:
        return 1


def every_algorithm_is_a_consistent_hash() -> None:
    placements: list[ConsistentHash] = [
        HashRing(["a"]),
        HashRing.ketama({"a": 1}),
        JumpHash(["a"]),
        Rendezvous({"a": 2.0}),
        Maglev(["a"], 65537),
        BoundedLoad(HashRing(["a"]), c=1.25),
    ]
    for p in placements:
        assert_type(p.node_for("k"), str)
        assert_type(p.node_for(b"k"), str)
        assert_type(p.node_for(42), str)
        assert_type(p.nodes_for("k", 2), list[str])
        p.add("b", weight=2.0)
        p.remove("b")


def shard_maps_keep_their_value_type() -> None:
    pools = ShardMap({"db-1": Pool(), "db-2": Pool()})
    assert_type(pools.value_for("user:1"), Pool)
    pools.value_for("user:1").query()
    names = ShardMap(["s0", "s1"])
    assert_type(names.value_for(1), str)
    groups = pools.group([1, 2, 3])
    assert_type(groups, dict[str, list[int]])
    plan = pools.plan_to(ShardMap({"db-1": Pool(), "db-2": Pool(), "db-3": Pool()}))
    assert_type(plan, ReshardPlan)
    move = plan.moves("user:1")
    if move is not None:
        assert_type(move, Move)
        assert_type(move.target, str)


def misuse_is_caught() -> None:
    ring = HashRing(["a"])
    ring.node_for(1.5)  # type: ignore[arg-type]
    ring.nodes_for("k")  # type: ignore[call-arg]
    HashRing(["a"], compat="libmemcached")  # type: ignore[arg-type]
    BoundedLoad(["a", "b"])  # type: ignore[arg-type]
