"""Consistent hashing: lookup cost beside uhashring, and placement quality.

Timed suites (the usual harness): a ring lookup against uhashring's in the same run
(the issue's target: ≤ 0.5x uhashring's time), every algorithm's lookup, and the key
hashes behind the choice of the default. Each timed iteration looks up the next of 4096
distinct keys (``next(keys)``, which the baseline also pays), so no result is cached
anywhere and every lookup hashes and searches.

Placement quality is not a timing, so it is computed once per run and reported as notes
of the algorithms suite: spread (max/mean keys per node over 1M keys, 100k with
``--quick``), disruption (share of keys moved when an 11th node joins 10; ideal 1/11),
and build time. ``python benchmarks/bench_hashing.py [--keys N]`` prints that table alone.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable
from hashlib import md5
from typing import Any

import uhashring

from _harness import Contender, RatioColumn, Suite, Target
from buttress.hashing import (
    BoundedLoad,
    HashRing,
    JumpHash,
    Maglev,
    Rendezvous,
    blake2b64,
    crc32fib,
)

__all__ = ["placement_quality", "suites"]

NODES = [f"10.0.0.{i}:11211" for i in range(1, 11)]
KEYS = [f"user:{i * 7919}" for i in range(4096)]


def _keys() -> Any:
    return itertools.cycle(KEYS)


def _baseline() -> Contender:
    return Contender("bare", "bare `next(keys)`", "-", "-", "next(keys)", {"keys": _keys()})


def _ring_suite() -> Suite:
    ring = HashRing(NODES)
    ketama = HashRing.ketama(NODES)
    uh = uhashring.HashRing(NODES)
    uh_ketama = uhashring.HashRing(NODES, hash_fn="ketama")

    def same_ketama() -> None:
        bad = [k for k in KEYS if ketama.node_for(k) != uh_ketama.get_node(k)]
        if bad:
            raise AssertionError(f"ketama placement differs from uhashring for {bad[:3]}")

    return Suite(
        name="hashing-ring",
        title="Hash ring lookup: buttress vs uhashring",
        kind="sync",
        description=(
            "One `node_for(key)` on a ring of 10 nodes x 160 points, keys cycling over "
            "4096 distinct strings. Overhead over a bare `next(keys)`."
        ),
        baseline=_baseline(),
        contenders=[
            Contender(
                "bt-ring",
                "buttress `HashRing.node_for`",
                "buttress",
                "default",
                "ring.node_for(next(keys))",
                {"ring": ring, "keys": _keys()},
                config="ring = HashRing(nodes)  # vnodes=160, crc32fib keys, blake2b points",
            ),
            Contender(
                "bt-ketama",
                "buttress `HashRing.ketama(...).node_for`",
                "buttress",
                "ketama",
                "ring.node_for(next(keys))",
                {"ring": ketama, "keys": _keys()},
                config="ring = HashRing.ketama(nodes)  # md5, 160 points per server",
                check=same_ketama,
            ),
            Contender(
                "uh-ring",
                "uhashring `get_node`",
                "uhashring",
                "default",
                "ring.get_node(next(keys))",
                {"ring": uh, "keys": _keys()},
                config="ring = uhashring.HashRing(nodes)  # vnodes=160, md5",
            ),
            Contender(
                "uh-ketama",
                "uhashring `get_node` (ketama)",
                "uhashring",
                "ketama",
                "ring.get_node(next(keys))",
                {"ring": uh_ketama, "keys": _keys()},
                config='ring = uhashring.HashRing(nodes, hash_fn="ketama")',
            ),
        ],
        columns=[
            RatioColumn("vs uhashring", {"default": "uh-ring", "ketama": "uh-ketama"}, "uh-ring")
        ],
        targets=[
            Target("buttress ring lookup ≤ 0.5 of uhashring's", "bt-ring", 0.5, ref="uh-ring"),
        ],
        notes=[
            "Ketama rows place every key on the same server (checked before timing); both "
            "spend most of their time in MD5, so the ketama ratio is bounded by the hash.",
        ],
        order=120,
    )


def _algorithms_suite() -> Suite:
    ring = HashRing(NODES)
    bounded = BoundedLoad(HashRing(NODES), c=1.25)
    entries = [
        ("bt-ring", "`HashRing.node_for`", "ring.node_for(next(keys))", ring),
        ("bt-jump", "`JumpHash.node_for`", "p.node_for(next(keys))", JumpHash(NODES)),
        ("bt-hrw", "`Rendezvous.node_for` (10 nodes)", "p.node_for(next(keys))", Rendezvous(NODES)),
        (
            "bt-hrw-w",
            "`Rendezvous.node_for` (10 weighted nodes)",
            "p.node_for(next(keys))",
            Rendezvous({n: 1.0 + i % 3 for i, n in enumerate(NODES)}),
        ),
        ("bt-maglev", "`Maglev.node_for` (65537 slots)", "p.node_for(next(keys))", Maglev(NODES)),
        ("bt-ring-3", "`HashRing.nodes_for(key, 3)`", "ring.nodes_for(next(keys), 3)", ring),
        (
            "bt-bounded",
            "`BoundedLoad(HashRing).acquire` + `release`",
            "p.release(p.acquire(next(keys)))",
            bounded,
        ),
    ]
    contenders = [
        Contender(
            key,
            f"buttress {label}",
            "buttress",
            "call",
            stmt,
            {"ring" if stmt.startswith("ring") else "p": obj, "keys": _keys()},
        )
        for key, label, stmt, obj in entries
    ]
    contenders.append(
        Contender(
            "uh-ring",
            "uhashring `get_node`",
            "uhashring",
            "call",
            "ring.get_node(next(keys))",
            {"ring": uhashring.HashRing(NODES), "keys": _keys()},
        )
    )
    notes: list[str] = []
    return Suite(
        name="hashing-algorithms",
        title="Consistent hashing: lookup cost of every algorithm",
        kind="sync",
        description=(
            "One lookup among 10 nodes, keys cycling over 4096 distinct strings. "
            "Overhead over a bare `next(keys)`. Placement quality follows the table."
        ),
        baseline=_baseline(),
        contenders=contenders,
        columns=[RatioColumn("vs uhashring", {}, "uh-ring")],
        notes=notes,
        setup=lambda: _add_quality_notes(notes),
        order=121,
    )


def _keyhash_suite() -> Suite:
    data = [k.encode() for k in KEYS]
    return Suite(
        name="hashing-keyhash",
        title="Key hashes: the default and the alternatives",
        kind="sync",
        description=(
            "Hashing one key (`bytes`, ~10 bytes) to an int. Overhead over a bare "
            "`next(keys)`. The default key hash is `crc32fib`; see docs/hashing.md."
        ),
        baseline=Contender(
            "bare", "bare `next(keys)`", "-", "-", "next(keys)", {"keys": itertools.cycle(data)}
        ),
        contenders=[
            Contender(
                "crc32fib",
                "buttress `crc32fib` (default for keys)",
                "buttress",
                "call",
                "h(next(keys))",
                {"h": crc32fib, "keys": itertools.cycle(data)},
            ),
            Contender(
                "blake2b64",
                "buttress `blake2b64` (points)",
                "buttress",
                "call",
                "h(next(keys))",
                {"h": blake2b64, "keys": itertools.cycle(data)},
            ),
            Contender(
                "md5-hex",
                "uhashring's `int(md5(str(key)).hexdigest(), 16)`",
                "uhashring",
                "call",
                "int(md5(str(next(keys)).encode('utf-8')).hexdigest(), 16)",
                {"md5": md5, "keys": itertools.cycle(KEYS)},
            ),
        ],
        columns=[RatioColumn("vs uhashring's hash", {}, "md5-hex")],
        order=122,
    )


def suites() -> list[Suite]:
    return [_ring_suite(), _algorithms_suite(), _keyhash_suite()]


# -- placement quality (not timed by the harness) -------------------------------------------

Builder = Callable[[list[str]], Any]

BUILDERS: dict[str, tuple[Builder, str]] = {
    "HashRing": (HashRing, "node_for"),
    "HashRing.ketama": (HashRing.ketama, "node_for"),
    "JumpHash": (JumpHash, "node_for"),
    "Rendezvous": (Rendezvous, "node_for"),
    "Maglev": (Maglev, "node_for"),
    "uhashring": (uhashring.HashRing, "get_node"),
    "uhashring ketama": (lambda nodes: uhashring.HashRing(nodes, hash_fn="ketama"), "get_node"),
}


def placement_quality(count: int) -> list[tuple[str, float, float, float, float, float]]:
    """(name, max/mean with 10 nodes, moved share 10 -> 11 nodes, share moved to old
    nodes, build ms for 10 nodes, build ms for 100 nodes) per algorithm."""
    keys = [f"key:{i}" for i in range(count)]
    rows = []
    for name, (build, method) in BUILDERS.items():
        nodes = [f"node-{i}" for i in range(10)]
        started = time.perf_counter()
        before_obj = build(nodes)
        build_10 = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        build([f"node-{i}" for i in range(100)])
        build_100 = (time.perf_counter() - started) * 1e3
        after_obj = build([*nodes, "node-new"])
        lookup_before = getattr(before_obj, method)
        lookup_after = getattr(after_obj, method)
        before = [lookup_before(k) for k in keys]
        spread = max(Counter(before).values()) / (count / 10)
        moved = stray = 0
        for k, old in zip(keys, before, strict=True):
            new = lookup_after(k)
            if new != old:
                moved += 1
                if new != "node-new":
                    stray += 1
        rows.append((name, spread, moved / count, stray / count, build_10, build_100))
    return rows


_QUALITY_CACHE: list[str] = []


def _add_quality_notes(notes: list[str]) -> None:
    if notes:
        return  # computed in an earlier pass of this run
    if not _QUALITY_CACHE:
        count = 100_000 if "--quick" in sys.argv else 1_000_000
        _QUALITY_CACHE.append(
            f"Placement quality over {count:,} keys `key:0..` (10 nodes `node-0..9`; "
            "disruption = keys moved when `node-new` joins, ideal 1/11 = 9.09 %, "
            '"to old" = moves between nodes that stayed; build = constructor time):'
        )
        for name, spread, moved, stray, b10, b100 in placement_quality(count):
            _QUALITY_CACHE.append(
                f"{name}: max/mean {spread:.3f}, moved {moved * 100:.2f} % "
                f"(to old nodes {stray * 100:.2f} %), build {b10:.1f} ms (10 nodes) / "
                f"{b100:.1f} ms (100 nodes)"
            )
    notes.extend(_QUALITY_CACHE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    head = ("algorithm", "max/mean", "moved %", "to old %", "build10 ms", "build100 ms")
    print(f"{head[0]:18} " + " ".join(f"{h:>11}" for h in head[1:]))
    for name, spread, moved, stray, b10, b100 in placement_quality(args.keys):
        cells = (f"{spread:.3f}", f"{moved * 100:.2f}", f"{stray * 100:.2f}", f"{b10:.1f}")
        print(f"{name:18} " + " ".join(f"{c:>11}" for c in (*cells, f"{b100:.1f}")))


if __name__ == "__main__":
    main()
