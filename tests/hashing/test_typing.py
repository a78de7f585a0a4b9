"""buttress.hashing type-checks as documented (mypy --strict on tests/typing/hashing_api.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_hashing_api_types() -> None:
    """Every algorithm satisfies ConsistentHash; ShardMap keeps its value type; misuse fails."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            "--no-incremental",
            str(ROOT / "tests" / "typing" / "hashing_api.py"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
