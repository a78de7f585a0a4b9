"""Build hook: compile the cache's core (``src/buttress/cache/_core.py``) with mypyc.

The core is ordinary typed Python; mypyc turns it into a C extension that replays a cache
trace in about two thirds of the pure-Python time (benchmarks/RESULTS.md §31). The wheel
keeps ``_core.py`` beside the compiled module, and Python imports the extension first.

``BUTTRESS_COMPILE`` picks what a wheel build does:

* ``auto`` (the default): compile when mypyc and a C compiler can; otherwise warn and
  build the pure-Python wheel, which behaves the same, only slower.
* ``required``: fail the build when the core cannot be compiled (CI uses this).
* ``0``: never compile (a pure-Python, ``py3-none-any`` wheel).

Editable installs (``pip install -e .``) are always pure Python: a compiled module beside
the source would shadow every later edit of ``_core.py``. The compilation runs on a copy
of the package in a temporary directory, so no build product lands in ``src/``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported outside a build, by benchmarks/compare_cache.py
    BuildHookInterface = object

ROOT = Path(__file__).resolve().parent
CORE = "cache/_core.py"  # inside the package
MODES = ("auto", "required", "0")
# setup.py run in the work directory: mypyc type-checks the package (the optional
# dependencies other modules import need not be installed) and builds the extension in
# place.
SETUP = """
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="buttress-core",
    packages=[],
    ext_modules=mypycify(["--ignore-missing-imports", {path!r}], opt_level="3"),
    script_args=["build_ext", "--inplace"],
)
"""


def for_mypyc(source: str) -> str:
    """``_core.py`` as mypyc compiles it: ``Cache.__init__``'s parameters annotated ``Any``.

    mypyc checks an argument typed ``int``, ``str``, ``float``, ``tuple | list`` ... on
    entry and raises ``TypeError: int object expected; got float``, naming neither the
    argument nor what is allowed. The constructor's body validates every argument and
    raises ``ConfigError`` saying both, as the pure-Python build does; the annotations
    callers type-check against stay in the shipped ``_core.py``.
    """
    tree = ast.parse(source)
    init = next(
        (
            node
            for cls in tree.body
            if isinstance(cls, ast.ClassDef) and cls.name == "Cache"
            for node in cls.body
            if isinstance(node, ast.FunctionDef) and node.name == "__init__"
        ),
        None,
    )
    if init is None:
        raise RuntimeError(f"{CORE} has no Cache.__init__ to prepare for mypyc")
    # ast's column offsets count UTF-8 bytes: edit the encoded text
    text = source.encode("utf-8")
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for arg in [*init.args.args[1:], *init.args.kwonlyargs]:
        note = arg.annotation
        if note is None or note.end_lineno is None or note.end_col_offset is None:
            continue
        spans.append(
            (
                starts[note.lineno - 1] + note.col_offset,
                starts[note.end_lineno - 1] + note.end_col_offset,
            )
        )
    for begin, end in sorted(spans, reverse=True):
        text = text[:begin] + b"Any" + text[end:]
    return text.decode("utf-8")


def compile_core(workdir: Path, package: str = "buttress") -> list[Path]:
    """Compile a copy of ``src/buttress`` (as ``package``) in ``workdir`` with mypyc;
    return the extension modules produced (paths inside ``workdir``)."""
    try:
        import mypyc  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            f"{error.name} is not installed (pip install mypy setuptools)"
        ) from error
    shutil.copytree(
        ROOT / "src" / "buttress",
        workdir / package,
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"),
    )
    core = workdir / package / CORE
    core.write_text(for_mypyc(core.read_text(encoding="utf-8")), encoding="utf-8")
    (workdir / "setup.py").write_text(SETUP.format(path=f"{package}/{CORE}"))
    build = subprocess.run(
        [sys.executable, "setup.py"], cwd=workdir, capture_output=True, text=True
    )
    if build.returncode:
        tail = [line[:300] for line in (build.stdout + build.stderr).strip().splitlines()[-8:]]
        raise RuntimeError("mypyc failed:\n" + "\n".join(tail))
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    built = sorted(
        p for p in workdir.rglob(f"*{suffix}") if p.relative_to(workdir).parts[0] != "build"
    )
    if not any(p.name == "_core" + suffix for p in built):
        raise RuntimeError(f"mypyc produced no {package}/cache/_core{suffix}")
    return built


def _mode() -> str:
    mode = os.environ.get("BUTTRESS_COMPILE", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"BUTTRESS_COMPILE={mode!r}: expected one of {', '.join(MODES)}")
    return mode


class CompileCoreHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Adds the mypyc-compiled cache core to standard wheels."""

    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        return [] if _mode() == "0" else ["mypy>=1.11", "setuptools>=61"]

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        mode = _mode()
        if self.target_name != "wheel" or version != "standard" or mode == "0":
            return
        self._workdir = Path(tempfile.mkdtemp(prefix="buttress-mypyc-"))
        try:
            built = compile_core(self._workdir)
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            if mode == "required":
                raise RuntimeError(f"BUTTRESS_COMPILE=required: {error}") from error
            print(
                f"buttress: building the pure-Python wheel; the cache core was not compiled "
                f"({error}). Set BUTTRESS_COMPILE=0 to skip the attempt.",
                file=sys.stderr,
            )
            return
        for path in built:
            build_data["force_include"][str(path)] = path.relative_to(self._workdir).as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        workdir = getattr(self, "_workdir", None)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
