"""Run threads with the interpreter switching between them as often as it can."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable


def run_racing(threads: Iterable[threading.Thread]) -> None:
    """Start ``threads`` and join them with the switch interval at 1 µs, so that any
    check-then-act gap between bytecodes is likely to be hit; the interval is restored."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        started = list(threads)
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
