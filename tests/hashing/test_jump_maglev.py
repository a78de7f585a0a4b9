"""JumpHash's and Maglev's own rules."""

from __future__ import annotations

import pytest

from buttress import ConfigError
from buttress.hashing import JumpHash, Maglev, UnsupportedOperationError

from .helpers import names


def test_jump_removes_only_its_last_node() -> None:
    """Removing a middle bucket would remap most keys: refused with the reason."""
    jump = JumpHash(["a", "b", "c"])
    with pytest.raises(UnsupportedOperationError, match=r"only remove its last node \('c'\)"):
        jump.remove("a")
    jump.remove("c")
    assert jump.nodes == ("a", "b")


def test_jump_has_no_weights() -> None:
    """A weight other than 1 is refused, at construction and in add()."""
    with pytest.raises(ConfigError, match="JumpHash has no weights"):
        JumpHash({"a": 1.0, "b": 2.0})
    with pytest.raises(ConfigError, match="JumpHash has no weights"):
        JumpHash(["a"]).add("b", weight=2.0)
    assert dict(JumpHash(["a"]).weights) == {"a": 1.0}


def test_jump_buckets_follow_node_order() -> None:
    """nodes[i] is bucket i: growing appends, so keys only move to the newcomer."""
    jump = JumpHash(["a", "b"])
    jump.add("c")
    assert jump.nodes == ("a", "b", "c")
    assert repr(jump) == "JumpHash(['a', 'b', 'c'])"


@pytest.mark.parametrize("size", [1, 4, 65536, 100, "65537", 2.0])
def test_maglev_table_size_must_be_prime(size: object) -> None:
    """table_size is a prime >= 2."""
    with pytest.raises(ConfigError, match="table_size must be"):
        Maglev(["a"], table_size=size)  # type: ignore[arg-type]


def test_maglev_table_must_hold_every_node() -> None:
    """There must be at least one slot per node."""
    with pytest.raises(ConfigError, match="at least the number of nodes"):
        Maglev(names(4), table_size=3)
    small = Maglev(names(3), table_size=3)
    with pytest.raises(ConfigError, match="at least the number of nodes"):
        small.add("node-9")


def test_maglev_default_table_is_even() -> None:
    """With 65537 slots each of 7 nodes owns size/7 slots, give or take one."""
    maglev = Maglev(names(7))
    assert maglev.table_size == 65537
    counts = {n: maglev.table.count(n) for n in maglev.nodes}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_maglev_weights_scale_slots() -> None:
    """A node of weight 2 fills twice the slots of a node of weight 1."""
    maglev = Maglev({"a": 1.0, "b": 2.0, "c": 1.0}, table_size=10007)
    counts = {n: maglev.table.count(n) for n in maglev.nodes}
    assert abs(counts["b"] / counts["a"] - 2.0) < 0.01


def test_maglev_table_does_not_depend_on_insertion_order() -> None:
    """The table is a function of the node set."""
    assert Maglev(["x", "y", "z"], 101).table == Maglev(["z", "x", "y"], 101).table


def test_maglev_node_without_slots_still_counts_as_a_replica() -> None:
    """A node too light to win a slot owns no key, but nodes_for lists it."""
    maglev = Maglev({"big": 1.0, "tiny": 1e-9}, table_size=101)
    assert set(maglev.table) == {"big"}
    assert maglev.nodes_for("k", 2) == ["big", "tiny"]
