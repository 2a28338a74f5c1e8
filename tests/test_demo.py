"""pet-demo end to end: mosquitto, the coordinator, the gateway and Unix-port devices as real
processes; a short run's summary and plot; SIGINT and SIGTERM stop every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools import digits
from tools.demo import coordinator_toml, phase_times, sum_probability
from tools.fleet import parse_model

ROOT = Path(__file__).resolve().parents[1]


def processes_using(path: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose command line or working directory
    mentions path."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(path) in cmdline or cwd.startswith(str(path))):
            found.append((int(entry.name), cmdline))
    return found


def demo(*args: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
    return subprocess.Popen([sys.executable, "-m", "tools.demo", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_short_demo_learns_and_writes_its_results(tmp_path):
    out = tmp_path / "out"
    proc = demo("--devices", "6", "--rounds", "2", "--out", str(out))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "digits" and summary["devices"] == 6 and summary["device_failures"] == []
    assert len(summary["rounds"]) == 2
    for r in summary["rounds"]:
        p = r["participants"]
        assert p["sum"] >= 1 and p["update"] >= 3 and 1 <= p["sum2"] <= p["sum"]
        assert p["sum"] + p["update"] <= 6
        assert 0 <= r["accuracy"] <= 1 and r["duration"] > 0
        assert f"round {r['round_id']:>3} done: {p['sum']} sum, {p['update']} update" in stdout
    assert summary["final_accuracy"] == summary["rounds"][-1]["accuracy"]
    assert summary["final_accuracy"] > 0.6  # learned: chance is 0.1
    assert summary["baseline_accuracy"] == pytest.approx(digits.baseline_accuracy())
    assert f"{100 * summary['final_accuracy']:.1f}%" in stdout and f"{100 * summary['baseline_accuracy']:.1f}%" in stdout
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "update" in stdout and "sum2" in stdout  # the progress lines
    assert processes_using(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_process_the_demo_started(tmp_path, sig):
    proc = demo("--devices", "4", "--rounds", "100", "--model", "synthetic:100", "--out", str(tmp_path / "out"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("devices started" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines) + proc.stderr.read()
            time.sleep(0.1)
        time.sleep(2)  # mid-round
        started = [(pid, cmd) for pid, cmd in processes_using(tmp_path) if pid != proc.pid]
        # mosquitto, the coordinator, the gateway and four devices
        assert len(started) == 7, started
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert proc.returncode == 130, proc.stderr.read()
    assert f"pet-demo: {sig.name}: every process the demo started is stopped" in proc.stderr.read()
    assert processes_using(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--devices", "3"], "--devices must be from 4"),
    (["--devices", "400"], "from 1 to 336 devices can have a shard, not 400"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--model", "cifar"], "the model must be digits or synthetic:N"),
    (["--heap", "12"], "the heap must be a size from 16k"),
    (["--restart-after", "3"], "--restart-after needs --kill-every"),
])
def test_bad_options_stop_the_demo_before_it_starts(tmp_path, args, message):
    proc = demo(*args, "--out", str(tmp_path / "out"))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and message in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_coordinator_settings_fit_the_fleet(tmp_path):
    """The settings the demo writes load (the evaluation hook is imported then) and say what
    the demo means."""
    from coordinator.settings import load_settings
    for devices, model in ((20, "digits"), (6, "synthetic:10000"), (4, "digits")):
        workload = parse_model(model)
        path = tmp_path / f"{devices}-{workload.kind}.toml"
        path.write_text(coordinator_toml(8081, tmp_path / "data", devices, workload, 10))
        settings = load_settings(path, env={})
        times = phase_times(devices, workload.length)
        assert settings.model.length == workload.length and settings.mask.config.name == "W32/F32/b2/m10"
        assert settings.model.evaluate == workload.evaluate
        assert settings.pet.sum.prob == sum_probability(devices) and settings.pet.update.prob == 1.0
        assert (settings.pet.update.time.min, settings.pet.update.time.max) == pytest.approx(times.update, abs=0.05)
        assert settings.history.keep == 10


def test_sum_probability_makes_complete_rounds_likely():
    from math import comb

    def success(n, p):
        return sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(1, n - 2))
    assert success(20, sum_probability(20)) >= 0.98 and sum_probability(20) < 0.2
    assert success(6, sum_probability(6)) == max(success(6, i / 100) for i in range(5, 51))
