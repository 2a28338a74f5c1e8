"""pet-fleet and tools/digits.py: the digits split and shards, device folders, option checks,
a device that dies reported with its log, and devices killed and restarted during real rounds
(mosquitto with pet-provision's logins, the coordinator and the gateway as processes)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tools import digits
from tools.demo import Site, provision
from tools.fleet import (FleetError, build_fleet, default_heap, parse_heap, parse_model, provisioned,
                         synthetic_error)

ROOT = Path(__file__).resolve().parents[1]


def pet_fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.fleet", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


# -- the data ---------------------------------------------------------------------------------


def test_shards_cover_the_training_set_once_and_are_non_iid():
    x_train, y_train, x_test, y_test = digits.split()
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    shards = digits.shards(20)
    joined = np.concatenate(shards)
    assert len(joined) == len(y_train) and len(np.unique(joined)) == len(y_train)
    for shard in shards:
        counts = np.sort(np.bincount(y_train[shard], minlength=10))[::-1]
        assert counts[:3].sum() >= 0.6 * len(shard), counts  # mostly two or three classes
    assert all(np.array_equal(a, b) for a, b in zip(shards, digits.shards(20)))  # fixed by the seed


def test_shard_file_is_what_the_app_reads():
    data = digits.device_shard(3, 20)
    index = digits.shards(20)[3]
    x, y = digits.split()[:2]
    count = int.from_bytes(data[:4], "little")
    rows = np.frombuffer(data[4:], np.uint8).reshape(count, 65)
    assert count == len(index)
    assert np.array_equal(rows[:, :64], x[index]) and np.array_equal(rows[:, 64], y[index])


def test_evaluate_reads_weights_as_the_app_lays_them_out():
    from sklearn.linear_model import LogisticRegression
    x, y, x_test, y_test = digits.split()
    model = LogisticRegression(max_iter=5000).fit(x * digits.SCALE, y)
    weights = np.concatenate([model.coef_.reshape(-1), model.intercept_])  # W[10][64], then b[10]
    assert digits.evaluate(weights)["accuracy"] == pytest.approx(model.score(x_test * digits.SCALE, y_test))
    assert digits.baseline_accuracy() == pytest.approx(model.score(x_test * digits.SCALE, y_test))
    assert digits.evaluate(np.zeros(650))["accuracy"] == pytest.approx(np.mean(y_test == 0))  # all "0"
    with pytest.raises(digits.DigitsError, match="650 weights, got 649"):
        digits.evaluate(np.zeros(649))


def test_too_many_devices_for_the_digits():
    with pytest.raises(digits.DigitsError, match="from 1 to 336 devices"):
        digits.shards(1000)


def test_synthetic_error_is_zero_at_the_target():
    i = np.arange(500)
    target = ((i * 37) % 200 - 100) / 200
    assert synthetic_error(target)["rms_error"] == 0
    assert synthetic_error(target + 0.1)["rms_error"] == pytest.approx(0.1)


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("digit", "digits or synthetic:N"), ("synthetic:0", "synthetic:N with N from 1"),
    ("synthetic:x", "got 'synthetic:x'")])
def test_bad_model(text, message):
    with pytest.raises(FleetError, match=message):
        parse_model(text)


@pytest.mark.parametrize("text", ["8k", "lots", "160kb", "2048m"])
def test_bad_heap(text):
    with pytest.raises(FleetError, match="heap must be a size from 16k to 1024m"):
        parse_heap(text)


def test_heap_and_model_spellings():
    assert parse_heap("160K") == "160k" and parse_heap("163840") == "163840"
    assert parse_model("synthetic:10000").length == 10_000 and parse_model("digits").length == 650


@pytest.mark.parametrize("args, message", [
    (["--model", "mnist"], "the model must be digits or synthetic:N"),
    (["--heap", "tiny"], "the heap must be a size"),
    (["--restart-after", "5"], "--restart-after needs --kill-every"),
    (["--kill-every", "0"], "--kill-every must be a number of seconds above 0"),
    (["--broker", "localhost"], "the broker must be HOST:PORT"),
    (["--deep-sleep", "-1"], "--deep-sleep must be a whole number of seconds, 0 or more, got -1"),
    ([], "has no provisioned devices: pass --devices N"),
])
def test_cli_refuses_bad_options(tmp_path, args, message):
    out = pet_fleet("--dir", str(tmp_path / "fleet"), *args)
    assert out.returncode == 2, out
    assert out.stderr.startswith("pet-fleet: ") and message in out.stderr, out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_provisions_runs_and_stops_its_devices(tmp_path, sig):
    """pet-fleet with fewer devices provisioned than asked for provisions the rest, runs them
    (here against a closed port: they keep trying to connect) and stops them on a signal."""
    from tests.test_demo import processes_using
    proc = subprocess.Popen([sys.executable, "-m", "tools.fleet", "--dir", str(tmp_path), "--devices", "2",
                             "--model", "synthetic:10", "--broker", "127.0.0.1:9"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline() + proc.stdout.readline()
        assert "provisioned 2 devices" in first and "2 devices (synthetic:10, heap 104k) running" in first, first
        devices = [pid for pid, _ in processes_using(tmp_path) if pid != proc.pid]
        assert len(devices) == 2
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "every device stopped" in out, err
    assert processes_using(tmp_path) == []
    assert [name for name, _ in provisioned(tmp_path)] == ["dev001", "dev002"]


def test_cli_help():
    out = pet_fleet("--help")
    assert out.returncode == 0 and "--kill-every" in out.stdout and "--restart-after" in out.stdout


# -- device folders ---------------------------------------------------------------------------


def test_device_folders_hold_what_a_board_would(tmp_path):
    provision(tmp_path, 4)
    fleet = build_fleet(tmp_path, parse_model("digits"), "128k", 3, broker=("127.0.0.1", 4321))
    assert [d.name for d in fleet.devices] == ["dev001", "dev002", "dev003"]
    for index, device in enumerate(fleet.devices):
        folder = device.folder
        assert (folder / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
        assert (folder / "board_config.py").read_bytes() == (ROOT / "boards" / "UNIX" / "config.py").read_bytes()
        assert (folder / "app.mpy").read_bytes()[:1] == b"M" and not (folder / "app.py").exists()
        assert (folder / "digits.bin").read_bytes() == digits.device_shard(index, 3)
        config = json.loads((folder / "config.json").read_text())
        assert config["broker"] == {"host": "127.0.0.1", "port": 4321, "tls": False}
        assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o600  # it holds a password
        assert device.argv[1:] == ["-X", "heapsize=128k", "main.py"] and device.cwd == folder


def test_a_device_that_dies_is_reported_with_its_log(tmp_path):
    provision(tmp_path, 1)
    fleet = build_fleet(tmp_path, parse_model("digits"), "32k", broker=("127.0.0.1", 9))
    fleet.start()
    try:
        deadline = time.monotonic() + 60
        while fleet.devices[0].running and time.monotonic() < deadline:
            time.sleep(0.1)
        events = fleet.check()
    finally:
        fleet.stop()
    log = tmp_path / "devices" / "dev001" / "device.log"
    assert len(events) == 1, events
    assert "dev001 stopped by itself (exit status 1): upet: out of memory: " in events[0], events
    assert "bytes free" in events[0] and "(give the devices more heap: --heap)" in events[0], events
    assert events[0].endswith(f"log: {log}") and "MemoryError: memory allocation failed" in log.read_text()
    assert fleet.failed == {"dev001": 1} and fleet.check() == []  # reported once


# -- faults in real rounds --------------------------------------------------------------------


def through_rounds(tmp_path, until=lambda fleet: True, configure=lambda fleet: None, rounds=3, **options):
    """Six synthetic:200 devices against a real site (mosquitto, coordinator, gateway) until
    `rounds` rounds completed and until(fleet); configure(fleet) runs before they start.
    Returns the stopped fleet, its events and the completed rounds."""
    workload, count = parse_model("synthetic:200"), 6
    provision(tmp_path / "fleet", count)
    site = Site(tmp_path, tmp_path / "fleet", workload, count, rounds=rounds)
    fleet = None
    try:
        site.start(say=lambda line: None)
        fleet = build_fleet(tmp_path / "fleet", workload, default_heap(workload), count,
                            ("127.0.0.1", site.broker_port), **options)
        configure(fleet)
        fleet.start()
        events, completed = [], []
        deadline = time.monotonic() + 150
        while len(completed) < rounds or not until(fleet):
            assert time.monotonic() < deadline, (events, completed)
            site.check()
            events += fleet.check()
            completed = [r for r in site.get_json("/rounds") or [] if r["outcome"] == "completed"]
            time.sleep(0.2)
    finally:
        if fleet is not None:
            fleet.stop()
        site.stop()
    return fleet, events, completed


def test_killed_devices_restart_and_rounds_go_on(tmp_path):
    """Every 4 s a device is killed with SIGKILL and boots again 1 s later; rounds complete
    meanwhile, and restarted devices take part again."""
    fleet, events, completed = through_rounds(tmp_path, until=lambda f: f.kills >= 4,
                                              kill_every=4, restart_after=1, seed=1)
    restarted = {d.name for d in fleet.devices if d.starts > 1}
    assert not fleet.failed, events
    assert sum(e.startswith("killed ") for e in events) == fleet.kills
    assert sum(e.startswith("restarted ") for e in events) >= fleet.kills - 1  # the last may still wait
    assert restarted and all(not d.running for d in fleet.devices)
    for record in completed:
        assert record["updates"] >= 3 and record["evaluation"]["rms_error"] < 0.2
    # a device killed and booted again went on taking part: accepted messages after its restart
    took_part = [name for name in restarted
                 if "accepted" in (tmp_path / "fleet" / "devices" / name / "device.log").read_text()
                 .rsplit("--- start", 1)[-1]]
    assert took_part, restarted


def test_devices_deep_sleep_between_rounds(tmp_path):
    """With a deep sleep in their config.json (pet-fleet --deep-sleep), devices with no task left
    in a round end their process, as a board powers down; pet-fleet starts each again after its
    sleep, as waking resets a board, and the rounds go on with them."""
    def idle_one_second(fleet):  # before a sleep, not 10
        for d in fleet.devices:
            path = d.folder / "config.json"
            path.write_text(json.dumps(json.loads(path.read_text()) | {"awake_s": 1}))

    fleet, events, completed = through_rounds(tmp_path, configure=idle_one_second, deep_sleep=1)
    assert not fleet.failed, events
    assert fleet.sleeps >= len(fleet.devices), events
    assert sum(e.endswith(" deep-sleeps for 1 s") for e in events) == fleet.sleeps, events
    assert sum(e.startswith("restarted ") for e in events) >= fleet.sleeps - len(fleet.devices)  # some may still sleep
    for record in completed:
        assert record["evaluation"]["rms_error"] < 0.2
    woke_and_took_part = [d.name for d in fleet.devices
                          if any("accepted" in run for run in (d.folder / "device.log").read_text()
                                 .split("--- start")[2:])]
    assert woke_and_took_part, events


def test_dropped_devices_stay_off(tmp_path):
    provision(tmp_path, 3)
    fleet = build_fleet(tmp_path, parse_model("synthetic:10"), "192k", broker=("127.0.0.1", 9),
                        kill_every=0.5, seed=2)
    fleet.start()
    try:
        deadline = time.monotonic() + 30
        while fleet.kills < 2 and time.monotonic() < deadline:
            fleet.check()
            time.sleep(0.1)
        time.sleep(1)
        fleet.check()
        running = fleet.counts()
    finally:
        fleet.stop()
    assert fleet.kills >= 2 and len(fleet.dropped) == fleet.kills
    assert running["running"] == 3 - fleet.kills and running["restarting"] == 0
    assert all(d.starts == 1 for d in fleet.devices)


def test_provisioned_reads_the_registry(tmp_path):
    provision(tmp_path, 2)
    assert provisioned(tmp_path) == [("dev001", tmp_path / "devices" / "dev001"),
                                     ("dev002", tmp_path / "devices" / "dev002")]
    assert provisioned(tmp_path / "none") == []
    with pytest.raises(FleetError, match="has 2 provisioned devices, 5 wanted"):
        build_fleet(tmp_path, parse_model("digits"), "128k", 5)


def test_every_device_process_is_gone_after_stop(tmp_path):
    provision(tmp_path, 3)
    fleet = build_fleet(tmp_path, parse_model("synthetic:10"), "192k", broker=("127.0.0.1", 9))
    fleet.start()
    pids = [d.pid for d in fleet.devices]
    assert all(d.running for d in fleet.devices)
    fleet.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
