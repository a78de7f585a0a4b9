"""In-memory transport specifics."""

from __future__ import annotations

import pytest

import buttress as bt
from buttress.messaging import BrokerError, MemoryTransport, Message
from buttress.testing import FakeClock


def test_message_key_defaults_to_id() -> None:
    """Message.key falls back to the id; reply_to reads the Reply-To header."""
    assert Message("7", "t", b"x").key == "7"
    assert Message("7", "t", b"x", key="k").key == "k"
    assert Message("7", "t", b"x", headers={"Reply-To": "r"}).reply_to == "r"


async def test_max_len_drops_the_oldest_even_pending() -> None:
    """max_len keeps the newest messages, as Redis MAXLEN does."""
    transport = MemoryTransport(max_len=3)
    sub = await transport.subscribe("t", group="g", consumer="c", lease=1.0)
    for i in range(5):
        await transport.publish("t", str(i).encode())
    assert transport.size("t") == 3
    got = await sub.fetch(10, 0.0)
    assert [m.body for m in got] == [b"2", b"3", b"4"]


async def test_start_latest_skips_history() -> None:
    """A group created with start='latest' sees only later messages."""
    transport = MemoryTransport(start="latest")
    await transport.publish("t", b"old")
    sub = await transport.subscribe("t", group="g", consumer="c")
    await transport.publish("t", b"new")
    assert [m.body for m in await sub.fetch(10, 0.0)] == [b"new"]


async def test_lease_expiry_redelivers_in_virtual_time(clock: FakeClock) -> None:
    """An unacked message goes to another consumer when its (renewed) lease runs out."""
    transport = MemoryTransport(clock=clock)
    await transport.publish("t", b"x")
    a = await transport.subscribe("t", group="g", consumer="a", lease=5.0)
    b = await transport.subscribe("t", group="g", consumer="b", lease=5.0)
    (first,) = await a.fetch(1, 0.0)
    assert await b.fetch(1, 0.0) == []
    clock.advance(4.9)
    await a.extend([first])  # renewed: 5 s more from now
    clock.advance(4.9)
    assert await b.fetch(1, 0.0) == []
    (again,) = await b.fetch(1, 1.0)  # waits (virtually) for the lease to run out
    assert again.id == first.id and again.deliveries == 2
    assert clock.monotonic() == pytest.approx(9.9)  # 4.9 + the renewed 5 s lease
    await a.ack(first)  # a late ack from the old owner still settles it (as XACK does)
    assert transport.pending("t", "g") == 0


async def test_closed_transport_refuses() -> None:
    """A closed transport raises BrokerError."""
    transport = MemoryTransport()
    await transport.close()
    with pytest.raises(BrokerError, match="closed"):
        await transport.publish("t", b"x")


def test_options_are_validated() -> None:
    """Bad options raise ConfigError naming the option, its value and what is allowed."""
    with pytest.raises(bt.ConfigError, match="max_len must be an int >= 1, got 0"):
        MemoryTransport(max_len=0)
    with pytest.raises(bt.ConfigError, match="start must be one of"):
        MemoryTransport(start="now")
