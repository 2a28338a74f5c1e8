"""The board's participant (upet.Participant) in real rounds.

A device is a Unix-port `micropython` process with a directory of its own
(key, config.json, round state), talking MQTT to a real mosquitto; a real
gateway relays to a real coordinator, and CPython reference participants
(HTTP) make up the rest of the fleet. Round keys are fixed (the harness's
keygen), so every round's seed, and each key's role in it, is known before
the coordinator starts: the device keys are chosen to sum in one round and
update in another.

Heap: each device runs with a fixed -X heapsize (PET_TEST_HEAP overrides it for the two
round tests): the targets, 64k for 650 weights and 128k for 10,000. On the Unix port the
participant's code (upet's bytecode and its MQTT client, about 40 KB of heap) sits in the
heap beside the model, so the figures are far above a board's with upet frozen; the lowest
heaps that passed are noted beside the constants. PET_TEST_MEM=1 makes a device log its
live heap (after a collection) with every step, and the test print the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.settings import load_settings
from pet.crypto import EncryptKeyPair, SigningKeyPair, next_round_seed, sha256
from pet.sortition import Task, select_task
from tests.coordinator_harness import RunningCoordinator, fast_settings, make_fleet
from tests.firmware.conftest import MICROPYTHON, firmware_path
from tests.test_gateway import RunningGateway, broker_address, gateway_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
HEAP_650 = "64k"  # the target; 62k fails at start-up (docs/performance.md)
HEAP_10000 = "128k"  # the target; 104k passed, 102k did not
# the other 650-weight flows: deep sleep and a restart before each round, a restored broker,
# malformed messages; the deep-sleep one completes in 64k in about half the runs, in 66k in all
HEAP_650_FLOWS = "68k"
needs_mqtt = pytest.mark.skipif(not (ROOT / "firmware" / "upet" / "mqtt.py").exists(),
                                reason="upet.mqtt is not in the firmware yet")

DEVICE = r"""
import json
from array import array
# model-sized buffers first, while the heap is in one piece; the code loads after them
config = json.load(open(DIR + "/config.json"))
N, SCALAR, SLEEP = config["test_length"], config["scalar"], config.get("deep_sleep_s")
weights = array("f", range(N))
import hashlib, time
import upet  # as firmware/main.py: the participant's code (and its MQTT client) loads with it
from upet.store import Store
store = Store(DIR)

def train(params):
    s = params.seed[0]
    for i in range(N):
        weights[i] = ((i * 7919 + s * 31) % 2001 - 1000) / 1000.0 * 0.5
    return weights, SCALAR

def on_model(round_id, model):
    print("model", round_id, hashlib.sha256(model).digest()[:8].hex())

import gc
def log(*args):
    line = " ".join(str(a) for a in args)
    if MEM:
        gc.collect()
        line += " [heap %d]" % gc.mem_alloc()
    print("upet:", line)
    if PAUSE_AT and line.startswith("update chunk %d/" % PAUSE_AT) and store.read("pause") is not None:
        store.remove("pause")
        print("paused")
        time.sleep(120)

p = upet.Participant(config, train=train, on_model=on_model, model=weights, store=store, log=log)
config = None  # as firmware/main.py: the participant keeps what it needs of it
board = None
if SLEEP:  # the board layer: to deep-sleep, the Unix port ends the process (exit 75)
    from upet.board import Board
    board = Board()
p.run(board=board, idle_ms=50)
"""


def device_weights(seed: bytes, n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.int64)
    return (((i * 7919 + seed[0] * 31) % 2001 - 1000) / 1000.0 * 0.5).astype(np.float32)


def round_seeds(settings, rounds: int, label: bytes = b"test") -> list[bytes]:
    """The seeds the coordinator will give rounds 1..rounds (RunningCoordinator's fixed keys)."""
    seed, out = bytes(32), []
    for r in range(1, rounds + 1):
        sk = EncryptKeyPair.from_seed(sha256(label + r.to_bytes(8, "little"))).secret_key
        seed = next_round_seed(seed, sk, settings.pet.sum.prob, settings.pet.update.prob)
        out.append(seed)
    return out


def task(keys: SigningKeyPair, settings, seed: bytes) -> Task:
    return select_task(keys, seed, settings.pet.sum.prob, settings.pet.update.prob).task


def device_key(settings, seeds, wanted: list[Task]) -> SigningKeyPair:
    for i in range(5000, 9000):
        keys = SigningKeyPair.from_seed(i.to_bytes(32, "little"))
        if [task(keys, settings, s) for s in seeds[:len(wanted)]] == wanted:
            return keys
    raise AssertionError("no key with these roles")


class Device:
    """A micropython process running upet.Participant from a directory of its own."""

    def __init__(self, root: Path, keys: SigningKeyPair, broker, prefix: str, length: int, heap: str,
                 scalar: float = 2.0, pause_at: int = 0, **extra):
        self.root, self.heap = root, heap
        root.mkdir(parents=True, exist_ok=True)
        (root / "key").write_bytes(keys.secret_key[:32] + keys.public_key)
        self.pk = keys.public_key
        self.scalar = scalar
        config = {"name": "dev", "broker": {"host": broker[0], "port": broker[1], "tls": False},
                  "username": keys.public_key.hex(), "password": "", "prefix": prefix,
                  "wifi": {"ssid": "", "password": ""}, "scalar": scalar, "test_length": length, "table_rows": 1, **extra}
        (root / "config.json").write_text(json.dumps(config))
        (root / "main.py").write_text(f"DIR = {str(root)!r}\nPAUSE_AT = {pause_at}\nMEM = {bool(os.environ.get('PET_TEST_MEM'))}\n" + DEVICE)
        self.lines: list[str] = []
        self.proc = None

    def start(self):
        self.lines = []
        # upet from the working directory, as a board finds it in its root: module paths (each
        # module's __file__, kept in the heap) are then a board's, whatever the checkout's path
        env = dict(os.environ, MICROPYPATH=":.")  # the script's folder, then the working directory
        self.proc = subprocess.Popen([str(MICROPYTHON), "-X", f"heapsize={self.heap}", str(self.root / "main.py")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=firmware_path())
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])


class Fleet:
    """Reference participants over HTTP, each stepping in its own thread."""

    def __init__(self, url: str, count: int, first_key: int = 1):
        self.fleet = make_fleet(url, count, first_key=first_key)
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=p.run, args=(self.stop_event, 0.02, 0.2), daemon=True)
                        for p, _ in self.fleet]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def expected_average(fleet: Fleet, seed: bytes, device: Device | None, n: int) -> tuple[np.ndarray, int]:
    pairs = [(app.scalar, app.given[seed].astype(np.float64)) for _, app in fleet.fleet if seed in app.given]
    if device is not None:
        pairs.append((device.scalar, device_weights(seed, n).astype(np.float64)))
    total = sum(s for s, _ in pairs)
    return sum(s * w for s, w in pairs) / total, len(pairs)


def models(c: RunningCoordinator) -> dict:
    return {m.round_id: m for m in c.coordinator.store.global_models()}


def check_model(c, fleet, device, seed, round_id, n, with_device):
    model = models(c)[round_id]
    weights = np.frombuffer(model.weights, "<f8")
    average, senders = expected_average(fleet, seed, device if with_device else None, n)
    assert model.meta["updates"] == senders
    assert np.allclose(weights, average, atol=1e-4)
    return weights


def fleet_roles(settings, seeds, count, first_key=1):
    out = []
    for seed in seeds:
        roles = [task(SigningKeyPair.from_seed((first_key + i).to_bytes(32, "little")), settings, seed)
                 for i in range(count)]
        out.append((roles.count(Task.SUM), roles.count(Task.UPDATE)))
    return out


def settings_for(length: int, **extra):
    return fast_settings(**{"model.length": length, "pet.sum.prob": 0.3, "pet.update.prob": 0.9,
                            "pet.sum.time.min": 2, "pet.update.time.min": 2, "pet.sum2.time.min": 2,
                            "pet.sum.time.max": 60, "pet.update.time.max": 60, "pet.sum2.time.max": 60,
                            "history.keep": 10, **extra})


@pytest.fixture
def site(mosquitto_factory, tmp_path):
    """A broker; start(settings) -> (coordinator, gateway) on it."""
    broker = mosquitto_factory()
    address = broker_address(broker.url)
    running = []

    def start(settings):
        c = RunningCoordinator(settings)
        gw = RunningGateway(load_settings(env=gateway_env(address, c.url, tmp_path / "q.db", "pet")))
        running.extend([gw, c])
        return c, gw

    start.broker = address
    yield start
    for thing in running:
        thing.stop()


@needs_mqtt
def test_device_sums_then_updates_650_weights(site, tmp_path):
    n = 650
    settings = settings_for(n)
    seeds = round_seeds(settings, 2)
    keys = device_key(settings, seeds, [Task.SUM, Task.UPDATE])
    roles = fleet_roles(settings, seeds, 8)
    assert roles[0][1] >= 3 and roles[1][0] >= 1 and roles[1][1] >= 2, roles
    c, gw = site(settings)
    device = Device(tmp_path / "dev", keys, site.broker, "pet", n, os.environ.get("PET_TEST_HEAP", HEAP_650)).start()
    fleet = Fleet(c.url, 8)
    try:
        wait_for(lambda: 2 in models(c) or device.proc.poll() is not None, timeout=90, what="round 2")
        assert device.proc.poll() is None, device.output()
        wait_for(lambda: device.seen("model 2 "), timeout=20, what="the device to get model 2")
    finally:
        fleet.stop()
        device.kill()
    out = device.output()
    if os.environ.get("PET_TEST_MEM"):
        print(out)
    assert device.seen("sum chunk 1/1 accepted") and device.seen("sum2 chunk 1/1 accepted") and device.seen("update chunk 1/1 accepted"), out
    check_model(c, fleet, device, seeds[0], 1, n, with_device=False)
    w2 = check_model(c, fleet, device, seeds[1], 2, n, with_device=True)
    digest = hashlib.sha256(w2.astype("<f4").tobytes()).hexdigest()[:16]
    assert device.seen(f"model 2 {digest}"), out


@needs_mqtt
def test_device_killed_mid_update_resumes_then_sums_10000_weights(site, tmp_path):
    n = 10_000
    settings = settings_for(n, **{"pet.update.time.min": 6})
    seeds = round_seeds(settings, 2)
    keys = device_key(settings, seeds, [Task.UPDATE, Task.SUM])
    roles = fleet_roles(settings, seeds, 8)
    assert roles[0][0] >= 1 and roles[0][1] >= 2 and roles[1][1] >= 3, roles
    c, gw = site(settings)
    device = Device(tmp_path / "dev", keys, site.broker, "pet", n, os.environ.get("PET_TEST_HEAP", HEAP_10000),
                    pause_at=3)
    (device.root / "pause").write_bytes(b"")
    device.start()
    fleet = Fleet(c.url, 8)
    try:
        wait_for(lambda: device.seen("paused") or device.proc.poll() is not None, timeout=60, what="3 chunks")
        assert device.proc.poll() is None, device.output()
        assert c.status()["phase"] == "update"
        device.kill()  # a reset with chunks 1-3 accepted
        first = device.output()
        device.start()
        wait_for(lambda: 2 in models(c) or device.proc.poll() is not None, timeout=90, what="round 2")
        assert device.proc.poll() is None, device.output()
        wait_for(lambda: device.seen("model 2 "), timeout=20, what="the device to get model 2")
    finally:
        fleet.stop()
        device.kill()
    out = device.output()
    if os.environ.get("PET_TEST_MEM"):
        print(first, out, sep="\n")
    assert "update chunk 3/11 accepted" in first and "update chunk 4/11" not in first, first
    assert device.seen("resuming update chunk 3") and device.seen("update chunk 11/11 accepted"), out
    assert not device.seen("update chunk 3/11"), out  # nothing accepted before the reset was sent again
    assert device.seen("sum2 chunk 11/11 accepted"), out
    check_model(c, fleet, device, seeds[0], 1, n, with_device=True)  # the device's update counted once
    w2 = check_model(c, fleet, device, seeds[1], 2, n, with_device=False)
    digest = hashlib.sha256(w2.astype("<f4").tobytes()).hexdigest()[:16]
    assert device.seen(f"model 2 {digest}"), out


@needs_mqtt
def test_device_deep_sleeps_between_rounds_and_wakes_for_the_next(site, tmp_path):
    """With deep_sleep_s, a device that has no task left in the round deep-sleeps after awake_s
    idle seconds; waking resets a board (on the Unix port upet.board ends the process with
    exit status 75, and the test starts it again a second later, as pet-fleet does), and the
    retained round state brings it into the next round."""
    n = 650
    settings = settings_for(n)
    seeds = round_seeds(settings, 2)
    keys = device_key(settings, seeds, [Task.UPDATE, Task.UPDATE])
    roles = fleet_roles(settings, seeds, 8)
    assert all(s >= 1 and u >= 2 for s, u in roles), roles
    c, gw = site(settings)
    device = Device(tmp_path / "dev", keys, site.broker, "pet", n, HEAP_650_FLOWS, deep_sleep_s=1, awake_s=1).start()
    fleet = Fleet(c.url, 8)
    runs = []
    try:
        deadline = time.monotonic() + 120
        while not (2 in models(c) and device.seen("model 2 ")):
            assert time.monotonic() < deadline, "\n".join(runs + [device.output()])
            code = device.proc.poll()
            if code is not None:
                runs.append(device.output())
                assert code == 75, runs[-1]  # nothing but a deep sleep ends the device
                time.sleep(1)  # the sleep; then the board resets and starts main.py again
                device.start()
            time.sleep(0.1)
    finally:
        fleet.stop()
        device.kill()
    log = "\n".join(runs + [device.output()])
    assert len(runs) >= 2 and log.count("upet: no task until the next round: deep sleep for 1 s") == len(runs), log
    assert log.count("update chunk 1/1 accepted") == 2, log  # one update in each round, neither sent twice
    check_model(c, fleet, device, seeds[0], 1, n, with_device=True)
    w2 = check_model(c, fleet, device, seeds[1], 2, n, with_device=True)
    digest = hashlib.sha256(w2.astype("<f4").tobytes()).hexdigest()[:16]
    assert device.seen(f"model 2 {digest}"), log


@needs_mqtt
def test_device_ignores_the_parameters_of_a_round_it_has_left(mosquitto_factory, tmp_path):
    """A broker restored from its saved state serves the retained parameters of an earlier
    round again: the device must not start that round over (new keys, a second message)."""
    import paho.mqtt.client as paho
    from pet.mask import MaskConfig
    from pet.wire import MaskConfigPair, RoundParameters

    address = broker_address(mosquitto_factory().url)
    mcu = MaskConfig.mcu()
    rounds = [RoundParameters(bytes(32), 0.0, 0.0, bytes([r]) * 32, MaskConfigPair(mcu, mcu), 650).to_bytes()
              for r in (0xA1, 0xB2)]  # probabilities 0: no task, so the device only follows the rounds
    device = Device(tmp_path / "dev", SigningKeyPair.generate(), address, "pet", 650, HEAP_650_FLOWS).start()
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect(*address)
    publisher.loop_start()
    try:
        for raw, seen in ((rounds[0], "round a1a1a1a1 no task"), (rounds[1], "round b2b2b2b2 no task"),
                          (rounds[0], "ignoring the parameters of an earlier round a1a1a1a1")):
            publisher.publish("pet/round/params", raw, qos=1, retain=True).wait_for_publish(5)
            wait_for(lambda: device.seen(seen) or device.proc.poll() is not None, timeout=30, what=seen)
            assert device.proc.poll() is None, device.output()
        assert sum(line.startswith("upet: round a1a1a1a1") for line in device.lines) == 1, device.output()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        device.kill()


def test_digits_example_trains_on_its_shard(tmp_path):
    from firmware.examples.digits.make_shard import shard_bytes
    (tmp_path / "digits.bin").write_bytes(shard_bytes(0, 10))
    script = tmp_path / "digits.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(ROOT / "firmware" / "examples" / "digits")!r})
import app
class P:
    model_length = 650
path = {str(tmp_path / "digits.bin")!r}
before = app.accuracy(path=path)
weights, scalar = app.train(P(), path=path)
print(before, app.accuracy(path=path), scalar, max(abs(w) for w in weights))
""")
    out = subprocess.run([str(MICROPYTHON), "-X", "heapsize=64k", str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    before, after, scalar, largest = map(float, out.stdout.split())
    assert before < 0.3 and after > 0.85 and scalar == 180 / 1024 and largest < 4


@needs_mqtt
def test_device_survives_malformed_messages_on_every_topic(mosquitto_factory, tmp_path):
    """Whatever arrives on the topics a device reads (anyone with the broker's rights over them,
    or a broken gateway, could send it): it is refused or ignored, the device keeps running
    and still takes part in the next round."""
    import paho.mqtt.client as paho
    from pet.mask import MaskConfig
    from pet.wire import MaskConfigPair, RoundParameters

    address = broker_address(mosquitto_factory().url)
    mcu = MaskConfig.mcu()

    coordinator_pk = EncryptKeyPair.generate().public_key

    def params(seed: int, sum_prob: float, update_prob: float, groups: bytes = b"", pk: bytes = coordinator_pk):
        raw = bytearray(RoundParameters(pk, sum_prob, update_prob, bytes([seed]) * 32,
                                        MaskConfigPair(mcu, mcu), 650).to_bytes())
        raw[96:96 + len(groups)] = groups
        return bytes(raw)

    keys = SigningKeyPair.generate()
    me = keys.public_key.hex()
    device = Device(tmp_path / "dev", keys, address, "pet", 650, HEAP_650_FLOWS).start()
    uplinks: list[bytes] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: uplinks.append(m.payload)
    client.connect(*address)
    client.subscribe(f"pet/dev/{me}/msg", 1)
    client.loop_start()

    def send(topic: str, payload: bytes, seen: str | None = None):
        retain = topic.startswith("round/")  # as the gateway keeps them: a late subscription gets them too
        client.publish("pet/" + topic, payload, qos=1, retain=retain).wait_for_publish(5)
        if seen:
            wait_for(lambda: device.seen(seen) or device.proc.poll() is not None, timeout=30, what=seen)
        assert device.proc.poll() is None, device.output()

    try:
        # retained, as the gateway keeps them: once the device follows the round, it has subscribed
        client.publish("pet/round/params", params(0xB0, 0.0, 0.0), qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: device.seen("round b0b0b0b0 no task"), timeout=30, what="the device to subscribe")
        header = lambda round_id, n: round_id.to_bytes(8, "little") + n.to_bytes(4, "little")  # noqa: E731
        send("model/global", b"short")  # under a header: ignored
        send("model/global", header(1, 650) + bytes(10))  # shorter than it says: ignored
        send("model/global", header(1, 100) + bytes(400), "model/global refused: a model of 100 weights")
        for ack in (b"not json", b"[1, 2]", b"42", b'{"msg": 5}', b"\xff" * 50):
            send(f"dev/{me}/ack", ack)
        send(f"dev/{me}/ack", b"{", f"dev/{me}/ack refused:")
        send("round/params", bytes(136), "round parameters refused: bad round parameters")
        send("round/params", params(0xC1, 0.0, 1.0, groups=b"\x00"), "round parameters refused: mask config")

        # an update participant: sum dicts that do not add up, then one too large for its heap
        send("round/params", params(0xD2, 0.0, 1.0), "round d2d2d2d2 task update")
        send("round/sums", (5).to_bytes(8, "little") + bytes(80))
        send("round/sums", (2 ** 60).to_bytes(8, "little"))
        big = 2000
        send("round/sums", big.to_bytes(8, "little") + bytes(80 * big), "round/sums refused: memory allocation failed")
        # a broker restored from its saved state: an earlier round's parameters, then its sum dict
        entry = lambda pk, ephm: (32).to_bytes(8, "little") + pk + (32).to_bytes(8, "little") + ephm  # noqa: E731
        sum_dict = (1).to_bytes(8, "little") + entry(os.urandom(32), EncryptKeyPair.generate().public_key)
        send("round/params", params(0xB0, 0.0, 0.0), "ignoring the parameters of an earlier round b0b0b0b0")
        send("round/sums", sum_dict, "round/sums refused: served beside another round's parameters")
        assert not uplinks, "an update built on another round's sum dict"
        send("round/params", params(0xD2, 0.0, 1.0))  # the gateway puts the round's state back
        send("round/sums", sum_dict)
        wait_for(lambda: uplinks or device.proc.poll() is not None, timeout=30, what="the Update message")
        assert uplinks, device.output()
        uplinks.clear()

        # a coordinator key of low order: no message can be sealed to it
        send("round/params", params(0xA5, 1.0, 0.0, pk=bytes(32)), "sum cannot be sent: public key of low order")

        # a sum participant: its Sum message acknowledged, then a seed column that does not open
        send("round/params", params(0xE3, 1.0, 0.0), "round e3e3e3e3 task sum")
        wait_for(lambda: uplinks or device.proc.poll() is not None, timeout=30, what="the Sum message")
        assert uplinks, device.output()
        pending = hashlib.sha256(uplinks[-1]).digest()[:8].hex()
        send(f"dev/{me}/ack", json.dumps({"msg": pending, "accepted": True}).encode(), "sum chunk 1/1 accepted")
        send(f"round/seeds/{me}", (3).to_bytes(8, "little") + bytes(128))  # shorter than it says: ignored
        send(f"round/seeds/{me}", (1).to_bytes(8, "little") + os.urandom(128), "seed column refused:")

        send("round/params", params(0xF4, 0.0, 0.0), "round f4f4f4f4 no task")  # still following the rounds
        assert not any("Traceback" in line for line in device.lines), device.output()
    finally:
        client.loop_stop()
        client.disconnect()
        device.kill()
