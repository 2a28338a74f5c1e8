"""The gateway against a real mosquitto and the real coordinator.

Simulated devices are reference participants (pet.participant) whose transport
is MQTT: they read the retained round topics and publish sealed messages on
their uplink topic, waiting for the ack that carries their message id. So the
tests see exactly what a device sees.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.app import Gateway
from gateway.cli import main as gateway_main
from gateway.queue import DUPLICATE, FULL, QUEUED, Incoming, UplinkQueue
from gateway.relay import Backoff
from gateway.settings import GatewaySettings, Settings, SettingsError, load_settings
from pet.crypto import SigningKeyPair
from pet.participant import Participant
from pet.participant.mqtt import DeviceClient as Device
from pet.participant.mqtt import MqttTransport
from pet.sortition import Task, select_task
from pet.wire import RoundParameters
from tests.conftest import _free_port
from tests.coordinator_harness import App, LoopThread, RunningCoordinator, fast_settings

ROOT = Path(__file__).resolve().parent.parent


def broker_address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    return host, int(port)


def wait_for(condition, timeout: float = 20.0, what: str = "condition", pause: float = 0.02):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)


# -- the gateway, in this process or as `python -m gateway` -----------------------------------

def gateway_env(broker: tuple[str, int], coordinator_url: str, queue_path: Path, prefix: str,
                gateway_id: str = "site-a", **overrides) -> dict[str, str]:
    env = {"PET__GATEWAY__ID": gateway_id, "PET__MQTT__HOST": broker[0],
           "PET__MQTT__PORT": str(broker[1]), "PET__MQTT__PREFIX": prefix,
           "PET__COORDINATOR__URL": coordinator_url, "PET__COORDINATOR__POLL_INTERVAL": "0.1",
           "PET__COORDINATOR__TIMEOUT": "5", "PET__QUEUE__PATH": str(queue_path),
           "PET__QUEUE__RETRY_MIN": "0.1", "PET__QUEUE__RETRY_MAX": "0.5",
           "PET__HTTP__BIND": "127.0.0.1:0", "PET__LOG__LEVEL": "debug"}
    for key, value in overrides.items():
        env["PET__" + key.replace(".", "__").upper()] = str(value)
    return env


class RunningGateway(LoopThread):
    """A Gateway in its own event loop thread."""

    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()
        self.gateway = self.call(self._start())
        wait_for(self.gateway.link.connected.is_set, what="the gateway to connect to the broker")

    async def _start(self) -> Gateway:
        gateway = Gateway(self.settings)
        await gateway.start()
        return gateway

    async def _cleanup(self) -> None:
        await self.gateway.stop()

    def metric(self, name: str, **labels) -> float:
        return self.gateway.metrics.registry.get_sample_value(name, labels) or 0.0


class Service:
    """`python -m <module>` with these arguments and PET__ variables, waiting for `ready`."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log: Path, ready: str):
        self.module, self.args, self.log, self.ready = module, args, log, ready
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")} | env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "Service":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args], cwd=ROOT,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while http_get(self.ready) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.module} did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()
    except OSError:
        return None


def metric(text: str, name: str, **labels) -> float:
    """The sum of the samples of a metric in Prometheus text whose labels include these."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        metric_name, _, label_text = series.partition("{")
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if part)
        if metric_name == name and all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


class Switch:
    """A TCP relay to a local port that can be cut: while cut, every connection is closed at
    once, as if the far side were down. `target` may change to reach another server."""

    def __init__(self, target: int):
        self.target = target
        self.cut = False
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            with self._lock:
                for s in self._live:
                    s.close()
                self._live.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                if self.cut:
                    raise OSError("cut")
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.set_cut(True)
        self.server.close()


# -- devices --------------------------------------------------------------------------------

def make_devices(broker, prefix: str, count: int, first_key: int = 1, ack_timeout: float = 10.0):
    """(participant, app, device) triples with fixed keys and models."""
    fleet = []
    for i in range(count):
        keys = SigningKeyPair.from_seed((first_key + i).to_bytes(32, "little"))
        device = Device(broker, prefix, keys.public_key)
        app = App(first_key + i, scalar=1.0 / (1 + i % 3))
        fleet.append((Participant(MqttTransport(device, ack_timeout), app.train, keys=keys), app, device))
    return fleet


class Fleet:
    """Every participant steps in a thread of its own, as devices do."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=p.run, args=(self.stop_event, 0.02, 0.2), daemon=True)
                        for p, _, _ in fleet]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        for _, _, device in self.fleet:
            device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def weighted_average(apps, seed) -> tuple[np.ndarray, int]:
    senders = [app for app in apps if seed in app.given]
    total = sum(app.scalar for app in senders)
    return sum(app.scalar * app.given[seed].astype(np.float64) for app in senders) / total, len(senders)


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own on the shared broker."""
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(mosquitto_url) -> tuple[str, int]:
    return broker_address(mosquitto_url)


def sum_key(params: RoundParameters) -> SigningKeyPair:
    for i in range(1, 500):
        keys = SigningKeyPair.from_seed((7000 + i).to_bytes(32, "little"))
        if select_task(keys, params.seed, params.sum, params.update).task is Task.SUM:
            return keys
    raise AssertionError("no sum participant")


# -- uplinks and verdicts --------------------------------------------------------------------

def test_uplinks_get_verdicts_and_malformed_input_is_refused(broker, prefix, tmp_path):
    settings = fast_settings(**{"pet.sum.time.min": 30, "pet.sum.time.max": 60})
    with RunningCoordinator(settings) as c, RunningGateway(load_settings(env=gateway_env(
            broker, c.url, tmp_path / "q.db", prefix, **{"queue.max_message_bytes": 4096}))) as gw:
        observer = Device(broker, prefix, bytes(32))
        wait_for(lambda: observer.topic("round/params") is not None, what="the round parameters")
        params = RoundParameters.from_bytes(observer.topic("round/params"))

        # a real Sum message from a sum participant: accepted
        keys = sum_key(params)
        device = Device(broker, prefix, keys.public_key)
        p = Participant(MqttTransport(device), lambda *a: None, keys=keys)
        wait_for(lambda: p.step() and p.phase.value == "sum2", what="the Sum message to be accepted")
        assert device.acks[-1] == {"accepted": True, "reason": "", "detail": "", "msg": p.transport.sent[-1]}

        # garbage: the coordinator cannot open it
        msg = device.publish(b"\x01" * 300)
        ack = device.ack(msg, 10)
        assert ack["accepted"] is False and ack["reason"] == "undecryptable"

        # refused by the gateway itself: empty and oversized payloads
        assert device.ack(device.publish(b""), 10)["reason"] == "malformed"
        big = device.ack(device.publish(b"\x02" * 5000), 10)
        assert big["reason"] == "too_large" and "at most 4096" in big["detail"]

        # topics that name no device: counted, no ack, and the gateway goes on
        for topic in (f"{prefix}/dev/xyz/msg", f"{prefix}/dev/{'AB' * 32}/msg", f"{prefix}/dev/{'0' * 63}/msg"):
            device.publish(b"\x03" * 100, topic=topic)
        wait_for(lambda: gw.metric("pet_gateway_uplinks_dropped_total", reason="bad_topic") == 3,
                 what="bad topics to be counted")
        assert device.ack(device.publish(b"\x04" * 200), 10)["reason"] == "undecryptable"

        assert gw.metric("pet_gateway_uplinks_dropped_total", reason="empty") == 1
        assert gw.metric("pet_gateway_uplinks_dropped_total", reason="too_large") == 1
        assert gw.metric("pet_gateway_uplinks_relayed_total", verdict="accepted") == 1
        assert gw.metric("pet_gateway_uplinks_rejected_total", reason="undecryptable") == 2
        wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
        assert c.status()["sum_participants"] == 1
        health = json.loads(http_get(f"http://127.0.0.1:{gw.gateway.http_port}/health"))
        assert health["mqtt_connected"] and health["coordinator_up"] and health["queued"] == 0
        metrics = http_get(f"http://127.0.0.1:{gw.gateway.http_port}/metrics").decode()
        assert metric(metrics, "pet_gateway_uplinks_dropped_total", reason="bad_topic") == 3
        device.close()
        observer.close()


# -- rounds through MQTT ---------------------------------------------------------------------

def model_topic_weights(device: Device) -> tuple[int, np.ndarray] | None:
    raw = device.topic("model/global")
    if not raw:
        return None
    round_id, length = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little")
    assert len(raw) == 12 + 4 * length
    return round_id, np.frombuffer(raw[12:], dtype="<f4")


def test_a_round_through_mqtt_delivers_the_global_model(broker, prefix, tmp_path):
    with RunningCoordinator(fast_settings()) as c, RunningGateway(load_settings(env=gateway_env(
            broker, c.url, tmp_path / "q.db", prefix))) as gw:
        fleet = make_devices(broker, prefix, 10)
        observer = Device(broker, prefix, bytes(32))
        watcher = Device(broker, prefix, bytes(32), watch=f"{prefix}/round/#")
        with Fleet(fleet):
            wait_for(lambda: c.status()["phase"] == "sum2", what="Sum2")
            wait_for(lambda: watcher.topic("round/sums") is not None, what="the sums topic")
            round_sums = watcher.topic("round/sums")
            wait_for(lambda: model_topic_weights(observer) is not None, what="the global model topic")
        round_id, weights = model_topic_weights(observer)
        latest = c.status()["latest_model"]
        assert round_id == latest["round_id"]
        assert np.array_equal(weights, np.frombuffer(c.call(c.coordinator.model_bytes("f32"))[12:], "<f4"))
        apps = [app for _, app, _ in fleet]
        (seed,) = {s for app in apps for s in app.given}
        average, senders = weighted_average(apps, seed)
        assert senders == latest["updates"] >= 3
        assert np.allclose(weights, average, atol=1e-4)
        # the next round is on: the last round's sum dict and seed columns were cleared
        wait_for(lambda: watcher.topic("round/sums") != round_sums
                 and not any("/round/seeds/" in t for t in watcher.retained),
                 what="the sum dict and seed columns of the last round to be cleared")
        assert gw.metric("pet_gateway_downlink_publishes_total", topic="seeds") == latest["sums"]
        assert gw.metric("pet_gateway_downlink_publishes_total", topic="clear") >= 1 + latest["sums"]
        wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
        observer.close()


def test_the_command_line_participant_takes_part_over_mqtt(broker, prefix, tmp_path):
    with RunningCoordinator(fast_settings()) as c, RunningGateway(load_settings(env=gateway_env(
            broker, c.url, tmp_path / "q.db", prefix))):
        np.save(tmp_path / "model.npy", np.full(c.settings.model.length, 0.25, dtype=np.float32))
        host, port = broker
        proc = subprocess.Popen([sys.executable, "-m", "pet.participant", "--mqtt", f"{host}:{port}",
                                 "--prefix", prefix, "--state", str(tmp_path / "state"),
                                 "--model", str(tmp_path / "model.npy")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            with Fleet(make_devices(broker, prefix, 10)):
                wait_for(lambda: (tmp_path / "state" / "global-latest.npy").exists(), timeout=60,
                         what="the command-line participant to save a global model")
        finally:
            proc.terminate()
            out = proc.communicate(timeout=10)[0]
        assert f"mqtt://{host}:{port}" in out and "new global model saved" in out
        assert np.load(tmp_path / "state" / "global-latest.npy").shape == (c.settings.model.length,)


# -- the queue, backoff and settings on their own -----------------------------------------------

def test_queue_is_bounded_keeps_order_and_stores_a_payload_once(tmp_path):
    q = UplinkQueue(tmp_path / "q.db", max_messages=3, max_bytes=250)
    dev = "ab" * 32
    assert q.put([Incoming(dev, b"a" * 100), Incoming(dev, b"b" * 100), Incoming(dev, b"a" * 100)],
                 b"k" * 32) == [QUEUED, QUEUED, DUPLICATE]
    assert q.put([Incoming(dev, b"c" * 100)], None) == [FULL]          # 300 bytes > 250
    assert q.put([Incoming(dev, b"d" * 10), Incoming(dev, b"e")], None) == [QUEUED, FULL]  # 4 > 3
    head = q.head(10)
    assert [u.payload[:1] for u in head] == [b"a", b"b", b"d"]
    assert head[0].round_pk == b"k" * 32 and head[2].round_pk is None
    assert head[0].msg == hashlib.sha256(b"a" * 100).hexdigest()[:16]
    q.remove([head[0].id])
    q.close()
    again = UplinkQueue(tmp_path / "q.db", max_messages=3, max_bytes=250)  # a restart
    assert (again.count, again.bytes) == (2, 110)
    assert [u.payload[:1] for u in again.head(10)] == [b"b", b"d"]
    assert again.put([Incoming(dev, b"a" * 100)], None) == [QUEUED]  # answered before: a new uplink


def test_backoff_grows_to_its_cap_with_jitter():
    b = Backoff(0.5, 4.0)
    delays = [b.next() for _ in range(20)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert delays[0] <= 0.5 and max(delays[5:]) > 2.0 and len(set(delays[5:])) > 1
    b.reset()
    assert b.next() == 0.5


def test_gateway_settings(tmp_path):
    s = load_settings(env={"PET__GATEWAY__ID": "site-7"})
    assert s.client_id == "pet-gateway-site-7" and s.queue.path == "pet-data/gateway-site-7.db"
    assert (s.mqtt.prefix, s.mqtt.port, s.coordinator.poll_interval) == ("pet", 1883, 0.25)
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nid = "north"\n[mqtt]\nhost = "broker.local"\nclient_id = "gw-n"\n'
                    '[mqtt.tls]\nenabled = true\n[coordinator]\ntoken = "t0k"\n[queue]\npath = "/q.db"\n')
    s = load_settings(path, env={"PET__MQTT__PORT": "8883", "PET__COORDINATOR__TOKEN": "123"})
    assert (s.gateway.id, s.mqtt.host, s.mqtt.port, s.client_id) == ("north", "broker.local", 8883, "gw-n")
    assert s.mqtt.tls.enabled and s.coordinator.token == "123" and s.queue.path == "/q.db"
    assert 'token = "***"' in s.to_toml() and "123" not in s.to_toml()

    def error(**env) -> str:
        with pytest.raises(SettingsError) as info:
            load_settings(env=env)
        return str(info.value)

    assert "did you mean mqtt.prefix?" in error(PET__MQTT__PREFX="x")
    assert "mqtt.prefix must be topic levels" in error(PET__MQTT__PREFIX="pet/#")
    assert "gateway.id must be" in error(PET__GATEWAY__ID="a/b")
    assert "coordinator.url must start with http://" in error(PET__COORDINATOR__URL="localhost:8081")
    assert "queue.retry_min must be <= queue.retry_max" in error(PET__QUEUE__RETRY_MIN="60")
    assert "mqtt.tls.ca_file: no such file" in error(PET__MQTT__TLS__ENABLED="true",
                                                     PET__MQTT__TLS__CA_FILE="/nonexistent/ca.crt")
    assert "mqtt.tls.enabled is false" in error(PET__MQTT__TLS__CA_FILE=__file__)
    assert error(PET__MQTT__PORT="x").startswith("environment variable PET__MQTT__PORT: mqtt.port must be an integer")


def test_cli_checks_and_prints_the_settings(tmp_path, capsys, monkeypatch):
    for name in [n for n in os.environ if n.upper().startswith("PET__")]:
        monkeypatch.delenv(name)
    example = ROOT / "examples" / "gateway.toml"
    assert gateway_main(["--config", str(example), "--check"]) == 0
    assert capsys.readouterr().out == "configuration OK\n"
    s = load_settings(example, env={})
    defaults = Settings()
    assert s == replace(defaults, gateway=GatewaySettings("site1"),
                        queue=replace(defaults.queue, path="pet-data/gateway-site1.db"))
    documented = tomllib.loads(example.read_text())
    documented["queue"]["path"] = s.queue.path  # commented out in the example
    assert documented == tomllib.loads(s.to_toml())  # every key is in the example
    monkeypatch.setenv("PET__QUEUE__MAX_MESSAGES", "0")
    assert gateway_main(["--check"]) == 2
    assert "queue.max_messages must be >= 1, got 0" in capsys.readouterr().err
    monkeypatch.delenv("PET__QUEUE__MAX_MESSAGES")
    assert gateway_main(["--print-config", "--log-level", "debug"]) == 0
    assert 'level = "debug"' in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "gateway", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "PET__<SECTION>__<KEY>" in out.stdout


# -- faults ------------------------------------------------------------------------------------

COORDINATOR_ENV = {
    "PET__PET__SUM__PROB": "0.25", "PET__PET__UPDATE__PROB": "1.0",
    "PET__PET__SUM__TIME__MIN": "1", "PET__PET__SUM__TIME__MAX": "10",
    "PET__PET__UPDATE__COUNT__MIN": "3", "PET__PET__UPDATE__TIME__MAX": "60",
    "PET__PET__SUM2__TIME__MIN": "0.3", "PET__PET__SUM2__TIME__MAX": "20",
    "PET__MODEL__LENGTH": "40",
}


def updaters_of(fleet, params: RoundParameters) -> list:
    """The (participant, app, device) triples that sortition makes update participants."""
    return [f for f in fleet if select_task(f[0].keys, params.seed, params.sum, params.update).task is Task.UPDATE]


def coordinator_status(url: str) -> dict:
    return json.loads(http_get(url + "/status") or b"{}")


OUTAGE = 30  # seconds the coordinator is away during Update


def test_uplinks_sent_while_the_coordinator_is_down_reach_it_once(broker, prefix, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Update lasts at least OUTAGE + 6 s: the outage and the restart fit in, so the phase
    # cannot end before the queued updates are in.
    coordinator = Service("coordinator", ["--port", str(port), "--data-dir", str(tmp_path / "data")],
                          COORDINATOR_ENV | {"PET__PET__UPDATE__TIME__MIN": str(OUTAGE + 6),
                                             "PET__PET__UPDATE__TIME__MAX": str(OUTAGE + 60)},
                          tmp_path / "coordinator.log", url + "/healthz").start()
    try:
        with RunningGateway(load_settings(env=gateway_env(broker, url, tmp_path / "q.db", prefix))) as gw:
            fleet = make_devices(broker, prefix, 10, ack_timeout=60)  # devices wait, never resend
            for _, app, _ in fleet:
                app.ready = False
            observer = Device(broker, prefix, bytes(32))
            with Fleet(fleet):
                wait_for(lambda: observer.topic("round/sums") is not None, what="the Update phase")
                params = RoundParameters.from_bytes(observer.topic("round/params"))
                updaters = updaters_of(fleet, params)
                coordinator.kill()
                down = time.monotonic()
                for _, app, _ in fleet:
                    app.ready = True
                wait_for(lambda: gw.metric("pet_gateway_queue_messages") == len(updaters),
                         what="every update to wait in the gateway's queue")
                time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
                assert gw.metric("pet_gateway_queue_messages") == len(updaters)
                assert all(device.acks == [] for _, _, device in updaters)  # no verdict yet
                coordinator.start()
                wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="the queue to drain")
                wait_for(lambda: coordinator_status(url).get("latest_model"), timeout=30, what="the model")
            latest = coordinator_status(url)["latest_model"]
            metrics = http_get(url + "/metrics").decode()  # the restarted process: every update
        assert latest["updates"] == len(updaters) >= 3
        assert metric(metrics, "pet_messages_total", phase="update", verdict="accepted") == len(updaters)
        assert metric(metrics, "pet_messages_total", phase="update", verdict="rejected") == 0
        assert gw.metric("pet_gateway_uplinks_relayed_total", verdict="accepted") >= len(updaters)
        assert gw.metric("pet_gateway_coordinator_errors_total", route="/message") \
            + gw.metric("pet_gateway_coordinator_errors_total", route="/messages") >= 1
        assert all(len(device.acks) == 1 and device.acks[0]["accepted"] for _, _, device in updaters)
        average, senders = weighted_average([app for _, app, _ in fleet], params.seed)
        model = np.frombuffer(http_get(url + "/model?format=f32")[12:], "<f4")
        assert senders == len(updaters) and np.allclose(model, average, atol=1e-4)
        observer.close()
    finally:
        coordinator.kill()


def test_a_gateway_killed_mid_round_loses_and_repeats_nothing(broker, prefix, tmp_path):
    settings = fast_settings(**{"pet.sum.prob": 0.25, "pet.update.prob": 1.0, "pet.sum.time.min": 1,
                                "pet.update.time.min": 8, "pet.update.time.max": 60})
    with RunningCoordinator(settings) as c:
        switch = Switch(c.port)  # cut: the gateway cannot reach the coordinator
        http_port = _free_port()
        env = gateway_env(broker, switch.url, tmp_path / "q.db", prefix, **{"http.bind": f"127.0.0.1:{http_port}"})
        gateway = Service("gateway", [], env, tmp_path / "gateway.log", f"http://127.0.0.1:{http_port}/health")
        gateway_metrics = lambda: http_get(f"http://127.0.0.1:{http_port}/metrics").decode()  # noqa: E731
        gateway.start()
        fleet = make_devices(broker, prefix, 10, ack_timeout=60)
        for _, app, _ in fleet:
            app.ready = False
        observer = Device(broker, prefix, bytes(32), watch=f"{prefix}/gw/site-a/status")
        try:
            with Fleet(fleet):
                wait_for(lambda: observer.topic("round/sums") is not None, what="the Update phase")
                assert observer.topic("gw/site-a/status") == b"online"
                params = RoundParameters.from_bytes(observer.topic("round/params"))
                updaters = updaters_of(fleet, params)
                first, second = updaters[:len(updaters) // 2], updaters[len(updaters) // 2:]
                switch.set_cut(True)
                for _, app, _ in first:  # these wait in the gateway's queue ...
                    app.ready = True
                wait_for(lambda: metric(gateway_metrics(), "pet_gateway_queue_messages") == len(first),
                         what="the first updates to be queued")
                gateway.kill()
                wait_for(lambda: observer.topic("gw/site-a/status") == b"offline", what="the last will")
                for _, app, _ in second:  # ... these in the broker, for the gateway's session
                    app.ready = True
                wait_for(lambda: all(p.transport.sent for p, _, _ in second), what="the other updates")
                time.sleep(0.3)
                gateway.start()
                wait_for(lambda: observer.topic("gw/site-a/status") == b"online", what="online again")
                switch.set_cut(False)
                wait_for(lambda: c.status()["latest_model"] is not None, timeout=30, what="the model")
                after_restart = gateway_metrics()
        finally:
            gateway.kill()
            switch.close()
        latest = c.status()["latest_model"]
        assert latest["updates"] == len(updaters) >= 3
        # the restarted gateway relayed every update (from its queue and from the broker) and
        # then the Sum2 messages, each once
        assert metric(after_restart, "pet_gateway_uplinks_relayed_total", verdict="accepted") == \
            len(updaters) + latest["sum2"]
        assert all(len(device.acks) == 1 and device.acks[0]["accepted"] for _, _, device in updaters)
        assert c.coordinator.metrics.registry.get_sample_value(
            "pet_messages_total", {"phase": "update", "verdict": "rejected", "reason": "duplicate"}) is None
        average, senders = weighted_average([app for _, app, _ in fleet], params.seed)
        model = np.frombuffer(c.call(c.coordinator.model_bytes("f32"))[12:], "<f4")
        assert senders == len(updaters) and np.allclose(model, average, atol=1e-4)
        observer.close()


def test_two_sites_serve_one_coordinator(mosquitto_factory, tmp_path):
    site_a, site_b = mosquitto_factory(), mosquitto_factory()
    brokers = [(site_a.host, site_a.port), (site_b.host, site_b.port)]
    with RunningCoordinator(fast_settings()) as c, \
            RunningGateway(load_settings(env=gateway_env(brokers[0], c.url, tmp_path / "a.db", "pet", "a"))) as a, \
            RunningGateway(load_settings(env=gateway_env(brokers[1], c.url, tmp_path / "b.db", "pet", "b"))) as b:
        fleet = make_devices(brokers[0], "pet", 5) + make_devices(brokers[1], "pet", 5, first_key=6)
        observers = [Device(broker, "pet", bytes(32)) for broker in brokers]
        with Fleet(fleet):
            wait_for(lambda: all(model_topic_weights(o) for o in observers), what="the model at both sites")
        latest = c.status()["latest_model"]
        (seed,) = {s for _, app, _ in fleet for s in app.given}
        average, senders = weighted_average([app for _, app, _ in fleet], seed)
        for observer in observers:
            round_id, weights = model_topic_weights(observer)
            assert round_id == latest["round_id"] and np.allclose(weights, average, atol=1e-4)
            observer.close()
        assert senders == latest["updates"]
        # each site relayed its own devices' messages, and only those
        relayed = [gw.metric("pet_gateway_uplinks_relayed_total", verdict="accepted") for gw in (a, b)]
        assert all(n > 0 for n in relayed)
        assert sum(relayed) == sum(len(p.transport.sent) for p, _, _ in fleet)


def test_full_queue_refuses_and_a_new_round_drops_what_is_left(broker, prefix, tmp_path):
    with RunningCoordinator(fast_settings(**{"pet.sum.time.min": 30, "pet.sum.time.max": 60})) as old:
        switch = Switch(old.port)
        env = gateway_env(broker, switch.url, tmp_path / "q.db", prefix, **{
            "queue.max_messages": 2, "queue.retry_min": 2, "queue.retry_max": 2})
        with RunningGateway(load_settings(env=env)) as gw:
            device = Device(broker, prefix, bytes(range(32)))
            wait_for(lambda: device.topic("round/params") is not None, what="the round parameters")
            switch.set_cut(True)
            sent = [device.publish(bytes([i]) * 300) for i in range(3)]
            full = device.ack(sent[2], 10)
            assert full["reason"] == "queue_full" and full["accepted"] is False
            assert gw.metric("pet_gateway_uplinks_dropped_total", reason="queue_full") == 1
            assert gw.metric("pet_gateway_queue_messages") == 2
            # the coordinator comes back with a new round: what was sealed for the old one is
            # answered by the gateway and dropped
            with RunningCoordinator(fast_settings(), key_label=b"another") as new:
                switch.target = new.port
                switch.set_cut(False)
                acks = [device.ack(msg, 10) for msg in sent[:2]]
                assert all(a["reason"] == "undecryptable" and "round ended" in a["detail"] for a in acks)
                assert gw.metric("pet_gateway_uplinks_dropped_total", reason="round_ended") == 2
                wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
                assert new.status()["counters"]["rejected"] == 0  # never forwarded
            device.close()
        switch.close()


def test_a_broker_restart_gets_the_round_state_back(mosquitto_factory, tmp_path):
    broker = mosquitto_factory()  # no persistence: a restart forgets every retained message
    address = (broker.host, broker.port)
    with RunningCoordinator(fast_settings(**{"pet.sum.time.min": 30, "pet.sum.time.max": 60})) as c, \
            RunningGateway(load_settings(env=gateway_env(address, c.url, tmp_path / "q.db", "pet"))) as gw:
        before = Device(address, "pet", bytes(32))
        wait_for(lambda: before.topic("round/params") is not None, what="the round parameters")
        params = before.topic("round/params")
        before.close()
        broker.restart()
        wait_for(lambda: gw.gateway.link.connected.is_set(), what="the gateway to reconnect")
        after = Device(address, "pet", bytes(32), watch="pet/gw/+/status")
        wait_for(lambda: after.topic("round/params") == params, what="the round parameters again")
        wait_for(lambda: after.topic("gw/site-a/status") == b"online", what="the status again")
        assert after.ack(after.publish(b"\x05" * 200), 10)["reason"] == "undecryptable"  # and uplinks
        after.close()


def test_round_state_left_on_the_broker_by_an_earlier_run_is_cleared(broker, prefix, tmp_path):
    stale = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"stale-{prefix}")
    stale.connect(*broker)
    stale.loop_start()
    for topic in (f"{prefix}/round/sums", f"{prefix}/round/seeds/{'ab' * 32}", f"{prefix}/round/params"):
        stale.publish(topic, b"old round", qos=1, retain=True).wait_for_publish(5)
    stale.disconnect()
    stale.loop_stop()
    with RunningCoordinator(fast_settings(**{"pet.sum.time.min": 30, "pet.sum.time.max": 60})) as c, \
            RunningGateway(load_settings(env=gateway_env(broker, c.url, tmp_path / "q.db", prefix))):
        watcher = Device(broker, prefix, bytes(32), watch=f"{prefix}/round/#")
        wait_for(lambda: set(watcher.retained) == {f"{prefix}/round/params"}
                 and watcher.topic("round/params") == c.coordinator.params_bytes(),
                 what="only this round's parameters to be retained")
        watcher.close()


# -- several uplinks in one request ------------------------------------------------------------

class StubCoordinator(http.server.ThreadingHTTPServer):
    """Stands in for the coordinator's POST routes and records every message and the route it
    came by. It accepts a message whose first byte is even and rejects the others, with the
    message's SHA-256 as the detail: an ack shows whose verdict it is. Without `batch`,
    POST /messages is 404, as on a coordinator that lacks it."""

    daemon_threads = True

    def __init__(self, batch: bool):
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.batch = batch
        self.received: list[tuple[str, bytes]] = []  # (route, message)
        self.batch_sizes: list[int] = []
        self.refused = 0  # POST /messages answered 404
        self.lock = threading.Lock()
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @staticmethod
    def verdict(message: bytes) -> dict:
        if message[0] % 2 == 0:
            return {"accepted": True, "reason": "", "detail": ""}
        return {"accepted": False, "reason": "undecryptable", "detail": hashlib.sha256(message).hexdigest()}


class _StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real one

    def do_GET(self):
        if self.path == "/status":
            self._answer(200, json.dumps({"round_id": 1, "phase": "sum"}).encode())
        else:
            self._answer(204)  # no round parameters: the uplinks carry no round key

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stub = self.server
        if self.path == "/message":
            with stub.lock:
                stub.received.append(("/message", body))
            verdict = stub.verdict(body)
            if verdict["accepted"]:
                self._answer(200)
            else:
                self._answer(400, json.dumps(verdict).encode())
        elif not stub.batch:
            with stub.lock:
                stub.refused += 1
            self._answer(404, b"404: Not Found")
        else:
            messages, at = [], 0
            while at < len(body):
                length = int.from_bytes(body[at:at + 4], "big")
                messages.append(body[at + 4:at + 4 + length])
                at += 4 + length
            with stub.lock:
                stub.received += [("/messages", m) for m in messages]
                stub.batch_sizes.append(len(messages))
            self._answer(200, json.dumps([stub.verdict(m) for m in messages]).encode())

    def _answer(self, status: int, body: bytes = b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("batch", [True, False], ids=["POST /messages", "fallback to POST /message"])
def test_uplinks_that_waited_reach_the_coordinator_once_each(broker, prefix, tmp_path, batch):
    stub = StubCoordinator(batch)
    switch = Switch(stub.port)
    switch.set_cut(True)  # the uplinks wait in the queue, so that several go at once
    try:
        settings = load_settings(env=gateway_env(broker, switch.url, tmp_path / "q.db", prefix))
        with RunningGateway(settings) as gw:
            devices = [Device(broker, prefix, bytes([i + 1]) * 32) for i in range(4)]
            sent = []
            for k in range(40):
                payload = bytes([k]) + os.urandom(299)
                sent.append((devices[k % 4], payload, devices[k % 4].publish(payload)))
            wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 40, what="40 queued uplinks")
            switch.set_cut(False)
            for device, payload, msg in sent:
                assert device.ack(msg, 20) == StubCoordinator.verdict(payload) | {"msg": msg}
            wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 0, what="an empty queue")
            assert gw.metric("pet_gateway_uplinks_relayed_total", verdict="accepted") == 20
            assert gw.metric("pet_gateway_uplinks_rejected_total", reason="undecryptable") == 20
            for device in devices:
                device.close()
    finally:
        switch.close()
        stub.shutdown()
    assert sorted(m for _, m in stub.received) == sorted(p for _, p, _ in sent)  # each once
    if batch:
        assert {route for route, _ in stub.received} == {"/messages"} and max(stub.batch_sizes) > 1
    else:
        assert {route for route, _ in stub.received} == {"/message"} and stub.refused >= 1
