"""The cache's Lua scripts, loaded from their .lua files once."""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["FILL", "GET_OR_LEASE", "RELEASE", "WRITE", "Script"]


class Script:
    """A Lua script's text and SHA1 (what EVALSHA runs)."""

    __slots__ = ("sha", "text")

    def __init__(self, filename: str) -> None:
        self.text = resources.files(__package__).joinpath(filename).read_text("utf-8")
        self.sha = hashlib.sha1(self.text.encode("utf-8")).hexdigest()


GET_OR_LEASE = Script("get_or_lease.lua")
FILL = Script("fill.lua")
RELEASE = Script("release.lua")
WRITE = Script("write.lua")
