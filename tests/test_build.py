"""The build: wheels carry the cache core compiled by mypyc (hatch_build.py).

``scripts/test`` builds that wheel and runs the cache tests against it with
``BUTTRESS_EXPECT_COMPILED=1``; these tests check that it really ran the compiled core and
that the hook prepares the source as documented.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

import buttress.cache._core as core

ROOT = Path(__file__).resolve().parent.parent


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    not os.environ.get("BUTTRESS_EXPECT_COMPILED"),
    reason="runs against the built wheel (scripts/test sets BUTTRESS_EXPECT_COMPILED=1)",
)
def test_the_wheel_runs_the_compiled_core() -> None:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert str(core.__file__).endswith(suffix), core.__file__
    assert Path(core.__file__).with_name("_core.py").exists()  # the source ships beside it
    # mypyc drops docstrings; the package reads the classes' back from that source
    assert str(core.Cache.__doc__).startswith("A bounded in-process cache")
    assert "Attributes:" in str(core.CacheStats.__doc__)


def _init_args(source: str) -> list[ast.arg]:
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Cache")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return [*init.args.args[1:], *init.args.kwonlyargs]


def test_mypyc_sees_the_constructor_arguments_as_any_and_nothing_else_changes() -> None:
    """mypyc would type-check ``max_size: int`` on entry and raise a TypeError naming no
    argument; annotated ``Any``, the constructor's own validation answers instead."""
    source = (ROOT / "src" / "buttress" / "cache" / "_core.py").read_text()
    prepared = _hook().for_mypyc(source)
    args = _init_args(prepared)
    assert [a.arg for a in args] == [a.arg for a in _init_args(source)]
    assert "max_size" in [a.arg for a in args]
    assert all(ast.unparse(a.annotation) == "Any" for a in args if a.annotation is not None)
    # every other line is untouched
    old, new = source.splitlines(), prepared.splitlines()
    assert len(old) == len(new)
    changed = [(o, n) for o, n in zip(old, new, strict=True) if o != n]
    assert len(changed) == len(args)
    assert all(o.split(":")[0] == n.split(":")[0] for o, n in changed)


def test_the_hook_refuses_a_source_without_the_cache_constructor() -> None:
    with pytest.raises(RuntimeError, match=r"no Cache.__init__"):
        _hook().for_mypyc("class Cache:\n    pass\n")


def test_a_bad_compile_mode_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTRESS_COMPILE", "sometimes")
    with pytest.raises(ValueError, match=r"BUTTRESS_COMPILE='sometimes'.*auto, required, 0"):
        _hook()._mode()


def test_the_hook_edits_by_utf8_offsets() -> None:
    """ast counts columns in UTF-8 bytes; a non-ASCII name before an annotation on the
    same line must not shift the edit."""
    source = (
        "class Cache:\n"
        "    def __init__(self, a: int = 1, *, é: str | None = None, b: list[int] = []):\n"
        "        pass  # café\n"
    )
    assert _hook().for_mypyc(source).splitlines()[1] == (
        "    def __init__(self, a: Any = 1, *, é: Any = None, b: Any = []):"
    )
