"""SIGKILL a real coordinator process in the middle of Update and start it again on the same store.

Nothing may be lost or counted twice: the restarted process resumes the same round with the
updates it had accepted, and the global model is the weighted average of exactly the
participants that sent one. Runs against SQLite (a data dir) and Redis (a key prefix).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from pet.participant import Phase
from tests.conftest import _free_port
from tests.coordinator_harness import drive, make_fleet

ROOT = Path(__file__).resolve().parent.parent

FAST = {
    "PET__PET__SUM__PROB": "0.25", "PET__PET__UPDATE__PROB": "1.0",
    "PET__PET__SUM__TIME__MIN": "1", "PET__PET__SUM__TIME__MAX": "5",
    # Two updates are let in before the kill, fewer than count.min, so the phase cannot end
    # before the kill. time.min leaves room for the restart and the other updates after it.
    "PET__PET__UPDATE__COUNT__MIN": "3",
    "PET__PET__UPDATE__TIME__MIN": "5", "PET__PET__UPDATE__TIME__MAX": "60",
    "PET__PET__SUM2__TIME__MIN": "0.3", "PET__PET__SUM2__TIME__MAX": "20",
    "PET__MODEL__LENGTH": "40",
}


def get(url: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status(url: str) -> dict:
    return json.loads(get(url, "/status")[1])


class CoordinatorProcess:
    """`python -m coordinator` with these arguments and PET__ variables, on a fixed port."""

    def __init__(self, log_dir: Path, args: list[str], env: dict[str, str]):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--port", str(self.port), *args]
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")} | env
        self.log = log_dir / f"coordinator-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until GET /healthz answers."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "coordinator", *self.args], cwd=ROOT,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if get(self.url, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the coordinator did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def coordinators(tmp_path):
    """start(args, env) -> a started CoordinatorProcess; every one is killed when the test ends."""
    started: list[CoordinatorProcess] = []

    def start(args: list[str], env: dict[str, str]) -> CoordinatorProcess:
        started.append(CoordinatorProcess(tmp_path, args, env))
        started[-1].start()
        return started[-1]

    yield start
    for c in started:
        c.kill()


@pytest.fixture(params=["sqlite", "redis"])
def store_args(request, tmp_path) -> tuple[list[str], dict[str, str]]:
    """Command-line arguments and extra variables that put the store somewhere fresh."""
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "data")], {}
    url = request.getfixturevalue("redis_url")
    return ["--redis", url], {"PET__STORE__PREFIX": f"kill-{uuid.uuid4().hex[:8]}:"}


def weighted_average(apps, seed) -> tuple[np.ndarray, int]:
    senders = [app for app in apps if seed in app.given]
    total = sum(app.scalar for app in senders)
    return sum(app.scalar * app.given[seed].astype(np.float64) for app in senders) / total, len(senders)


def test_kill_9_during_update_loses_and_repeats_nothing(coordinators, store_args):
    args, env = store_args
    c = coordinators(args, FAST | env)
    fleet = make_fleet(c.url, 24)
    for _, app in fleet:
        app.ready = False      # updaters wait in Update until let through

    def everyone_placed():
        """The coordinator is in Update, and each participant has its role for this round."""
        if status(c.url)["phase"] != "update":
            return False
        seed = get(c.url, "/params")[1]
        return all(p.params is not None and p.params.to_bytes() == seed
                   and p.phase in (Phase.UPDATE, Phase.SUM2, Phase.AWAITING) for p, _ in fleet)
    # round keys are random, so roles differ per run; a round without a sum participant fails
    # after sum time.max and the next one is tried
    drive(fleet, everyone_placed, timeout=20)
    updaters = [(p, app) for p, app in fleet if p.phase is Phase.UPDATE]
    assert len(updaters) >= 3, f"only {len(updaters)} update participants"
    seed = updaters[0][0].params.seed  # now: once the model is out, the fleet may be in the next round
    first, rest = updaters[:2], updaters[2:]
    for _, app in first:
        app.ready = True
    drive(first, lambda: all(p.phase is Phase.AWAITING for p, _ in first))
    before = status(c.url)
    assert (before["phase"], before["updates"]) == ("update", len(first))

    c.kill()
    killed_at = time.monotonic()
    c.start()                  # same port: the participants' transports need no change
    restart_seconds = time.monotonic() - killed_at
    after = status(c.url)
    assert (after["round_id"], after["phase"], after["updates"]) == (before["round_id"], "update", len(first))

    for _, app in rest:
        app.ready = True
    drive(fleet, lambda: all(p.phase is Phase.AWAITING for p, _ in updaters))
    assert status(c.url)["updates"] == len(updaters), (
        f"not every update was accepted (restart took {restart_seconds:.1f} s)")
    drive(fleet, lambda: status(c.url)["latest_model"] is not None, timeout=30)

    want, senders = weighted_average([app for _, app in fleet], seed)
    assert senders == len(updaters)
    code, body = get(c.url, "/model?format=f32")
    assert code == 200
    round_id, length = int.from_bytes(body[:8], "little"), int.from_bytes(body[8:12], "little")
    got = np.frombuffer(body[12:], dtype="<f4", count=length)
    assert (round_id, length) == (before["round_id"], 40)
    assert np.allclose(got, want, atol=1e-5)
    assert status(c.url)["latest_model"]["updates"] == senders


def test_a_bad_setting_stops_the_process_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
    run = subprocess.run([sys.executable, "-m", "coordinator", "--port", str(_free_port()),
                          "--data-dir", str(tmp_path / "data")], cwd=ROOT,
                         env=env | {"PET__PET__SUM__PROB": "2"}, capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == ("pet-coordinator: environment variable PET__PET__SUM__PROB: "
                          "pet.sum.prob must be > 0 and < 1, got 2.0\n")
    assert not (tmp_path / "data").exists()
