"""Shared pytest fixtures."""

from __future__ import annotations

import os
import pwd
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


# -- mosquitto --------------------------------------------------------------------------------
# Tests that need an MQTT broker get a real mosquitto on a free loopback port, with a config
# file of their own (never the system's broker on 1883).


def _mosquitto_exe() -> str | None:
    # Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """One `mosquitto -c <conf>` process on 127.0.0.1. extra_config is appended to the
    generated file (later lines win, e.g. `allow_anonymous false`). With persistence_dir the
    broker saves its sessions and retained messages there on stop and every second, so
    restart() brings them back."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, extra_config: str = "", persistence_dir: Path | None = None):
        self.exe = _mosquitto_exe()
        if self.exe is None:
            pytest.fail("mosquitto is not installed: apt-get install mosquitto")
        self.workdir, self.persistence_dir = workdir, persistence_dir
        self.port = _free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.log = workdir / f"mosquitto-{self.port}.log"
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true",
                 # started as root, mosquitto would switch to the user "mosquitto", who cannot
                 # write to the test's directory; naming the current user keeps it as it is
                 f"user {pwd.getpwuid(os.getuid()).pw_name}",
                 f"log_dest file {self.log}", "log_type all", "max_queued_messages 100000"]
        if persistence_dir is not None:
            persistence_dir.mkdir(parents=True, exist_ok=True)
            lines += ["persistence true", f"persistence_location {persistence_dir}/",
                      "autosave_interval 1"]
        else:
            lines += ["persistence false"]
        self.conf.write_text("\n".join(lines) + "\n" + extra_config + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        with open(self.workdir / f"mosquitto-{self.port}.out", "ab") as out:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "".join(p.read_text(errors="replace")[-2000:] for p in
                               (self.log, self.workdir / f"mosquitto-{self.port}.out") if p.exists())
                pytest.fail(f"mosquitto on port {self.port} did not start:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: with persistence, mosquitto saves its database before it exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: what was not saved yet is gone, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port and config: clients keep their address."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def mosquitto_url(tmp_path_factory) -> str:
    """mqtt://127.0.0.1:<port> of one anonymous broker for the whole session; tests keep
    apart by topic prefix and client id."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker.url
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """start(extra_config="", persistence_dir=None) -> a Mosquitto of this test's own
    (.host, .port, .url, .restart(), .stop(), .kill()), stopped when the test ends."""
    brokers = []

    def start(extra_config: str = "", persistence_dir: Path | None = None) -> Mosquitto:
        brokers.append(Mosquitto(tmp_path, extra_config, persistence_dir))
        return brokers[-1]

    yield start
    for broker in brokers:
        broker.stop()
