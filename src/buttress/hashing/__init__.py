"""Consistent hashing and sharding: keys to nodes, stable as nodes come and go.

- :class:`HashRing` (virtual nodes, optionally ketama-compatible), :class:`JumpHash`,
  :class:`Rendezvous` (weighted HRW) and :class:`Maglev` all implement
  :class:`ConsistentHash`: ``node_for(key)``, ``nodes_for(key, n)``, ``preference(key)``,
  ``add(node, weight=1.0)``, ``remove(node)``, ``nodes``, ``weights``.
- :class:`BoundedLoad` wraps any of them and caps every node at ``ceil(c * average)`` of
  the current load (consistent hashing with bounded loads).
- :class:`ShardMap` maps keys to shard objects; :class:`ReshardPlan` says which keys (or,
  for rings, which hash ranges) move where when the shard set changes.

Keys are ``str``, ``bytes`` or ``int`` and are hashed with a stable hash (never Python's
per-process ``hash()``), so every process agrees. See ``docs/hashing.md``.

Example::

    from buttress.hashing import HashRing

    ring = HashRing(["cache-1", "cache-2", "cache-3"])
    ring.node_for("user:42")
"""

from ._bounded import BoundedLoad, BoundedLoadStats
from ._errors import HashingError, NoNodesError, UnknownNodeError, UnsupportedOperationError
from ._hash import HashFunction, Key, blake2b64, crc32fib, key_bytes, md5_ketama, mix64
from ._jump import JumpHash
from ._maglev import Maglev
from ._protocol import ConsistentHash
from ._rendezvous import Rendezvous
from ._ring import HashRing
from ._shard import HashRange, Move, ReshardPlan, ShardMap

__all__ = [
    "BoundedLoad",
    "BoundedLoadStats",
    "ConsistentHash",
    "HashFunction",
    "HashRange",
    "HashRing",
    "HashingError",
    "JumpHash",
    "Key",
    "Maglev",
    "Move",
    "NoNodesError",
    "Rendezvous",
    "ReshardPlan",
    "ShardMap",
    "UnknownNodeError",
    "UnsupportedOperationError",
    "blake2b64",
    "crc32fib",
    "key_bytes",
    "md5_ketama",
    "mix64",
]
