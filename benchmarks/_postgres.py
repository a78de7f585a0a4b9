"""A private PostgreSQL cluster for the outbox suites: started in setup, removed after.

initdb refuses to run as root, so under root the cluster belongs to the ``postgres``
system user (``runuser``). Never the machine's own server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgServer"]


class PgServer:
    """A throwaway cluster on a free loopback port, durability off (fsync=off)."""

    def __init__(self) -> None:
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        subprocess.run(
            [*self._prefix(), str(bindir / "initdb"), "-D", data, "-U", "postgres",
             "--auth=trust", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )  # fmt: skip
        self.bindir = bindir
        self.data = data
        self.process = subprocess.Popen(
            [*self._prefix(), str(bindir / "postgres"), "-D", data, "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
             "-c", "synchronous_commit=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            subprocess.run(
                [*self._prefix(), str(self.bindir / "pg_ctl"), "-D", self.data, "-m",
                 "immediate", "stop"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=self.dir,
            )  # fmt: skip
            self.process.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
