"""Toxic validation, the timing cores and HTTP framing, without sockets."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buttress as bt
from buttress.chaos import make_toxic
from buttress.chaos._http import Framer, Head
from buttress.chaos._toxics import Pacer, latency_delay, slice_sizes, toxic_from_json


def test_defaults_follow_toxiproxy() -> None:
    """Name type_stream, stream downstream, toxicity 1, attributes filled in."""
    toxic = make_toxic("latency", attributes={"latency": 100})
    assert toxic.to_json() == {
        "attributes": {"latency": 100, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "latncy"}, "type must be a toxic type, one of latency"),
        ({"type": "latency", "stream": "sideways"}, "stream must be 'upstream' or 'downstream'"),
        ({"type": "latency", "toxicity": 2}, r"toxicity must be a number in \[0, 1\]"),
        ({"type": "latency", "attributes": {"latency": -1}}, "attributes.latency of a latency"),
        ({"type": "latency", "attributes": {"delay": 1}}, "unknown: delay"),
        ({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}}, "below"),
        ({"type": "http_status", "stream": "upstream"}, "rewrites responses"),
        ({"type": "http_status", "attributes": {"status_code": 700}}, r"<= 599"),
        ({"type": "fail_first", "attributes": {"mode": "explode"}}, "'reset' | 'close'"),
    ],
)
def test_bad_toxics_are_named(kwargs: dict, message: str) -> None:
    """Each bad field gets a message naming it and what is allowed."""
    kind = kwargs.pop("type")
    with pytest.raises(bt.ConfigError, match=message):
        make_toxic(kind, **kwargs)


def test_unknown_json_fields_are_refused() -> None:
    """A typo in a toxic's JSON is an error, not silently ignored."""
    with pytest.raises(bt.ConfigError, match="unknown toxic field"):
        toxic_from_json({"type": "latency", "atributes": {}})


@given(st.floats(0, 5000), st.floats(0, 5000), st.integers(0, 2**32))
@settings(max_examples=60)
def test_latency_jitter_stays_in_bounds(latency: float, jitter: float, seed: int) -> None:
    """latency ± jitter, in seconds, never negative."""
    delay = latency_delay(latency, jitter, random.Random(seed))
    assert max(0.0, latency - jitter) / 1000 - 1e-9 <= delay <= (latency + jitter) / 1000 + 1e-9


def test_latency_jitter_spreads_both_ways() -> None:
    """The jitter is centred on the latency."""
    rng = random.Random(1)
    draws = [latency_delay(100, 20, rng) for _ in range(2000)]
    assert min(draws) < 0.085 and max(draws) > 0.115
    assert sum(draws) / len(draws) == pytest.approx(0.1, abs=0.002)


@given(
    st.floats(100, 1e6),
    st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 200_000)), min_size=1, max_size=30),
)
@settings(max_examples=60)
def test_pacer_never_exceeds_the_rate(rate: float, arrivals: list[tuple[float, int]]) -> None:
    """Bytes released by time t never exceed rate * (t - first arrival) + one piece."""
    pacer = Pacer(rate)
    now = 0.0
    releases: list[tuple[float, int]] = []
    for gap, size in arrivals:
        now += gap
        plan = pacer.plan(size, now)
        assert sum(n for _, n in plan) == size
        assert all(at > now for at, _ in plan)
        releases += plan
    start = arrivals[0][0]
    sent = 0
    for at, n in releases:
        sent += n
        assert sent <= rate * (at - start) + pacer.piece + 1e-6


def test_pacer_does_not_bank_idle_time() -> None:
    """After an idle spell a chunk is paced from its arrival, not released at once."""
    pacer = Pacer(1000.0)
    pacer.plan(100, 0.0)
    plan = pacer.plan(100, 10.0)
    assert plan[-1][0] == pytest.approx(10.1)


@given(st.integers(0, 100_000), st.integers(1, 500), st.data())
@settings(max_examples=80)
def test_slices_sum_to_the_chunk(size: int, average: int, data: st.DataObject) -> None:
    """Slices are non-empty, sum to the chunk, and stay near the average."""
    variation = data.draw(st.integers(0, average - 1))
    sizes = slice_sizes(size, average, variation, random.Random(size))
    assert sum(sizes) == size
    assert all(s > 0 for s in sizes)
    assert all(s <= average + variation for s in sizes)


RESPONSES = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"  # a reply to HEAD: no body follows
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
)
METHODS = ["GET", "GET", "GET", "POST", "HEAD", "GET"]


def _events(chunks: list[bytes]) -> list[tuple[str, object]]:
    framer = Framer("response", deque(METHODS))
    out: list[tuple[str, object]] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    assert framer.at_boundary
    merged: list[tuple[str, object]] = []
    for kind, value in out:
        if kind == "head":
            assert isinstance(value, Head)
            merged.append(("head", value.status))
        elif kind == "body" and merged and merged[-1][0] == "body":
            merged[-1] = ("body", merged[-1][1] + value)  # type: ignore[operator]
        else:
            merged.append((kind, value))
    return merged


def test_framer_splits_keep_alive_responses() -> None:
    """Content-Length, chunked with trailers, 204, 1xx, HEAD and 304 frame correctly."""
    assert _events([RESPONSES]) == [
        ("head", 200), ("body", b"hello"), ("end", None),
        ("head", 200), ("body", b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n"), ("end", None),
        ("head", 204), ("end", None),
        ("head", 100), ("end", None), ("head", 200), ("body", b"ok"), ("end", None),
        ("head", 200), ("end", None),
        ("head", 304), ("end", None),
    ]  # fmt: skip


@given(st.lists(st.integers(1, len(RESPONSES) - 1), max_size=20))
@settings(max_examples=80)
def test_framing_does_not_depend_on_how_bytes_arrive(cuts: list[int]) -> None:
    """Any split of the stream gives the same messages."""
    points = sorted(set(cuts))
    chunks = [RESPONSES[a:b] for a, b in zip([0, *points], [*points, len(RESPONSES)], strict=True)]
    assert _events(chunks) == _events([RESPONSES])


def test_framer_gives_up_on_garbage_and_passes_it_through() -> None:
    """A malformed stream becomes raw bytes, never an exception."""
    framer = Framer("response")
    events = framer.feed(b"SSH-2.0-OpenSSH\r\n\r\nmore")
    assert framer.passthrough
    assert events == [("raw", b"SSH-2.0-OpenSSH\r\n\r\nmore")]
    assert framer.feed(b"x") == [("raw", b"x")]


def test_body_until_close() -> None:
    """A response with neither length nor chunking ends with the connection."""
    framer = Framer("response")
    assert [k for k, _ in framer.feed(b"HTTP/1.0 200 OK\r\n\r\nabc")] == ["head", "body"]
    assert framer.eof() == [("end", None)]
