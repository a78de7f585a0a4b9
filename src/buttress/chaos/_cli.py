"""``buttress proxy`` and ``buttress experiment``: argument setup and runners.

Wired into :mod:`buttress.cli` as two :class:`~buttress.cli.Command` s. Exit codes follow
the CLI's: 0 ran fine, 1 failed (or the experiment deviated), 2 bad arguments or an
invalid file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

__all__ = ["configure_experiment", "configure_proxy", "run_experiment_cli", "run_proxy"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535], got {text!r}")
    return value


# -- buttress proxy -----------------------------------------------------------------------------


def configure_proxy(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``buttress proxy``."""
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8474, help="API port (default 8474, as Toxiproxy)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON list of proxies to create at start (Toxiproxy's -config format)",
    )
    parser.add_argument("--seed", type=int, help="seed for toxicity draws and jitter")


def _read_config(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"--config: {path} must hold a JSON list of proxies")
    return data


async def _serve_proxy(args: argparse.Namespace, config: list[Any]) -> int:
    import random

    from ._errors import ProxyError
    from ._proxy import ProxyServer

    server = ProxyServer(
        host=args.host,
        port=args.port,
        random=None if args.seed is None else random.Random(args.seed),
    )
    try:
        await server.start()
    except ProxyError as exc:
        print(f"buttress proxy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        try:
            proxies = server.populate(config)
        except (ValueError, ProxyError) as exc:
            print(f"buttress proxy: --config: {exc}", file=sys.stderr)
            return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILED
        print(f"buttress proxy: Toxiproxy API on {server.api_url}", flush=True)
        for proxy in proxies:
            print(f"  {proxy.name}: {proxy.listen} -> {proxy.upstream}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        print("buttress proxy: stopped", file=sys.stderr)
        return EXIT_OK
    finally:
        await server.stop()


def run_proxy(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the fault proxy's API server until SIGINT or SIGTERM."""
    try:
        config = _read_config(args.config) if args.config else []
    except ValueError as exc:
        parser.error(str(exc))
    return asyncio.run(_serve_proxy(args, config))


# -- buttress experiment ----------------------------------------------------------------------


def configure_experiment(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``buttress experiment {run,validate}``."""
    actions = parser.add_subparsers(dest="experiment_command", metavar="ACTION")
    run = actions.add_parser("run", help="run an experiment file", description="Run an experiment.")
    run.add_argument("file", help="the experiment (.yaml, .yml or .json)")
    run.add_argument("--journal", metavar="PATH", help="write the JSON journal there")
    run.add_argument(
        "--proxy", metavar="URL", help="the fault proxy API to use (overrides the file's `proxy`)"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")
    validate = actions.add_parser(
        "validate", help="check an experiment file", description="Check an experiment file."
    )
    validate.add_argument("file", help="the experiment (.yaml, .yml or .json)")


def _summary(journal: dict[str, Any], quiet: bool) -> str:
    lines = []
    if not quiet:
        lines.append(f"experiment: {journal['experiment']['title']}")
        steady = journal["steady_state"]
        if steady["before"] is not None:
            lines.append(
                f"  steady state before: {'met' if steady['before']['met'] else 'NOT met'}"
            )
        for record in journal["run"]:
            extra = f"  ({record['error']})" if record.get("error") else ""
            lines.append(f"  {record['status']:<11} {record['type']:<8} {record['name']}{extra}")
        if steady["during"]:
            failed = sum(not check["met"] for check in steady["during"])
            lines.append(f"  checks during the method: {len(steady['during'])}, failed {failed}")
        if steady["after"] is not None:
            lines.append(f"  steady state after: {'met' if steady['after']['met'] else 'NOT met'}")
        for record in journal["rollbacks"]:
            extra = f"  ({record['error']})" if record.get("error") else ""
            lines.append(f"  rollback {record['status']:<9} {record['name']}{extra}")
    deviated = "deviated" if journal["deviated"] else "did not deviate"
    lines.append(f"{journal['status']}: {journal['reason']} ({deviated})")
    return "\n".join(lines)


def run_experiment_cli(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``buttress experiment run|validate FILE``."""
    from dataclasses import replace

    from ._errors import ExperimentInvalidError
    from .experiment import load_experiment, run_experiment

    if args.experiment_command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        experiment = load_experiment(args.file)
    except ExperimentInvalidError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.experiment_command == "validate":
        steps = len(experiment.method)
        probes = len(experiment.hypothesis.probes) if experiment.hypothesis else 0
        print(f"{args.file}: valid ({probes} probe(s), {steps} action(s))")
        return EXIT_OK
    if args.proxy is not None:
        if not args.proxy.startswith("http://"):
            parser.error(f"--proxy: expected an http:// URL, got {args.proxy!r}")
        experiment = replace(experiment, proxy_api=args.proxy)
    if args.journal is not None:
        folder = os.path.dirname(os.path.abspath(args.journal))
        if not os.path.isdir(folder):
            parser.error(f"--journal: no such directory {folder!r}")
    journal = asyncio.run(
        run_experiment(experiment, journal_path=args.journal, handle_signals=True)
    )
    print(_summary(journal, args.quiet))
    if journal["status"] == "interrupted":
        return EXIT_INTERRUPTED
    if journal["status"] == "completed" and not journal["deviated"]:
        return EXIT_OK
    return EXIT_FAILED
