"""Consistent hashing with bounded loads: the cap always holds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buttress import ConfigError
from buttress.hashing import (
    BoundedLoad,
    HashingError,
    HashRing,
    JumpHash,
    NoNodesError,
    Rendezvous,
    UnknownNodeError,
)

from .helpers import names


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 6),
    c=st.floats(1.0, 3.0),
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 30)),  # (acquire?, key / which node to release)
        max_size=120,
    ),
    weighted=st.booleans(),
)
def test_no_node_ever_exceeds_its_cap(
    count: int, c: float, ops: list[tuple[bool, int]], weighted: bool
) -> None:
    """After every acquire the chosen node holds at most ceil(c * total * w / W)."""
    nodes = {n: (1.0 + i if weighted else 1.0) for i, n in enumerate(names(count))}
    bounded = BoundedLoad(HashRing(nodes), c=c)
    held: list[str] = []
    total_weight = sum(nodes.values())
    for acquire, value in ops:
        if acquire or not held:
            node = bounded.acquire(f"key-{value}")
            held.append(node)
            total = len(held)
            limit = math.ceil(c * total * nodes[node] / total_weight - 1e-9)
            assert bounded.loads[node] <= limit
        else:
            bounded.release(held.pop(value % len(held)))
        assert bounded.stats().total == len(held) == sum(bounded.loads.values())


def test_keys_stay_on_their_node_until_it_is_full() -> None:
    """Under the cap, a key goes where the inner ring puts it; then it spills over."""
    ring = HashRing(["a", "b", "c"])
    bounded = BoundedLoad(ring, c=1.25)
    owner = ring.node_for("hot")
    placed = [bounded.acquire("hot") for _ in range(12)]
    assert placed[0] == owner
    assert placed.count(owner) == bounded.loads[owner] <= math.ceil(1.25 * 12 / 3)
    assert bounded.stats().overflowed == 12 - placed.count(owner)
    assert set(placed) == {"a", "b", "c"}


def test_c_one_is_perfectly_even() -> None:
    """c=1 caps every node at ceil(total / n)."""
    bounded = BoundedLoad(Rendezvous(names(4)), c=1.0)
    for i in range(40):
        bounded.acquire(f"k{i % 3}")
    assert set(bounded.loads.values()) == {10}


def test_lease_releases_on_exit_and_on_error() -> None:
    """lease() gives the load back whatever happens in the block."""
    bounded = BoundedLoad(HashRing(["a", "b"]))
    with bounded.lease("k") as node:
        assert bounded.loads[node] == 1
    assert bounded.stats().total == 0
    with pytest.raises(RuntimeError), bounded.lease("k"):
        raise RuntimeError("boom")
    assert bounded.stats().total == 0


def test_node_for_peeks_without_taking_load() -> None:
    """node_for answers where acquire would go and takes nothing."""
    bounded = BoundedLoad(HashRing(["a", "b"]))
    node = bounded.node_for("k")
    assert bounded.acquire("k") == node
    assert bounded.stats().total == 1
    assert bounded.nodes_for("k", 2)[0] == bounded.inner.node_for("k")


def test_release_without_acquire_is_an_error() -> None:
    """Releasing more than was acquired is a bug in the caller: say so."""
    bounded = BoundedLoad(HashRing(["a", "b"]))
    with pytest.raises(HashingError, match="without a matching acquire"):
        bounded.release("a")


def test_removed_node_forgets_its_load() -> None:
    """A node removed while loaded drops its load; a late release is ignored."""
    bounded = BoundedLoad(HashRing(["a", "b"]))
    node = bounded.acquire("k")
    bounded.remove(node)
    assert bounded.stats().total == 0
    bounded.release(node)  # the connection closed after the node went away
    assert node not in bounded.loads


def test_add_and_cap() -> None:
    """Added nodes start empty; cap() reports the current cap and knows its nodes."""
    bounded = BoundedLoad(JumpHash(["a", "b"]), c=1.5)
    bounded.add("c")
    assert bounded.loads["c"] == 0
    assert bounded.cap("c") == math.ceil(1.5 * 1 / 3)
    with pytest.raises(UnknownNodeError):
        bounded.cap("z")
    assert len(bounded) == 3 and "c" in bounded
    assert repr(bounded).startswith("BoundedLoad(JumpHash(")


@pytest.mark.parametrize("c", [0.99, 0, -1, math.nan, "1.25"])
def test_c_must_be_at_least_one(c: object) -> None:
    """The balance factor is a number >= 1."""
    with pytest.raises(ConfigError, match="c must be a number in"):
        BoundedLoad(HashRing(["a"]), c=c)  # type: ignore[arg-type]


def test_no_nodes_raises() -> None:
    """With every node removed, acquire raises NoNodesError."""
    bounded = BoundedLoad(HashRing(["a"]))
    bounded.remove("a")
    with pytest.raises(NoNodesError):
        bounded.acquire("k")


def test_threads_share_one_bounded_load() -> None:
    """Concurrent acquire/release from threads keeps the books: nothing lost or doubled."""
    import threading

    bounded = BoundedLoad(HashRing(names(4)), c=1.25)

    def worker(offset: int) -> None:
        held = [bounded.acquire(f"hot-{(i + offset) % 5}") for i in range(300)]
        for node in held:
            bounded.release(node)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = bounded.stats()
    assert stats.total == 0 and set(stats.loads.values()) == {0}
    assert stats.acquired == 1200
