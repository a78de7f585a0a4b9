"""Trace replay, interleaved: this checkout's ``Cache`` against another revision's and
cachetools' LRU, to settle changes of a few per cent on a noisy machine.

``bench_cache.py --traces`` times each contender's replays of a row back to back; on a
shared machine a slow spell then lands on one contender. Here every round replays the
row through the three contenders in a fresh random order, and each keeps its fastest
round, so a few per cent can be told apart from the machine's drift::

    .venv/bin/python benchmarks/compare_cache.py --against HEAD~1
    .venv/bin/python benchmarks/compare_cache.py --against 88f4706 --rounds 6 --only OLTP sprite

``--against REV`` extracts ``src/buttress`` of that git revision (``git archive``) into a
temporary directory as the package ``buttress_ab`` (the cache imports only relatively,
so a renamed copy runs unchanged). Without it, only this checkout and cachetools run.
The hit ratio of both revisions is printed too: a change of policy shows up there first.

``--mypyc`` adds this checkout's cache core compiled as the wheel's is (``mypy`` is in
the dev extra; needs a C compiler, ~30 s): ``hatch_build.compile_core`` compiles a copy
of ``src/buttress``, as ``buttress_mypyc``, whose ``cache/_core.py`` becomes a C
extension. Installed from a wheel, buttress runs that core; the editable install this
checkout's column uses runs the pure-Python source (see docs/cache.md, "Performance").
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_cache import (
    _cachetools_lru,
    _replay_get_set,
    _timed,
    load_trace,
    read_reference,
    traces_dir,
)
from buttress.cache import Cache

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

Replay = Callable[[list[int], int], int]


def _buttress(cache_class: Any) -> Replay:
    def run(trace: list[int], size: int) -> int:
        cache = cache_class(size, random=random.Random(0))
        return _replay_get_set(cache.get, cache.set, trace)

    return run


def _revision(rev: str, into: Path) -> Any:
    """``buttress.cache.Cache`` as of git revision ``rev``, imported as ``buttress_ab``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src/buttress"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "src" / "buttress").rename(into / "buttress_ab")
    sys.path.insert(0, str(into))
    return importlib.import_module("buttress_ab.cache").Cache


def _mypyc(into: Path) -> Any:
    """This checkout's ``Cache`` compiled as the wheel's is (``hatch_build.compile_core``),
    imported as ``buttress_mypyc``."""
    spec = importlib.util.spec_from_file_location("hatch_build", REPO / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    try:
        hook.compile_core(into, package="buttress_mypyc")
    except RuntimeError as error:
        raise SystemExit(f"--mypyc: {error}") from error
    sys.path.insert(0, str(into))
    module = importlib.import_module("buttress_mypyc.cache._core")
    if not str(module.__file__).endswith((".so", ".pyd")):
        raise SystemExit(f"buttress_mypyc.cache._core is not compiled: {module.__file__}")
    return module.Cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--rounds", type=int, default=4, help="replays per row and contender")
    parser.add_argument("--only", nargs="+", metavar="TRACE", help="these traces only")
    parser.add_argument(
        "--mypyc", action="store_true", help="also this checkout's cache core compiled by mypyc"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    contenders: dict[str, Replay] = {"new": _buttress(Cache), "ct": _cachetools_lru}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            contenders["old"] = _buttress(_revision(args.against, Path(tmp)))
        if args.mypyc:
            contenders["mypyc"] = _buttress(_mypyc(Path(tmp) / "mypyc"))
        folder = traces_dir()
        reference = read_reference(folder)
        names = list(dict.fromkeys(name for name, _ in reference))
        if args.only:
            names = [n for n in names if n in args.only]
        labels = list(contenders)
        cols = ["trace", "size"] + [f"{c} ns" for c in labels] + ["new/ct"]
        if "mypyc" in contenders:
            cols += ["mypyc/ct", "same hits"]
        if "old" in contenders:
            cols += ["old/ct", "new/old", "hit new", "hit old"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        totals = dict.fromkeys(labels, 0.0)
        rows = 0
        shuffle = random.Random(1)
        for name in names:
            trace, why = load_trace(folder, name)
            if trace is None:
                print(f"skipped {why}", file=sys.stderr)
                continue
            for trace_name, size in reference:
                if trace_name != name:
                    continue
                best: dict[str, float] = {}
                ratio: dict[str, float] = {}  # hit ratio, %
                for _ in range(args.rounds):
                    order = labels[:]
                    shuffle.shuffle(order)
                    for label in order:
                        ratio[label], ns = _timed(contenders[label], trace, size)
                        best[label] = min(ns, best.get(label, ns))
                rows += 1
                for label in labels:
                    totals[label] += best[label]
                cells = [name, str(size)] + [f"{best[c]:.0f}" for c in labels]
                cells.append(f"{best['new'] / best['ct']:.3f}")
                if "mypyc" in best:
                    same = ratio["mypyc"] == ratio["new"]
                    cells += [f"{best['mypyc'] / best['ct']:.3f}", "yes" if same else "**no**"]
                if "old" in best:
                    cells += [f"{best['old'] / best['ct']:.3f}", f"{best['new'] / best['old']:.3f}"]
                    cells += [f"{ratio[c]:.2f}" for c in ("new", "old")]
                print("| " + " | ".join(cells) + " |", flush=True)
        if rows:
            mean = {c: totals[c] / rows for c in labels}
            line = ", ".join(f"{c} {mean[c]:.0f} ns" for c in labels)
            line += f"; new/ct {mean['new'] / mean['ct']:.3f}"
            if "mypyc" in mean:
                line += f", mypyc/ct {mean['mypyc'] / mean['ct']:.3f}"
            if "old" in mean:
                line += f", old/ct {mean['old'] / mean['ct']:.3f}"
                line += f", new/old {mean['new'] / mean['old']:.3f}"
            print(f"\nMean over {rows} rows: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
