"""Machine-level cost per access of the trace replay, buttress beside cachetools LRU.

Wall time on a shared VM moves by tens of per cent between runs; ``valgrind
--tool=cachegrind`` counts are deterministic (with ``PYTHONHASHSEED=0``). For each row and
contender this runs ``bench_cache.py --replay-one`` twice under cachegrind, with N1 and N2
requests, and divides the difference by N2 - N1: start-up and trace loading cancel out.
Reported per access: instructions (Ir), L1 instruction-cache misses (I1), L1 data-cache
misses (D1) and mispredicted branches (Bm), as cachegrind simulates them.

Usage: ``python benchmarks/cachegrind_cache.py [TRACE:SIZE:N1:N2 ...]`` (needs valgrind;
a few minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROWS = ["OLTP:250:100000:300000", "multi2:512:6000:26000", "sprite:512:20000:60000"]
CONTENDERS = ["buttress", "cachetools LRU"]
EVENTS = {"Ir": r"I\s+refs:\s+([\d,]+)", "I1": r"I1\s+misses:\s+([\d,]+)",
          "D1": r"D1\s+misses:\s+([\d,]+)", "Bm": r"Mispredicts:\s+([\d,]+)"}  # fmt: skip
BENCH = Path(__file__).with_name("bench_cache.py")


def counts(trace: str, size: str, contender: str, n: int) -> dict[str, int]:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes"]
    command += ["--cachegrind-out-file=/dev/null", sys.executable, str(BENCH)]
    command += ["--replay-one", trace, size, contender, str(n)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=True,
    )
    out: dict[str, int] = {}
    for name, pattern in EVENTS.items():
        match = re.search(pattern, done.stderr)
        if match is None:
            raise SystemExit(f"no {name} in cachegrind's output:\n{done.stderr[-2000:]}")
        out[name] = int(match.group(1).replace(",", ""))
    return out


def main(rows: list[str]) -> int:
    print("| trace | size | contender | Ir | I1 misses | D1 misses | mispredicted branches |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        trace, size, n1, n2 = row.split(":")
        for contender in CONTENDERS:
            a = counts(trace, size, contender, int(n1))
            b = counts(trace, size, contender, int(n2))
            per = {k: (b[k] - a[k]) / (int(n2) - int(n1)) for k in EVENTS}
            cells = " | ".join(f"{per[k]:.0f}" for k in EVENTS)
            print(f"| {trace} | {size} | {contender} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ROWS))
