"""Balancer pick overhead: one tracked pick (choose, count in flight, record latency and
outcome on exit) per strategy, beside a bare ``random.choice`` over the same endpoints.

No peer library balances requests in-process the way Finagle/Linkerd do, so the reference
is the naive client-side balancer: ``random.choice(endpoints)``, which tracks nothing.
Ten endpoints, all healthy, outlier detection on (its bookkeeping is part of the cost).
"""

from __future__ import annotations

import random

from _harness import Contender, RatioColumn, Suite
from buttress.balance import Balancer, Endpoint

_ADDRS = [f"10.0.0.{i}:8080" for i in range(1, 11)]
_STRATEGIES = ("p2c_ewma", "p2c_least_requests", "round_robin", "random", "hash")


def _pick_suite() -> Suite:
    endpoints = list(_ADDRS)
    contenders = [
        Contender(
            "random-choice",
            "`random.choice(endpoints)` (tracks nothing)",
            "stdlib",
            "call",
            "choice(endpoints)",
            {"choice": random.choice, "endpoints": endpoints},
            config="endpoints = [10 addresses]",
        )
    ]
    for strategy in _STRATEGIES:
        balancer = Balancer(_ADDRS, strategy=strategy, random=random.Random(1))
        stmt = (
            "with balancer.pick(key=7):\n    pass"
            if strategy == "hash"
            else "with balancer.pick():\n    pass"
        )
        contenders.append(
            Contender(
                f"bt-{strategy}",
                f"buttress `with balancer.pick()` ({strategy})",
                "buttress",
                "call",
                stmt,
                {"balancer": balancer},
                config=f"balancer = bt.Balancer(10 addresses, strategy={strategy!r})"
                "  # outlier detection on (default)",
            )
        )
    weighted = Balancer(
        [Endpoint(a, weight=1 + i % 3) for i, a in enumerate(_ADDRS)], random=random.Random(1)
    )
    contenders.append(
        Contender(
            "bt-p2c_ewma-weighted",
            "buttress `with balancer.pick()` (p2c_ewma, weights 1-3)",
            "buttress",
            "call",
            "with balancer.pick():\n    pass",
            {"balancer": weighted},
            config="Balancer([Endpoint(a, weight=1 + i % 3) ...])",
        )
    )
    return Suite(
        name="balance-pick",
        title="Balancer pick (sync, 10 endpoints)",
        kind="sync",
        description="One pick tracked from choice to completion, against an empty loop; "
        "ratios against a bare `random.choice`.",
        baseline=Contender("empty", "empty loop (`pass`)", "-", "-", "pass", {}),
        contenders=contenders,
        columns=[RatioColumn("vs random.choice", {}, "random-choice")],
        order=130,
    )


def _async_suite() -> Suite:
    balancer = Balancer(_ADDRS, random=random.Random(1))
    return Suite(
        name="balance-pick-async",
        title="Balancer pick (async, 10 endpoints)",
        kind="async",
        description="`async with balancer.pick()` in a running loop, against an empty loop.",
        baseline=Contender("empty", "empty loop (`pass`)", "-", "-", "pass", {}),
        contenders=[
            Contender(
                "bt-async",
                "buttress `async with balancer.pick()` (p2c_ewma)",
                "buttress",
                "context",
                "async with balancer.pick():\n    pass",
                {"balancer": balancer},
                config="balancer = Balancer(10 addresses)",
            )
        ],
        order=131,
    )


def suites() -> list[Suite]:
    return [_pick_suite(), _async_suite()]
