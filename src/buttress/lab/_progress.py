"""Progress while the lab runs: one updating line on a terminal, plain lines otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from ._driver import ArmProgress

__all__ = ["Progress"]


def _share(count: int, total: int) -> str:
    return f"{count / total * 100:.1f}%" if total else "-"


def _arm_status(arm: ArmProgress) -> str:
    counts = arm.counts
    parts = [f"ok {_share(counts['success'], arm.done)}"]
    if counts["degraded"]:
        parts.append(f"degraded {_share(counts['degraded'], arm.done)}")
    parts.append(f"failed {_share(counts['failed'], arm.done)}")
    if arm.rejected:
        parts.append(f"rejected {arm.rejected}")
    parts.append(f"in flight {arm.in_flight}")
    return " ".join(parts)


def _bar(arm: ArmProgress, width: int = 20) -> str:
    """An ASCII progress bar of the arm's requests answered: ``[#########-----------]``."""
    fraction = arm.done / arm.total if arm.total else (1.0 if arm.finished else 0.0)
    filled = min(width, int(fraction * width))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _clock(arm: ArmProgress) -> str:
    elapsed, duration = arm.elapsed(), arm.duration
    if arm.finished:
        return "done"
    if elapsed > duration:
        return f"{duration:.1f} s of load sent, {arm.sent - arm.done} still running"
    phase = arm.spans[arm.phase].name if arm.spans else "-"
    return f"{elapsed:4.1f}/{duration:.1f} s  phase {arm.phase + 1}/{len(arm.spans)} {phase}"


class Progress:
    """Reports the lab's progress on ``stream`` (default: standard error).

    On a terminal (``live``) one line is redrawn about ten times a second; otherwise a
    plain line is written when a phase starts, every ``every`` seconds, and when an arm
    ends, so logs and CI output stay readable.

    Args:
        stream: where to write. Default ``sys.stderr``.
        live: redraw one line; default: whether ``stream`` is a terminal.
        every: seconds between plain status lines. Default 2.
    """

    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, every: float = 2.0
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self.every = every
        self.interval = 0.1 if live else 0.25
        self._drawn = False
        self._last_plain = 0.0
        self._phases: dict[tuple[str, str], int] = {}
        self._ended: set[tuple[str, str]] = set()

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the lab
            pass

    def _line(self, text: str) -> None:
        """A permanent line (clears the live line first)."""
        self.clear()
        self._write(text + "\n")

    def clear(self) -> None:
        """Erase the live line, if one is drawn."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def message(self, text: str) -> None:
        """Write a permanent line, such as a scenario heading."""
        self._line(text)

    def update(self, arms: Sequence[ArmProgress]) -> None:
        """Show the state of the arms running now (called periodically by the runner)."""
        if not arms:
            return
        if self.live:
            self._update_live(arms)
        else:
            self._update_plain(arms)

    def _update_live(self, arms: Sequence[ArmProgress]) -> None:
        for arm in arms:
            key = (arm.scenario, arm.arm)
            if arm.finished and key not in self._ended:
                self._ended.add(key)
                self._line(f"  {arm.arm:<9} done: {arm.done} requests, {_arm_status(arm)}")
        if all(arm.finished for arm in arms):
            self.clear()
            return
        head = arms[0]
        if len(arms) == 1:
            text = (
                f"  {head.arm:<9} {_bar(head)} {_clock(head)}  sent {head.sent}  "
                f"{_arm_status(head)}"
            )
        else:
            text = f"  {_bar(head)} {_clock(head)}  " + " | ".join(
                f"{arm.arm} {_arm_status(arm)}" for arm in arms
            )
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._write("\r\x1b[K" + text[:width])
        self._drawn = True

    def _update_plain(self, arms: Sequence[ArmProgress]) -> None:
        now = time.monotonic()
        due = now - self._last_plain >= self.every
        for arm in arms:
            key = (arm.scenario, arm.arm)
            if arm.finished:
                if key not in self._ended:
                    self._ended.add(key)
                    self._line(f"  {arm.arm:<9} done: {arm.done} requests, {_arm_status(arm)}")
                continue
            if arm.started_at is None:
                continue
            if self._phases.get(key) != arm.phase:
                self._phases[key] = arm.phase
                span = arm.spans[arm.phase]
                self._line(
                    f"  {arm.arm:<9} phase {arm.phase + 1}/{len(arm.spans)} {span.name}: "
                    f"{span.faults.describe()}, {span.end - span.start:.1f} s"
                )
            elif due:
                self._line(f"  {arm.arm:<9} {_clock(arm)}  sent {arm.sent}  {_arm_status(arm)}")
        if due:
            self._last_plain = now
