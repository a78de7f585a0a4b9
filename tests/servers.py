"""Real servers for tests: redis-server started on a free loopback port, owned by the test.

Destructive tests (kill, pause, restart) get their own server; nothing here ever touches a
server the tests did not start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = [
    "NatsServer",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "nats_binary",
    "postgres_bindir",
    "redis_binary",
]


def redis_binary() -> str:
    """The redis-server binary; scripts/test installs it, so its absence is a failure."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        raise RuntimeError(
            "redis-server is not installed; run ./scripts/test (it installs it) or "
            "install the redis-server package"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process on a free loopback port, with fault controls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port and wait until it answers."""
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self._ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies at once, connections drop."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the server stops answering; connections stay open (calls hang)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good and remove the data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def nats_binary() -> str:
    """The nats-server binary; scripts/test installs it, so its absence is a failure."""
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
    )
    if found is None:
        raise RuntimeError(
            "nats-server is not installed; install the nats-server package "
            "(Debian: apt-get install nats-server)"
        )
    return found


class NatsServer:
    """A nats-server with JetStream (``-js``) on a free loopback port, its store in a
    temporary directory kept across restarts (so streams survive ``kill`` + ``start``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-nats-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) on the same port and store; wait until it answers."""
        self.process = subprocess.Popen(
            [
                nats_binary(),
                "-js",
                "-a", "127.0.0.1",
                "-p", str(self.port),
                "-sd", str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            if self._ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not answer on port {self.port}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                return sock.recv(4096).startswith(b"INFO")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies at once, connections drop."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the server stops answering; connections stay open (calls hang)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good and remove the store directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bindir() -> Path:
    """The PostgreSQL server binaries (initdb, postgres, pg_ctl); absence is a failure."""
    # Debian keeps the server binaries off PATH (/usr/bin has only wrappers).
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found is not None and (Path(found).parent / "postgres").exists():
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries are not installed; install the postgresql package "
        "(initdb/postgres under /usr/lib/postgresql/<version>/bin)"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port, in a temp directory.

    initdb refuses to run as root, so under root (CI) the cluster belongs to the
    ``postgres`` system user and every server command runs through ``runuser``. The
    machine's own PostgreSQL (port 5432) is never touched.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="buttress-pg-"))
        self.data = self.dir / "data"
        self.bindir = postgres_bindir()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            self.dir.chmod(0o700)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.data),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_root else []

    def _run(self, argv: list[str]) -> None:
        subprocess.run(
            self._prefix() + argv,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [
                *self._prefix(),
                str(self.bindir / "postgres"),
                "-D", str(self.data),
                "-p", str(self.port),
                "-h", "127.0.0.1",
                "-k", str(self.dir),
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=50",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop for good (immediate shutdown: nothing to keep) and remove the cluster."""
        if self.process is not None and self.process.poll() is None:
            # runuser does not forward signals to the server, so ask pg_ctl.
            subprocess.run(
                [
                    *self._prefix(),
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                cwd=self.dir,
            )
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
