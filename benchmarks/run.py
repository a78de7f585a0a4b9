"""Run the benchmark suites and print (or write) the results.

Usage::

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--write] [--list]

Every ``benchmarks/bench_*.py`` module is a source of suites: it defines ``suites()``
returning a list of :class:`_harness.Suite`. Drop in a new module to add suites; nothing
here needs to change. ``--write`` (re)writes ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(HERE))

from _harness import FULL, QUICK, Suite, SuiteResult, measure, merge  # noqa: E402
from _report import ROOT, Environment, git_commit, load_average, render  # noqa: E402
from bench_baseline import BASELINE_SUITES  # noqa: E402

RESULTS = HERE / "RESULTS.md"


# bench module -> its report_section() (if it has one) and the names of its suites
SECTIONS: dict[str, tuple[Callable[[bool], list[str]], set[str]]] = {}


def discover() -> list[Suite]:
    """Every suite of every ``bench_*.py`` module, in report order.

    A module may also define ``report_section(quick: bool) -> list[str]``: a markdown
    block (its first line a ``## `` heading) measured once per run when any of the
    module's suites is selected, e.g. hit ratios over cache traces.
    """
    found: list[Suite] = []
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(path.stem)
        own = module.suites()
        found.extend(own)
        section = getattr(module, "report_section", None)
        if section is not None:
            SECTIONS[path.stem] = (section, {suite.name for suite in own})
    names = [suite.name for suite in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise SystemExit(f"duplicate suite names: {sorted(duplicates)}")
    return sorted(found, key=lambda suite: (suite.order, suite.name))


def _select(suites: list[Suite], only: list[str] | None) -> list[Suite]:
    measured = [suite for suite in suites if suite.name not in BASELINE_SUITES]
    if not only:
        return measured
    names = {suite.name for suite in measured}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise SystemExit(
            f"unknown suite(s): {', '.join(unknown)}; choose from: {', '.join(sorted(names))}"
        )
    return [suite for suite in measured if suite.name in only]


def _command(argv: list[str]) -> str:
    python = Path(sys.executable)
    try:
        shown = os.path.relpath(python, Path.cwd())
    except ValueError:
        shown = str(python)
    if not shown.startswith(".") and os.sep in shown:
        shown = "./" + shown if not os.path.isabs(shown) else shown
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return " ".join([shown, script, *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples (< 60 s)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        action="extend",
        help="run only these suites (see --list)",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=None,
        metavar="N",
        help="run every suite N times, spread over the run, and pool the rounds "
        "(default: 3 for a full run, 1 with --quick)",
    )
    parser.add_argument("--write", action="store_true", help=f"(re)write {RESULTS.name}")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)

    commit = git_commit()  # the code discover() is about to import
    suites = discover()
    if args.list:
        for suite in suites:
            if suite.name not in BASELINE_SUITES:
                print(f"{suite.name:22} {suite.title}")
        return 0
    chosen = _select(suites, args.only)
    baselines = [suite for suite in suites if suite.name in BASELINE_SUITES]
    settings = QUICK if args.quick else FULL
    passes = args.passes if args.passes is not None else (1 if args.quick else 3)
    if passes < 1:
        parser.error(f"--passes must be >= 1, got {passes}")
    settings = dataclasses.replace(settings, passes=passes)

    started = time.perf_counter()

    live = sys.stderr.isatty()

    def progress(message: str) -> None:
        if live:
            elapsed = time.perf_counter() - started
            print(f"\r[{elapsed:6.1f} s] {message:60}", end="", file=sys.stderr, flush=True)

    load_before = load_average()
    cpus = os.cpu_count() or 1
    if load_before > cpus / 2:
        print(
            f"warning: 1-minute load average is {load_before:.2f} on {cpus} CPU(s); other "
            "work will add noise (the minima and ratios hold up better than the medians)",
            file=sys.stderr,
        )
    mode = "quick" if args.quick else "full"
    print(
        f"{mode} run: {len(chosen)} suite(s), {passes} pass(es) of {settings.rounds} rounds, "
        f"samples of ~{settings.sample_ms:g} ms",
        file=sys.stderr,
    )

    everything = [*baselines, *chosen]
    raw: dict[str, list[SuiteResult]] = {suite.name: [] for suite in everything}
    for pass_index in range(passes):
        for suite in everything:
            result = measure(suite, settings, progress)
            raw[suite.name].append(result)
            clear = "\r" + " " * 72 + "\r" if live else ""
            print(
                f"{clear}pass {pass_index + 1}/{passes} {suite.name}: {result.seconds:.1f} s",
                file=sys.stderr,
            )
    baseline_results = [merge(raw[suite.name]) for suite in baselines]
    results = [merge(raw[suite.name]) for suite in chosen]
    chosen_names = {suite.name for suite in chosen}
    sections: list[list[str]] = []
    for stem, (section, names) in SECTIONS.items():
        if names & chosen_names:
            progress(f"{stem}: report section")
            began = time.perf_counter()
            sections.append(section(args.quick))
            print(f"{stem} section: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    seconds = time.perf_counter() - started

    libs = sorted(
        {
            part
            for result in results
            for entry in result.entries
            for part in entry.contender.lib.split("+")
            if part not in ("-", "asyncio")
        }
    )
    env = Environment.collect(_command(argv), libs, settings, seconds, load_before, commit)
    print(render(baseline_results, results, env, document=False, sections=sections))
    if args.write:
        RESULTS.write_text(render(baseline_results, results, env, document=True, sections=sections))
        print(f"wrote {os.path.relpath(RESULTS, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
