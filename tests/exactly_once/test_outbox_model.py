"""A model-based check of the outbox claim rule (hypothesis): whatever the interleaving
of adds, claims, publishes, crashes and time, a row is never held by two live relays,
each key's rows are published in order, and everything is published in the end."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buttress.messaging._outbox import SQLiteOutbox, _SQLiteBackend

LEASE = 10.0

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from([None, "a", "b", "c"])),
        st.tuples(st.just("claim"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("publish"), st.integers(0, 2)),
        st.tuples(st.just("crash"), st.integers(0, 2)),
        st.tuples(st.just("advance"), st.sampled_from([1.0, 6.0, 11.0])),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_claim_rule_invariants(steps: list[tuple[object, ...]]) -> None:
    """No double holding, per-key order, nothing lost."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_check(str(Path(tmp) / "o.db"), steps))


async def _check(path: str, steps: list[tuple[object, ...]]) -> None:
    now = [0.0]
    outbox = SQLiteOutbox(path, now=lambda: now[0])
    conn = sqlite3.connect(path)
    outbox.create_table(conn)
    backend = _SQLiteBackend(outbox)
    keys: dict[int, str | None] = {}
    held: dict[int, dict[int, float]] = {0: {}, 1: {}, 2: {}}  # relay -> row -> lease end
    published: list[int] = []
    try:
        for step in steps:
            kind = step[0]
            if kind == "add":
                key = step[1]
                assert key is None or isinstance(key, str)
                with conn:
                    outbox.add(conn, "t", b"x", key=key)
                keys[int(conn.execute("SELECT MAX(id) FROM buttress_outbox").fetchone()[0])] = key
            elif kind == "claim":
                relay, limit = int(step[1]), int(step[2])  # type: ignore[call-overload]
                rows = await backend.claim(f"r{relay}", limit, now[0], now[0] + LEASE)
                for row in rows:
                    for other, holding in held.items():
                        if other != relay and row.id in holding:
                            # Only an expired lease may be taken over.
                            assert holding[row.id] < now[0], "row held by two live relays"
                            del holding[row.id]
                    held[relay][row.id] = now[0] + LEASE
            elif kind == "publish":
                relay = int(step[1])  # type: ignore[call-overload]
                live = sorted(r for r, end in held[relay].items() if end >= now[0])
                published.extend(live)
                if live:
                    await backend.complete(f"r{relay}", live)
                held[relay].clear()
            elif kind == "crash":
                held[int(step[1])].clear()  # type: ignore[call-overload]
            else:
                now[0] += float(step[1])  # type: ignore[arg-type]
        # Recovery: past every lease, one relay drains what is left.
        now[0] += LEASE + 1
        while rows := await backend.claim("final", 100, now[0], now[0] + LEASE):
            ids = [r.id for r in rows]
            published.extend(ids)
            await backend.complete("final", ids)
    finally:
        conn.close()
        await backend.close()
    assert sorted(set(published)) == sorted(keys), "a row was lost"
    assert len(published) == len(set(published)), "a row was published twice"
    for key in {k for k in keys.values() if k is not None}:
        order = [r for r in published if keys[r] == key]
        assert order == sorted(order), f"key {key} out of order: {order}"
