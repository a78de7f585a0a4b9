"""The key hash: stable across processes and machines, 64 bits, well distributed.

Placement must not use Python's ``hash()``: it is salted per process for ``str`` and
``bytes`` (``PYTHONHASHSEED``), so two processes would disagree about where a key lives.

Two hashes, for two jobs:

- **Keys** (every lookup) use :func:`crc32fib`: zlib's CRC-32 of the key's bytes, spread
  over 64 bits by Fibonacci hashing (a multiply by 2**64/phi, modulo 2**64). It costs
  ~0.1 us in CPython where any ``hashlib`` digest costs ~0.3-0.4 us, most of it the call
  and object overhead rather than the hashing (measured in ``benchmarks/bench_hashing.py``);
  that is the difference between a ring lookup at ~0.35x and ~0.7x uhashring's time.
  CRC-32 alone is linear and clumps structured keys (``user:1``, ``user:2``...); the
  multiply scatters them: over 300k sequential ids the top 10 bits are as uniform as
  BLAKE2b's (chi-square/df 1.05 vs 0.99) and ring spread (max/mean) is the same.
  Its 32 bits of entropy only mean that two keys in 4 billion share a position, so the
  same node. Nothing here defends against adversarial keys; no unkeyed hash does.
- **Node points** (ring points, Maglev permutations, rendezvous seeds: computed once per
  change) use :func:`blake2b64`, BLAKE2b with an 8-byte digest: the names of the vnodes
  of one node (``"cache-1-0"``, ``"cache-1-1"``...) are highly structured, and a weak hash
  there visibly skews the spread (max/mean 1.2 instead of 1.08 with 10 nodes).

Both are in the standard library, the same in every process, platform and Python
version. A ``hash=`` option replaces both with one :class:`HashFunction` of yours.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b as _blake2b
from hashlib import md5 as _md5
from typing import Protocol, TypeAlias
from zlib import crc32 as _crc32

__all__ = ["HashFunction", "Key", "blake2b64", "crc32fib", "key_bytes", "md5_ketama", "mix64"]

Key: TypeAlias = str | bytes | int
"""A key to place: ``str`` (hashed as UTF-8), ``bytes`` as is, or ``int`` (hashed as its
decimal text, so ``42`` and ``"42"`` land on the same node)."""

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / phi, odd: multiplying by it is a bijection mod 2**64

_from_bytes = int.from_bytes


class HashFunction(Protocol):
    """A hash from bytes to an unsigned 64-bit int, the same in every process.

    Example::

        import hashlib

        def sha(data: bytes) -> int:   # must return an int in [0, 2**64)
            return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")

        ring = HashRing(nodes, hash=sha)   # keys and points
    """

    def __call__(self, data: bytes, /) -> int: ...


def crc32fib(data: bytes, /) -> int:
    """The default key hash: CRC-32 spread over 64 bits by Fibonacci hashing.

    Arguments:
        data: the bytes to hash.

    Returns ``(zlib.crc32(data) * 0x9E3779B97F4A7C15) % 2**64``, identical in every
    process and on every platform. Fast (one C call and one multiply) and uniform for
    placement; see the module docstring for the measurements behind the choice.

    Example::

        crc32fib(b"user:42")   # an int in [0, 2**64)
    """
    return (_crc32(data) * _GOLDEN) & MASK64


def blake2b64(data: bytes, /) -> int:
    """The point hash: BLAKE2b with an 8-byte digest, as a little-endian int.

    Arguments:
        data: the bytes to hash.

    Returns an int in ``[0, 2**64)``, identical in every process and on every platform.

    Example::

        blake2b64(b"user:42")   # 64-bit, stable across processes
    """
    return _from_bytes(_blake2b(data, digest_size=8).digest(), "little")


def md5_ketama(data: bytes, /) -> int:
    """The libketama key hash: the first 4 bytes of MD5, little-endian (32 bits).

    Arguments:
        data: the bytes to hash.

    Used by ``HashRing(..., compat="ketama")``; it is what libketama, pylibmc's ketama
    and uhashring's ``hash_fn="ketama"`` place keys with.

    Example::

        md5_ketama(b"user:42")   # an int in [0, 2**32)
    """
    return _from_bytes(_md5(data).digest()[:4], "little")


def mix64(value: int, /) -> int:
    """SplitMix64's finalizer: a fast bijective mix of a 64-bit int.

    Arguments:
        value: any int (only its low 64 bits are used).

    Example::

        mix64(1)   # a well-scrambled 64-bit int
    """
    z = value & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def key_bytes(key: object, /) -> bytes:
    """The bytes a key is hashed as: UTF-8 for ``str``, as is for ``bytes``, the decimal
    text for ``int``.

    Arguments:
        key: a ``str``, ``bytes`` (or ``bytearray`` / ``memoryview``) or ``int``.

    Raises:
        TypeError: any other type (``bool`` and ``float`` included: ``1.0`` and ``True``
            are not ids).

    Example::

        key_bytes(42) == key_bytes("42") == b"42"
    """
    if isinstance(key, str):
        return str.encode(key)
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key)).encode()
    raise TypeError(f"a key must be str, bytes or int, got {type(key).__name__}: {key!r}")


def key_hasher(fn: HashFunction | None) -> Callable[[object], int]:
    """A function from a key to its hash, inlined for the built-in hashes (``None`` is
    the default, :func:`crc32fib`)."""
    if fn is None:

        def default(key: object, /) -> int:
            # The hot path of every lookup: no call for the common key types.
            if type(key) is str:
                data = key.encode()
            elif type(key) is bytes:
                data = key
            else:
                data = key_bytes(key)
            return (_crc32(data) * _GOLDEN) & MASK64

        return default
    if fn is md5_ketama:

        def ketama(key: object, /) -> int:
            if type(key) is str:
                data = key.encode()
            elif type(key) is bytes:
                data = key
            else:
                data = key_bytes(key)
            return _from_bytes(_md5(data).digest()[:4], "little")

        return ketama

    def custom(key: object, /) -> int:
        return fn(key if type(key) is bytes else key_bytes(key))

    return custom
