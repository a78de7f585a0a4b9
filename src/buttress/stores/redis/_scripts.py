"""The Lua scripts of the Redis store, loaded from their .lua files once."""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["GCRA", "Script"]


class Script:
    """A Lua script's text and SHA1 (what EVALSHA runs)."""

    __slots__ = ("sha", "text")

    def __init__(self, filename: str) -> None:
        self.text = resources.files(__package__).joinpath(filename).read_text("utf-8")
        self.sha = hashlib.sha1(self.text.encode("utf-8")).hexdigest()


GCRA = Script("gcra.lua")
