"""ShardMap and ReshardPlan: keys to shards, and what moves when shards change."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buttress import ConfigError
from buttress.hashing import (
    HashRing,
    JumpHash,
    Move,
    Rendezvous,
    ReshardPlan,
    ShardMap,
    UnsupportedOperationError,
)

from .helpers import KEYS, names


def test_shard_map_routes_to_shard_objects() -> None:
    """shard_for names the shard, value_for returns its object, group batches keys."""
    pools = {"db-1": object(), "db-2": object(), "db-3": object()}
    shards = ShardMap(pools)
    ring = HashRing(list(pools))
    for key in KEYS[:200]:
        assert shards.shard_for(key) == ring.node_for(key)
        assert shards.value_for(key) is pools[ring.node_for(key)]
    groups = shards.group(KEYS[:200])
    assert sum(len(batch) for batch in groups.values()) == 200
    assert all(shards.shard_for(k) == name for name, batch in groups.items() for k in batch)
    assert shards.replicas_for("k", 2) == ring.nodes_for("k", 2)
    assert len(shards) == 3


def test_shard_map_of_names_and_custom_placement() -> None:
    """Names alone work; any placement whose nodes are the shard names is accepted."""
    shards = ShardMap(["s0", "s1"], placement=JumpHash(["s0", "s1"]))
    assert shards.value_for("k") == shards.shard_for("k")
    assert isinstance(shards.placement, JumpHash)


def test_shard_map_bad_input() -> None:
    """No shards, repeats, bad names or a mismatched placement are refused."""
    with pytest.raises(ConfigError, match="at least one shard"):
        ShardMap({})
    with pytest.raises(ConfigError, match="must not repeat"):
        ShardMap(["a", "a"])
    with pytest.raises(ConfigError, match="shards must be"):
        ShardMap("abc")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="non-empty str"):
        ShardMap({"": 1})
    with pytest.raises(ConfigError, match="placement nodes must be the shard names"):
        ShardMap(["a", "b"], placement=HashRing(["a", "c"]))


@settings(max_examples=25, deadline=None)
@given(
    old_count=st.integers(1, 6),
    added=st.integers(0, 2),
    removed=st.integers(0, 2),
)
def test_ring_ranges_agree_with_key_moves(old_count: int, added: int, removed: int) -> None:
    """A key moves iff its ring position lies in a range, and the range says where."""
    removed = min(removed, old_count - 1)
    old_nodes = names(old_count)
    new_nodes = old_nodes[removed:] + names(added, "new")
    old, new = HashRing(old_nodes, vnodes=20), HashRing(new_nodes, vnodes=20)
    plan = ReshardPlan(old, new)
    ranges = plan.ranges
    assert all(r.start < r.end for r in ranges)
    assert all(a.end <= b.start for a, b in itertools.pairwise(ranges))
    for key in KEYS[:600]:
        position = old.key_hash(key)
        hits = [r for r in ranges if position in r]
        move = plan.moves(key)
        if move is None:
            assert hits == []
        else:
            assert [(r.source, r.target) for r in hits] == [(move.source, move.target)]
    exact = plan.moved_share()
    sampled = sum(plan.moves(k) is not None for k in KEYS) / len(KEYS)
    assert abs(exact - sampled) < 0.05


def test_adding_a_shard_moves_keys_only_to_it() -> None:
    """Growing 3 -> 4 shards: about a quarter of the space, all flowing to the newcomer."""
    shards = ShardMap(["db-1", "db-2", "db-3"])
    plan = shards.plan_to(ShardMap(["db-1", "db-2", "db-3", "db-4"]))
    assert plan.added == ("db-4",) and plan.removed == ()
    assert 0.18 < plan.moved_share() < 0.32
    assert {target for _, target in plan.flows()} == {"db-4"}
    assert abs(sum(plan.flows().values()) - plan.moved_share()) < 1e-12
    moves = list(plan.moved(KEYS))
    assert moves and all(isinstance(m, Move) and m.target == "db-4" for m in moves)


def test_removing_a_shard_sends_its_keys_elsewhere() -> None:
    """Shrinking: only the removed shard is a source."""
    plan = ReshardPlan(HashRing(["a", "b", "c"]), HashRing(["a", "b"]))
    assert plan.removed == ("c",)
    assert {source for source, _ in plan.flows()} == {"c"}


def test_non_ring_plans_move_key_by_key() -> None:
    """Other algorithms have no ranges, but moves and a sampled share work."""
    plan = ReshardPlan(Rendezvous(["a", "b"]), Rendezvous(["a", "b", "c"]))
    with pytest.raises(UnsupportedOperationError, match="two HashRing placements"):
        _ = plan.ranges
    with pytest.raises(UnsupportedOperationError):
        plan.flows()
    assert 0.25 < plan.moved_share(samples=20_000) < 0.42
    assert all(m.target == "c" for m in plan.moved(KEYS[:500]))


def test_ketama_and_default_rings_are_not_range_compatible() -> None:
    """Ranges need the same hash space and function on both sides."""
    plan = ReshardPlan(HashRing.ketama(["a"]), HashRing(["a"]))
    with pytest.raises(UnsupportedOperationError):
        _ = plan.ranges


def test_plan_needs_nodes_on_both_sides() -> None:
    """An empty side is a configuration mistake."""
    empty = HashRing(["a"])
    empty.remove("a")
    with pytest.raises(ConfigError, match="needs nodes on both sides"):
        ReshardPlan(HashRing(["a"]), empty)
    with pytest.raises(ConfigError, match="samples must be"):
        ReshardPlan(HashRing(["a"]), HashRing(["b"])).moved_share(samples=0)


def test_shard_map_and_custom_hash_pickle() -> None:
    """A ShardMap (and a ring with a module-level custom hash) survive pickling."""
    import pickle

    from buttress.hashing import blake2b64

    shards = ShardMap({"a": 1, "b": 2}, placement=HashRing(["a", "b"], hash=blake2b64))
    clone = pickle.loads(pickle.dumps(shards))
    assert dict(clone.shards) == {"a": 1, "b": 2}
    assert [clone.shard_for(k) for k in KEYS[:300]] == [shards.shard_for(k) for k in KEYS[:300]]


def test_rings_with_different_key_hashes_have_no_ranges() -> None:
    """A ring with hash=blake2b64 places keys by another hash than the default ring."""
    from buttress.hashing import blake2b64

    plan = ReshardPlan(HashRing(["a", "b"]), HashRing(["a", "b"], hash=blake2b64))
    with pytest.raises(UnsupportedOperationError):
        _ = plan.ranges
    assert plan.moved_share(samples=2000) > 0.2
