"""Shared pytest fixtures."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

# -- redis ------------------------------------------------------------------------------------
# Tests that need Redis get a real redis-server on a free loopback port, never the default one.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process. With data_dir it keeps an append-only file there, so a
    server started again on the same data_dir (restart()) finds the same data."""

    def __init__(self, workdir: Path, data_dir: Path | None = None):
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            pytest.fail("redis-server is not on PATH: install it (apt-get install redis-server)")
        self.workdir, self.data_dir = workdir, data_dir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.data_dir else ["--appendonly", "no"]
        data_dir = self.data_dir or self.workdir
        data_dir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"redis-{self.port}.log"
        with open(log, "ab") as out:  # the server's own output, shown if it does not come up
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--dir", str(data_dir), *persist],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _answers_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (and data_dir): clients keep their URL."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """URL of one throwaway server for the whole session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def redis_server_factory(tmp_path):
    """start(data_dir=None) -> a RedisServer of this test's own, stopped when the test ends."""
    servers = []

    def start(data_dir: Path | None = None) -> RedisServer:
        servers.append(RedisServer(tmp_path, data_dir))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
