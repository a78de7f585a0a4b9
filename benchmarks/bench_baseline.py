"""The bare calls every other suite subtracts, timed against an empty loop.

Shown at the top of the report so the absolute overheads can be judged: an overhead of
100 ns is "about three bare calls" on the machine that produced it.
"""

from __future__ import annotations

from _harness import Contender, Suite
from _targets import af, f

BASELINE_SUITES = ("baseline-sync", "baseline-async")


def suites() -> list[Suite]:
    return [
        Suite(
            name="baseline-sync",
            title="Bare sync call",
            kind="sync",
            description="`f()` against an empty loop body (`pass`).",
            baseline=Contender("empty", "empty loop (`pass`)", "-", "-", "pass", {}),
            contenders=[Contender("bare", "`f()`", "-", "-", "f()", {"f": f})],
            order=0,
        ),
        Suite(
            name="baseline-async",
            title="Bare async call",
            kind="async",
            description="`await af()` against an empty loop body, inside a running loop.",
            baseline=Contender("empty", "empty loop (`pass`)", "-", "-", "pass", {}),
            contenders=[Contender("bare", "`await af()`", "-", "-", "await af()", {"af": af})],
            order=1,
        ),
    ]
