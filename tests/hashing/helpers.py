"""Shared factories for the hashing tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from buttress.hashing import ConsistentHash, HashRing, JumpHash, Maglev, Rendezvous

Factory = Callable[[Iterable[str]], ConsistentHash]

# Maglev with a smaller prime table keeps property tests fast; 65537 is tested on its own.
FACTORIES: dict[str, Factory] = {
    "ring": lambda nodes: HashRing(nodes),
    "ketama": lambda nodes: HashRing.ketama(nodes),
    "jump": lambda nodes: JumpHash(nodes),
    "rendezvous": lambda nodes: Rendezvous(nodes),
    "maglev": lambda nodes: Maglev(nodes, table_size=5003),
}

KEYS = [f"key:{i}" for i in range(4000)]


def names(count: int, prefix: str = "node") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]
