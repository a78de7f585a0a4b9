"""The ``buttress`` command line.

One subcommand per :class:`Command` in :data:`COMMANDS`: ``lab``, ``proxy`` and
``experiment``. A command's heavy or optional imports happen inside its ``run``,
so ``buttress --help`` and the other commands work without the ``lab`` extra.

Exit codes: 0 when the command ran (a BROKEN hypothesis in the lab is a finding, not a
crash), 1 when it failed while running, 2 for bad arguments or a missing extra, 130
when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from .lab import Scenario

__all__ = ["COMMANDS", "Command", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LAB_HINT = "buttress lab needs the lab extra: pip install 'buttress[lab]'"
DEFAULT_HTML = "buttress-lab.html"
"""Where ``buttress lab`` writes its HTML report unless told otherwise."""

# Distributions the lab extra brings in; a missing one means the extra is not installed.
_LAB_DEPENDENCIES = frozenset({"httpx", "httpcore", "h11", "anyio", "uvicorn", "click"})


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: its name, one-line help, argument setup and runner.

    ``run(args, parser)`` returns the exit code; ``parser`` is the subcommand's own
    parser, for ``parser.error(...)`` on arguments that can only be checked late.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int]


# -- argument types -------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


# -- buttress lab ---------------------------------------------------------------------------


def _configure_lab(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "-s",
        "--scenario",
        action="append",
        metavar="NAME",
        help="run this scenario (repeat for several; default: all)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--quick",
        action="store_true",
        help="each scenario at its shortest reliable length, 1 to 4 s of load per arm "
        "(the default scenarios finish in about 30 s)",
    )
    length.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds of load per arm; phases are scaled to fit (default: the scenario's)",
    )
    parser.add_argument(
        "--rate", type=_positive_float, default=100.0, help="requests per second (default 100)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=100,
        help="requests in flight per arm; later arrivals queue (default 100)",
    )
    parser.add_argument(
        "--seed", type=_seed, help="seed for arrivals, faults and jitter (default: random)"
    )
    parser.add_argument(
        "--arms",
        choices=("sequential", "concurrent"),
        default="sequential",
        help="run the naked and protected arms one after the other (default) or at once",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="a Redis for the scenarios that need one (shared-limit: worker processes "
        "sharing one rate limit); without it they are skipped",
    )
    parser.add_argument(
        "--html",
        metavar="FILE",
        default=DEFAULT_HTML,
        help=f"write the HTML report with charts here (default {DEFAULT_HTML})",
    )
    parser.add_argument("--no-html", action="store_true", help="do not write the HTML report")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _missing_lab_extra(exc: ImportError) -> bool:
    name = (exc.name or "").partition(".")[0]
    return name in _LAB_DEPENDENCIES


def _run_lab(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from . import lab
    except ImportError as exc:
        if not _missing_lab_extra(exc):
            raise
        print(LAB_HINT, file=sys.stderr)
        return EXIT_USAGE

    if args.list:
        print(lab.render_list(lab.scenarios()))
        return EXIT_OK

    if args.redis is not None and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        parser.error(f"--redis: expected a redis://, rediss:// or unix:// URL, got {args.redis!r}")
    available = {"redis"} if args.redis is not None else set()
    # By default every scenario whose needs are met; named ones must have theirs met.
    default = [s.name for s in lab.scenarios() if set(s.needs) <= available]
    selected: list[Scenario] = []
    for name in args.scenario or default:
        try:
            scenario = lab.get_scenario(name)
        except ValueError as exc:
            parser.error(str(exc))
        missing = set(scenario.needs) - available
        if missing:
            parser.error(f"scenario {name!r} needs --{sorted(missing)[0]} URL")
        if scenario not in selected:
            selected.append(scenario)
    html_path = None if args.no_html else args.html
    for flag, path in (("--json", args.json), ("--html", html_path)):
        if path is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                parser.error(f"{flag}: no such directory {folder!r}")

    config = lab.LabConfig(
        rate=args.rate,
        concurrency=args.concurrency,
        duration=args.duration,
        quick=args.quick,
        seed=args.seed,
        arms=args.arms,
        redis_url=args.redis,
    )
    progress = None if args.quiet else lab.Progress()
    skipped = [s.name for s in lab.scenarios() if not set(s.needs) <= available]
    if progress is not None and skipped and not args.scenario:
        progress.message(f"not run (they need --redis URL): {', '.join(skipped)}")
    try:
        report = lab.run_lab(selected, config, progress=progress)
    except KeyboardInterrupt:
        if progress is not None:
            progress.clear()
        print("buttress lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(lab.render(report))
    written = [(args.json, lab.write_json), (html_path, lab.write_html)]
    for path, write in written:
        if path is None:
            continue
        try:
            write(report, path)
        except OSError as exc:
            print(f"buttress lab: cannot write {path}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if html_path is not None:
        print(f"report with charts: {os.path.abspath(html_path)}")
    return EXIT_OK


LAB = Command(
    name="lab",
    help="run a real upstream through real faults, naked and protected, and compare",
    configure=_configure_lab,
    run=_run_lab,
)

# The chaos commands live in buttress.chaos._cli; only their wiring is here.
from .chaos import _cli as _chaos_cli  # noqa: E402 - after the lab, to keep its section whole

PROXY = Command(
    name="proxy",
    help="run the fault proxy: Toxiproxy's HTTP API and toxics (default port 8474)",
    configure=_chaos_cli.configure_proxy,
    run=_chaos_cli.run_proxy,
)

EXPERIMENT = Command(
    name="experiment",
    help="run or validate a chaos experiment file (steady state, method, rollbacks)",
    configure=_chaos_cli.configure_experiment,
    run=_chaos_cli.run_experiment_cli,
)

COMMANDS: tuple[Command, ...] = (LAB, PROXY, EXPERIMENT)
"""The subcommands, in ``--help`` order. Add one here to add ``buttress <name>``."""


# -- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``buttress`` parser with one subparser per :data:`COMMANDS` entry."""
    parser = argparse.ArgumentParser(
        prog="buttress", description="buttress: resilience patterns, and the lab that proves them."
    )
    parser.add_argument("--version", action="version", version=f"buttress {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(command_run=command.run, command_parser=sub)
    return parser


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``buttress`` command line; returns the exit code (never calls ``sys.exit``).

    Example::

        main(["lab", "--list"])        # prints the scenarios, returns 0
        main(["lab", "-s", "nope"])    # prints an error naming 'nope', returns 2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = args.command_run(args, args.command_parser)
        return code
    except SystemExit as exc:  # argparse's errors, --help, --version
        return _exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
