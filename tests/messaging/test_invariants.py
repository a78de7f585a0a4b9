"""At-least-once as an invariant: whatever consumers do (ack, fail, die holding
messages), no published message is lost, and delivery counts only grow."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from buttress.messaging import MemoryTransport, Message
from buttress.testing import FakeClock

# One step: (consumer index, action): fetch up to 3 and "ack" / "retry" / "die" (hold,
# never settle), or let time pass.
STEP = st.one_of(
    st.tuples(st.integers(0, 2), st.sampled_from(["ack", "retry", "die"])),
    st.tuples(st.just(-1), st.floats(0.0, 3.0)),
)


async def _run(published: int, steps: list[tuple[int, object]]) -> None:
    clock = FakeClock(autojump=False)
    transport = MemoryTransport(clock=clock)
    for i in range(published):
        await transport.publish("t", str(i).encode())
    subs = [
        await transport.subscribe("t", group="g", consumer=f"c{n}", lease=1.0) for n in range(3)
    ]
    acked: set[str] = set()
    seen: dict[str, int] = {}
    for who, what in steps:
        if who < 0:
            assert isinstance(what, float)
            clock.advance(what)
            continue
        sub = subs[who]
        for msg in await sub.fetch(3, 0.0):
            assert msg.id not in acked, "an acked message was delivered again"
            assert msg.deliveries > seen.get(msg.id, 0), "delivery counts only grow"
            seen[msg.id] = msg.deliveries
            if what == "ack":
                await sub.ack(msg)
                acked.add(msg.id)
            elif what == "retry":
                await sub.retry(msg, 0.5)
    # Every consumer dies now; once the leases run out, a newcomer gets all the rest.
    clock.advance(10.0)
    last = await transport.subscribe("t", group="g", consumer="last", lease=1.0)
    rest: list[Message] = []
    while batch := await last.fetch(100, 0.0):
        rest += batch
    assert acked | {m.id for m in rest} == {str(i) for i in range(1, published + 1)}
    assert not acked & {m.id for m in rest}


@settings(max_examples=150, deadline=None)
@given(published=st.integers(0, 12), steps=st.lists(STEP, max_size=40))
def test_no_message_is_lost(published: int, steps: list[tuple[int, object]]) -> None:
    """Any interleaving of acks, retries, deaths and time: acked + redeliverable = all."""
    asyncio.run(_run(published, steps))
