"""Errors of the chaos tools; all subclass :class:`~buttress.ButtressError`.

::

    ButtressError
    ├── ConfigError                   bad toxic, bad option (HTTP 400 in the proxy API)
    │   └── ExperimentInvalidError    an experiment file failed validation (``problems``)
    └── ProxyError                    the fault proxy could not do it (``status``: HTTP code)
        ├── ProxyNotFoundError        no such proxy or toxic (404; also a LookupError)
        └── ProxyConflictError        a proxy or toxic of that name exists (409)
"""

from __future__ import annotations

from .._errors import ButtressError, ConfigError

__all__ = [
    "ExperimentInvalidError",
    "ProxyConflictError",
    "ProxyError",
    "ProxyNotFoundError",
]


class ProxyError(ButtressError):
    """The fault proxy could not carry out a request (a port in use, not running, ...).

    Attributes:
        status: the HTTP status the Toxiproxy-compatible API answers with (500 here).

    Example::

        try:
            server.create("redis", upstream="127.0.0.1:6379", listen="127.0.0.1:6380")
        except bt.chaos.ProxyError as exc:
            print(exc.status, exc)      # 500 listen tcp 127.0.0.1:6380: address already in use
    """

    status = 500

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ProxyNotFoundError(ProxyError, LookupError):
    """No proxy (or toxic) of that name (HTTP 404, ``{"error": "proxy not found"}``)."""

    status = 404


class ProxyConflictError(ProxyError):
    """A proxy (or toxic) of that name already exists (HTTP 409)."""

    status = 409


class ExperimentInvalidError(ConfigError):
    """An experiment file is malformed. ``problems`` lists every problem found, each as
    ``"path.to.field: what is wrong; what is allowed"``; the message joins them."""

    def __init__(self, problems: list[str], source: str = "experiment") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} is not a valid experiment:\n{lines}")
