"""Interpreter opcodes per cache access: buttress ``Cache`` beside cachetools' ``LRUCache``.

Deterministic (it counts, it does not time): each cache of 1024 entries is filled from a
seeded random workload over 5000 keys, then the interpreter's opcodes are counted with
``sys.settrace`` (``f_trace_opcodes``) over 2000 misses on fresh keys (``get`` then
``set``: the steady state, one eviction each) and over 3000 hits on random present keys,
per Python function::

    .venv/bin/python benchmarks/opcodes_cache.py

Opcodes are not time (a C call inside one may cost a hundred of another), but on this
interpreter the replay's time follows them closely enough to say where a path spends.
"""

from __future__ import annotations

import collections
import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import cachetools

from buttress.cache import Cache

SIZE = 1024
Getter = Callable[[Any], Any]
Putter = Callable[[Any, Any], Any]


def _filled(who: str) -> tuple[Any, Getter, Putter]:
    rnd = random.Random(3)
    if who == "buttress":
        cache: Any = Cache(SIZE, random=random.Random(0))
        put: Putter = cache.set
    else:
        cache = cachetools.LRUCache(SIZE)
        put = cache.__setitem__
    get: Getter = cache.get
    for _ in range(50_000):
        k = rnd.randrange(5000)
        if get(k) is None:
            put(k, k)
    return cache, get, put


def _count(get: Getter, put: Putter, keys: list[int]) -> collections.Counter[str]:
    """Opcodes executed per Python function over the replay of ``keys``."""
    per_function: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            per_function[frame.f_code.co_name] += 1
        return trace

    sys.settrace(trace)
    try:
        for k in keys:
            if get(k) is None:
                put(k, k)
    finally:
        sys.settrace(None)
    return per_function


def _line(label: str, counts: collections.Counter[str], n: int) -> str:
    parts = ", ".join(f"{name} {c / n:.1f}" for name, c in counts.most_common())
    return f"  {label}: {sum(counts.values()) / n:.1f} opcodes per access ({parts})"


def main() -> int:
    print(f"opcodes per access, {SIZE}-entry caches, Python {sys.version.split()[0]}")
    for who in ("buttress", "cachetools LRU"):
        cache, get, put = _filled(who)
        fresh = list(range(10**9, 10**9 + 2000))
        print(who)
        print(_line("miss (get, then set)", _count(get, put, fresh), len(fresh)))
        cache, get, put = _filled(who)
        present = [k for k in range(5000) if k in cache]
        rnd = random.Random(5)
        hits = [rnd.choice(present) for _ in range(3000)]
        print(_line("hit", _count(get, put, hits), len(hits)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
