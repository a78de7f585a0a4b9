"""HashRing specifics: ketama compatibility with uhashring, options, points."""

from __future__ import annotations

import hashlib

import pytest
import uhashring
from hypothesis import given, settings
from hypothesis import strategies as st

from buttress import ConfigError
from buttress.hashing import HashRing, blake2b64

from .helpers import KEYS, names

SERVERS = [f"10.0.0.{i}:11211" for i in range(1, 9)]


def _agree(ours: HashRing, theirs: uhashring.HashRing, keys: list[str]) -> None:
    mismatched = [k for k in keys if ours.node_for(k) != theirs.get_node(k)]
    assert mismatched == []


def test_ketama_matches_uhashring() -> None:
    """Keys land on the same servers as uhashring's ketama ring (equal weights)."""
    _agree(HashRing.ketama(SERVERS), uhashring.HashRing(SERVERS, hash_fn="ketama"), KEYS)


def test_ketama_matches_uhashring_with_weights() -> None:
    """Weighted servers get uhashring's (libketama's) point counts and placement."""
    weights = {server: 1 + i % 3 for i, server in enumerate(SERVERS)}
    ours = HashRing.ketama(weights)
    theirs = uhashring.HashRing(weights, hash_fn="ketama")
    assert len(ours.points) == len(theirs.get_points())
    _agree(ours, theirs, KEYS)


def test_ketama_matches_uhashring_after_changes() -> None:
    """Adding and removing servers keeps both rings in step."""
    ours = HashRing.ketama(SERVERS)
    theirs = uhashring.HashRing(SERVERS, hash_fn="ketama")
    ours.add("10.0.0.99:11211")
    theirs.add_node("10.0.0.99:11211")
    ours.remove(SERVERS[2])
    theirs.remove_node(SERVERS[2])
    _agree(ours, theirs, KEYS)


@settings(max_examples=25, deadline=None)
@given(
    servers=st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    keys=st.lists(st.text(max_size=16), min_size=1, max_size=30),
)
def test_ketama_matches_uhashring_for_any_names(servers: list[str], keys: list[str]) -> None:
    """Any server names and keys (unicode included) place the same way."""
    _agree(HashRing.ketama(servers), uhashring.HashRing(servers, hash_fn="ketama"), keys)


def test_ketama_has_160_points_per_server() -> None:
    """libketama puts 160 points per server of equal weight."""
    assert len(HashRing.ketama(SERVERS).points) == 160 * len(SERVERS)
    assert HashRing(SERVERS, compat="ketama").compat == "ketama"
    assert HashRing.ketama(SERVERS).space == 1 << 32


def test_default_ring_puts_vnodes_times_weight_points() -> None:
    """A node of weight w gets round(vnodes * w) points."""
    ring = HashRing({"a": 1.0, "b": 0.5, "c": 2.0}, vnodes=100)
    owners = [node for _, node in ring.points]
    assert (owners.count("a"), owners.count("b"), owners.count("c")) == (100, 50, 200)
    assert ring.vnodes == 100
    assert ring.space == 1 << 64


def test_points_are_sorted_and_keys_go_to_the_next_point() -> None:
    """A key belongs to the first point strictly after its hash (wrapping)."""
    ring = HashRing(["a", "b", "c"], vnodes=8)
    points = ring.points
    assert [p for p, _ in points] == sorted(p for p, _ in points)
    for key in KEYS[:200]:
        h = ring.key_hash(key)
        after = [node for p, node in points if p > h]
        assert ring.node_for(key) == (after[0] if after else points[0][1])


@pytest.mark.parametrize("vnodes", [0, -1, 2.5, True])
def test_vnodes_must_be_a_positive_int(vnodes: object) -> None:
    """vnodes is an int >= 1."""
    with pytest.raises(ConfigError, match="vnodes must be an int >= 1"):
        HashRing(["a"], vnodes=vnodes)  # type: ignore[arg-type]


def test_ketama_vnodes_must_be_a_multiple_of_4() -> None:
    """Ketama makes four points per digest."""
    with pytest.raises(ConfigError, match="vnodes must be a multiple of 4"):
        HashRing(["a"], vnodes=10, compat="ketama")


def test_unknown_compat_is_refused() -> None:
    """compat is None or 'ketama'."""
    with pytest.raises(ConfigError, match="compat must be one of 'ketama'"):
        HashRing(["a"], compat="libmemcached")  # type: ignore[arg-type]


def test_custom_hash_is_used_for_keys_and_points() -> None:
    """hash= replaces both hashes with the user's function."""
    calls: list[bytes] = []

    def sha(data: bytes) -> int:
        calls.append(data)
        return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")

    ring = HashRing(["a", "b"], vnodes=4, hash=sha)
    assert b"a-0" in calls
    assert ring.key_hash("k") == sha(b"k")
    assert ring.node_for("k") in {"a", "b"}


@pytest.mark.parametrize("bad", ["sha1", lambda data: -1, lambda data: 1 << 64, lambda d: "x"])
def test_bad_custom_hash_is_refused(bad: object) -> None:
    """hash must be a callable returning a 64-bit unsigned int."""
    with pytest.raises(ConfigError, match="hash must be"):
        HashRing(["a"], hash=bad)  # type: ignore[arg-type]


def test_ketama_refuses_a_custom_hash() -> None:
    """Ketama's hash is MD5 by definition."""
    with pytest.raises(ConfigError, match="compat='ketama'"):
        HashRing(["a"], compat="ketama", hash=blake2b64)


def test_replicas_walk_clockwise() -> None:
    """nodes_for follows the ring: the second node is the one that inherits the key."""
    ring = HashRing(names(5))
    for key in KEYS[:300]:
        first, second = ring.nodes_for(key, 2)
        survivor = HashRing(names(5))
        survivor.remove(first)
        assert survivor.node_for(key) == second


def test_point_collisions_do_not_depend_on_insertion_order() -> None:
    """Two orders of the same nodes build the same ring."""
    assert HashRing(["a", "b", "c"]).points == HashRing(["c", "a", "b"]).points


def test_weights_snapshot_is_read_only() -> None:
    """weights is a read-only snapshot."""
    ring = HashRing({"a": 2})
    assert dict(ring.weights) == {"a": 2.0}
    with pytest.raises(TypeError):
        ring.weights["a"] = 3.0  # type: ignore[index]
    assert repr(ring) == "HashRing(['a'], vnodes=160)"


def test_ketama_node_without_points_still_counts_as_a_replica() -> None:
    """A ketama node too light for a single digest owns no key, but nodes_for lists it."""
    ring = HashRing.ketama({"big": 1000, "tiny": 1})
    assert {node for _, node in ring.points} == {"big"}
    assert all(ring.node_for(k) == "big" for k in KEYS[:100])
    assert ring.nodes_for("k", 2) == ["big", "tiny"]
