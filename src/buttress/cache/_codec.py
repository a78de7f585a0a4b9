"""Codecs: how a cached value becomes bytes in Redis and back.

Redis is shared: anything able to write a key can make every reader decode it. Unpickling
runs code chosen by the bytes, so a pickle codec turns write access to the cache into code
execution in every process that reads it. The default is therefore :class:`JsonCodec`
(bytes and str pass through untouched, everything else is JSON); :class:`PickleCodec` is
there for trusted, private Redis instances and must be asked for by name.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec", "JsonCodec", "PickleCodec"]

# One tag byte says how the rest was written, so bytes and str survive a round trip with
# their type (JSON alone would turn b"x" into an error and "x" into a quoted string).
_BYTES = b"b"
_STR = b"s"
_JSON = b"j"
_PICKLE = b"p"


@runtime_checkable
class Codec(Protocol):
    """Turns cached values into bytes and back. ``decode(encode(v))`` must equal ``v``.

    ``decode`` raises ``ValueError`` for bytes it cannot read; the cache then treats the
    entry as a miss (and counts it) rather than failing the caller.

    Example::

        class MsgpackCodec:
            def encode(self, value: object) -> bytes:
                return msgpack.packb(value)

            def decode(self, data: bytes) -> object:
                return msgpack.unpackb(data)
    """

    def encode(self, value: Any) -> bytes:
        """The bytes stored in Redis for ``value``."""
        ...

    def decode(self, data: bytes) -> Any:
        """The value that :meth:`encode` turned into ``data``."""
        ...


class JsonCodec:
    """The default codec: ``bytes`` and ``str`` pass through, anything else is JSON.

    Safe on a shared Redis (decoding never runs code). JSON has no tuples, sets or
    non-str dict keys: a tuple comes back as a list, and values JSON cannot represent
    raise ``TypeError`` at ``set`` time, in the caller, not later in a reader.

    Args:
        default: passed to :func:`json.dumps` for types it does not know. Default ``None``.
        object_hook: passed to :func:`json.loads`. Default ``None``.

    Example::

        cache = bt.RedisCache(client, codec=bt.JsonCodec(default=str))
    """

    __slots__ = ("_dumps", "_loads")

    def __init__(self, *, default: Any = None, object_hook: Any = None) -> None:
        encoder = json.JSONEncoder(
            default=default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        decoder = json.JSONDecoder(object_hook=object_hook)
        self._dumps = encoder.encode
        self._loads = decoder.decode

    def __repr__(self) -> str:
        return "JsonCodec()"

    def encode(self, value: Any) -> bytes:
        """Tag + raw bytes, tag + UTF-8 text, or tag + JSON."""
        if isinstance(value, bytes):
            return _BYTES + value
        if isinstance(value, str):
            return _STR + value.encode("utf-8", "surrogatepass")
        try:
            return _JSON + self._dumps(value).encode("utf-8", "surrogatepass")
        except ValueError as exc:  # NaN/inf, circular references
            raise TypeError(f"JsonCodec cannot encode {value!r:.80}: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """The inverse of :meth:`encode`; ``ValueError`` for anything else."""
        tag = data[:1]
        if tag == _BYTES:
            return data[1:]
        try:
            if tag == _STR:
                return data[1:].decode("utf-8", "surrogatepass")
            if tag == _JSON:
                return self._loads(data[1:].decode("utf-8", "surrogatepass"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot decode cached value: {exc}") from exc
        raise ValueError(f"not a JsonCodec value (tag {tag!r})")


class PickleCodec:
    """Any picklable value, via :mod:`pickle`. **Only for a Redis you fully trust.**

    Whoever can write to the cache's keys can run code in every process that reads them
    (unpickling executes what the bytes say). Use it for a private Redis, or not at all.

    Args:
        protocol: the pickle protocol. Default ``pickle.HIGHEST_PROTOCOL``.

    Raises:
        ConfigError: ``protocol`` is not an int in ``[0, pickle.HIGHEST_PROTOCOL]``.

    Example::

        cache = bt.RedisCache(private_client, codec=bt.PickleCodec())
    """

    __slots__ = ("protocol",)

    def __init__(self, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        from .. import _validate as v

        self.protocol = v.integer("protocol", protocol, maximum=pickle.HIGHEST_PROTOCOL)

    def __repr__(self) -> str:
        return f"PickleCodec(protocol={self.protocol})"

    def encode(self, value: Any) -> bytes:
        """Tag + pickle."""
        return _PICKLE + pickle.dumps(value, self.protocol)

    def decode(self, data: bytes) -> Any:
        """The unpickled value; ``ValueError`` if the bytes are not ours."""
        if data[:1] != _PICKLE:
            raise ValueError(f"not a PickleCodec value (tag {data[:1]!r})")
        try:
            return pickle.loads(data[1:])  # opt-in, see the class docs
        except Exception as exc:
            raise ValueError(f"cannot unpickle cached value: {exc!r}") from exc
