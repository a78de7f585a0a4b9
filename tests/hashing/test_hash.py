"""The key and point hashes: stable, typed, well spread."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buttress.hashing import blake2b64, crc32fib, key_bytes, md5_ketama, mix64


def test_hash_values_are_fixed() -> None:
    """The hashes are pinned: a change here silently remaps every user's keys."""
    assert crc32fib(b"user:42") == 16095702698768532478
    assert blake2b64(b"user:42") == 9417771961093400537
    assert md5_ketama(b"user:42") == 417323606
    assert mix64(1) == 6238072747940578789


def test_int_keys_hash_like_their_decimal_text() -> None:
    """42 and "42" are the same key."""
    assert key_bytes(42) == key_bytes("42") == b"42"
    assert key_bytes(-7) == b"-7"


def test_str_is_utf8_and_bytes_as_is() -> None:
    """str keys hash as UTF-8, bytes-likes as their bytes."""
    assert key_bytes("é") == "é".encode()
    assert key_bytes(b"\xff") == b"\xff"
    assert key_bytes(bytearray(b"ab")) == b"ab"
    assert key_bytes(memoryview(b"ab")) == b"ab"


@pytest.mark.parametrize("bad", [1.5, True, None, ("a",), object()])
def test_other_key_types_are_refused(bad: object) -> None:
    """Floats, bools and other objects are not keys."""
    with pytest.raises(TypeError, match="str, bytes or int"):
        key_bytes(bad)


@given(st.binary())
def test_hashes_are_64_bit(data: bytes) -> None:
    """Every hash stays in its documented range."""
    assert 0 <= crc32fib(data) < 1 << 64
    assert 0 <= blake2b64(data) < 1 << 64
    assert 0 <= md5_ketama(data) < 1 << 32


def test_sequential_keys_spread_evenly() -> None:
    """crc32fib spreads structured keys (user:0, user:1...) evenly over the top bits."""
    count = 64_000
    buckets = Counter(crc32fib(f"user:{i}".encode()) >> 58 for i in range(count))
    expected = count / 64
    chi2 = sum((buckets[b] - expected) ** 2 / expected for b in range(64))
    assert chi2 < 120  # chi-square with 63 degrees of freedom; p < 1e-5 above this


def test_placement_is_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; our placement must not be."""
    code = (
        "from buttress.hashing import HashRing, Rendezvous, Maglev, JumpHash\n"
        "n = ['alpha', 'beta', 'gamma', 'delta']\n"
        "print([c(n).node_for(k) for c in (HashRing, JumpHash, Rendezvous, Maglev)"
        " for k in ('user:1', 'user:2', 42)])\n"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
