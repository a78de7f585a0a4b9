"""Docstrings for the compiled cache core.

Wheels carry ``_core.py`` compiled by mypyc (``hatch_build.py``), which drops docstrings:
a compiled class's ``__doc__`` is empty. The source ships beside the extension, so each
class gets a descriptor that reads its docstring from there on first use (``help()``,
``inspect.getdoc`` and documentation tools then show the same text as the pure-Python
build; nothing is parsed at import). Method docstrings cannot be put back (a compiled
method's ``__doc__`` is read-only); editors read them from the shipped source.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from types import ModuleType


class _SourceDoc:
    """A class's ``__doc__``, read from its module's source the first time it is asked."""

    __slots__ = ("_doc", "_name", "_source")

    def __init__(self, source: Path, name: str) -> None:
        self._source, self._name = source, name
        self._doc: str | None = None

    def __get__(self, instance: object, owner: type | None = None) -> str:
        if self._doc is None:
            self._doc = _class_docs(self._source).get(self._name, "")
        return self._doc


@functools.cache
def _class_docs(source: Path) -> dict[str, str]:
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    return {
        node.name: ast.get_docstring(node, clean=False) or ""
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def restore_class_docs(module: ModuleType, names: tuple[str, ...]) -> None:
    """Give the classes ``names`` of a compiled ``module`` their docstrings back; a
    no-op for the pure-Python module (its classes have theirs)."""
    if module.__file__ is None or module.__file__.endswith(".py"):
        return
    source = Path(module.__file__).with_name(module.__name__.rpartition(".")[2] + ".py")
    for name in names:
        cls = getattr(module, name)
        if not cls.__doc__:
            # type.__doc__ calls a descriptor found in the class's namespace
            setattr(cls, "__doc__", _SourceDoc(source, name))  # noqa: B010
