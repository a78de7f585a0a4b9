"""Codecs: round trips, type preservation, and refusing what they cannot read."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import buttress as bt
from buttress.cache import Codec, JsonCodec, PickleCodec

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.one_of(json_values, st.binary(), st.text()))
def test_json_codec_round_trips(value: Any) -> None:
    """decode(encode(v)) == v for JSON values, bytes and str (types kept)."""
    codec = JsonCodec()
    back = codec.decode(codec.encode(value))
    assert back == value
    assert type(back) is type(value)


def test_bytes_and_str_pass_through() -> None:
    """bytes and str are stored as they are, behind one tag byte."""
    codec = JsonCodec()
    assert codec.encode(b"\x00\xff") == b"b\x00\xff"
    assert codec.encode("héllo") == "shéllo".encode()
    assert codec.encode({"a": 1}) == b'j{"a":1}'


def test_json_codec_refuses_what_json_cannot_hold() -> None:
    """Sets, NaN and arbitrary objects fail at encode time with TypeError."""
    codec = JsonCodec()
    with pytest.raises(TypeError):
        codec.encode({1, 2})
    with pytest.raises(TypeError):
        codec.encode(float("nan"))
    assert JsonCodec(default=sorted).decode(JsonCodec(default=sorted).encode({2, 1})) == [1, 2]


def test_json_codec_refuses_foreign_bytes() -> None:
    """Bytes it did not write (a pickle, garbage) are a ValueError, never executed."""
    codec = JsonCodec()
    with pytest.raises(ValueError, match="not a JsonCodec value"):
        codec.decode(pickle.dumps(object))
    with pytest.raises(ValueError, match="cannot decode"):
        codec.decode(b"j{not json")


def test_pickle_codec_is_opt_in_and_round_trips() -> None:
    """PickleCodec keeps Python types; it refuses JSON-codec bytes and bad protocols."""
    codec = PickleCodec()
    value = {"t": (1, 2), "s": frozenset({3})}
    assert codec.decode(codec.encode(value)) == value
    with pytest.raises(ValueError, match="not a PickleCodec value"):
        codec.decode(JsonCodec().encode(1))
    with pytest.raises(bt.ConfigError, match="protocol must be"):
        PickleCodec(protocol=99)


def test_codecs_satisfy_the_protocol() -> None:
    """Both built-in codecs are Codecs."""
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(PickleCodec(), Codec)
