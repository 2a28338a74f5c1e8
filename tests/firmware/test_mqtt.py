"""upet.mqtt on the Unix port against a real mosquitto, with paho-mqtt as the other side.

Every test starts its own broker (tests/conftest.py). The device is a
MicroPython script; scripts that must run beside the test (kill, broker restart,
messages sent to a waiting device) run as a `Device`, the others through
`run_upy`. Malformed packets come from a small fake broker, since a real one
cannot be made to send them.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest

from tests.conftest import _free_port
from tests.firmware.conftest import MICROPYTHON, firmware_path, run_upy

BIG = 200 * 1024


def big_payload() -> bytes:
    """What the device's fill() writes: block j is SHA-256(str(j)) repeated 32 times."""
    return b"".join(hashlib.sha256(str(j).encode()).digest() * 32 for j in range(BIG // 1024))


DEVICE_FILL = """
import hashlib
def fill(write):
    buf = bytearray(1024)
    for j in range(200):
        d = hashlib.sha256(str(j).encode()).digest()
        for k in range(32):
            buf[k * 32:k * 32 + 32] = d
        write(buf)
"""


def prelude(broker, port=None) -> str:
    # MICROPYPATH replaces the Unix port's path, which holds its frozen modules (ssl) as on a board
    return (f"HOST, PORT = {broker.host!r}, {port or broker.port}\n"
            "import sys, time\nsys.path.append('.frozen')\nfrom upet.mqtt import MQTTClient, MQTTError\n")


class Device:
    """A MicroPython script running beside the test; its output comes line by line."""

    def __init__(self, script: str, tmp, heap: str | None = None):
        path = tmp / f"device-{time.monotonic_ns()}.py"
        path.write_text(script)
        cmd = [str(MICROPYTHON)] + (["-X", f"heapsize={heap}"] if heap else []) + [str(path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, MICROPYPATH=str(firmware_path())))
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                pytest.fail(f"device never printed {prefix!r}; output:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = 30) -> list[str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        while (line := self.lines.get(timeout=5)) is not None:
            self.seen.append(line)
        if self.proc.returncode != 0:
            pytest.fail(f"device exited {self.proc.returncode}; output:\n" + "\n".join(self.seen))
        return self.seen

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def devices(tmp_path):
    started = []

    def start(script: str, heap: str | None = None) -> Device:
        started.append(Device(script, tmp_path, heap))
        return started[-1]
    yield start
    for d in started:
        d.kill()


class Paho:
    """The test's own MQTT client: records every message it receives."""

    def __init__(self, broker, client_id="pytest", clean_session=True, port=None, **tls):
        self.messages: list[paho.MQTTMessage] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean_session)
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(broker.host, port or broker.port)
        self.client.loop_start()

    def subscribe(self, topic, qos=1):
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(5), "no SUBACK for the test's subscription"

    def publish(self, topic, payload, qos=1, retain=False):
        self.client.publish(topic, payload, qos, retain).wait_for_publish(10)

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_publish_subscribe_both_ways(mosquitto_factory, devices):
    broker = mosquitto_factory()
    tester = Paho(broker)
    tester.subscribe("up/#")
    tester.publish("down/kept", b"retained one", retain=True)
    device = devices(prelude(broker) + """
got = []
def on_message(topic, reader, retained):
    got.append(topic)
    print("got", topic.decode(), reader.length, reader.read(), retained)
c = MQTTClient("dev-a", HOST, PORT, keepalive=30)
print("session", c.connect())
c.set_callback(on_message)
c.subscribe("down/#", qos=1)
while not got and c.wait_msg(5):
    pass
print("ready")
c.publish("up/q0", b"zero", qos=0)
c.publish("up/q1", b"one", qos=1)
while len(got) < 3 and c.wait_msg(5):
    pass
c.disconnect()
print("session", c.connect())
c.disconnect()
print("attributes", len(c.__dict__))
""")
    assert device.expect("session") == "session False"
    assert device.expect("got") == "got down/kept 12 b'retained one' True"
    device.expect("ready")
    tester.publish("down/q0", b"to device 0", qos=0)
    tester.publish("down/q1", b"to device 1", qos=1)
    lines = device.finish()
    assert "got down/q0 11 b'to device 0' False" in lines
    assert "got down/q1 11 b'to device 1' False" in lines
    assert lines[-2] == "session True"  # clean_session=False: the broker kept it
    # at most 17, after every kind of use: a 17-slot instance dict (272 bytes on x64), not a
    # 29-slot one (464), which a board's start-up may not find in one piece
    assert lines[-1] == "attributes 17"
    got = {m.topic: (m.payload, m.qos) for m in tester.wait_for(2)}
    assert got == {"up/q0": (b"zero", 0), "up/q1": (b"one", 1)}
    tester.close()


def test_last_will_on_abrupt_end(mosquitto_factory, devices):
    broker = mosquitto_factory()
    tester = Paho(broker)
    tester.subscribe("status/#")
    device = devices(prelude(broker) + """
c = MQTTClient("dev-w", HOST, PORT, keepalive=30, will=("status/dev-w", b"offline", False, 1))
c.connect()
c.publish("status/dev-w", b"online", qos=1)
print("connected")
while True:
    c.wait_msg(1)
""")
    device.expect("connected")
    assert [m.payload for m in tester.wait_for(1)] == [b"online"]
    device.kill()
    assert [m.payload for m in tester.wait_for(2)] == [b"online", b"offline"]
    tester.close()


def test_keepalive_keeps_idle_connection(mosquitto_factory, tmp_path):
    broker = mosquitto_factory()
    out = run_upy(prelude(broker) + """
c = MQTTClient("dev-k", HOST, PORT, keepalive=2)
c.connect()
t = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t) < 5000:  # 2.5 keepalives without a message
    c.check_msg()
    time.sleep_ms(100)
c.publish("idle/done", b"x", qos=1)
print("connects", c.connects)
""", tmp=tmp_path, timeout=30)
    assert out.split() == ["connects", "1"]
    log = broker.log.read_text()
    assert log.count("Received PINGREQ from dev-k") >= 4
    assert "dev-k has exceeded timeout" not in log


def test_qos1_survives_broker_restart(mosquitto_factory, devices, tmp_path):
    broker = mosquitto_factory(persistence_dir=tmp_path / "db")
    collector = Paho(broker, client_id="collector", clean_session=False)
    collector.subscribe("seq/#")
    device = devices(prelude(broker) + """
c = MQTTClient("dev-r", HOST, PORT, keepalive=10)
c.connect(timeout=2)
for i in range(40):
    c.publish("seq/%d" % i, b"%d" % i, qos=1, timeout=30)
    print("sent", i)
    time.sleep_ms(30)
print("connects", c.connects)
""")
    device.expect("sent 10")
    broker.restart()
    lines = device.finish(60)
    assert int(lines[-1].split()[1]) >= 2, "the device never had to reconnect"
    assert "Received PUBLISH from dev-r (d1, q1" in broker.log.read_text()  # resent with DUP
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len({m.payload for m in collector.messages}) < 40:
        time.sleep(0.05)
    assert {m.payload for m in collector.messages} == {b"%d" % i for i in range(40)}
    collector.close()


def test_reconnect_resubscribes_when_session_lost(mosquitto_factory, devices):
    broker = mosquitto_factory()  # no persistence: a restart forgets every session
    tester = Paho(broker)
    device = devices(prelude(broker) + """
c = MQTTClient("dev-s", HOST, PORT, keepalive=10)
c.set_callback(lambda t, r, retained: print("got", t.decode(), r.read()))
c.connect()
c.subscribe("news/#")
print("ready")
try:
    c.wait_msg(20)
except MQTTError as e:
    print("lost:", e)
t = time.ticks_ms()
c.ensure_connected()
print("back after", time.ticks_diff(time.ticks_ms(), t) // 500 * 500, "session", c.session_present)
c.wait_msg(10)
""")
    device.expect("ready")
    broker.restart()
    assert device.expect("lost:") == "lost: connection closed by the broker"
    assert device.expect("back after").endswith("session False")
    tester.client.reconnect()
    time.sleep(0.2)
    tester.publish("news/today", b"resubscribed")
    assert device.finish()[-1] == "got news/today b'resubscribed'"
    tester.close()


def test_backoff_gives_up_at_timeout(tmp_path):
    port = _free_port()  # nothing listens there
    out = run_upy(f"PORT = {port}\n" + """
import time
from upet.mqtt import MQTTClient, MQTTError
c = MQTTClient("dev-b", "127.0.0.1", PORT)
t = time.ticks_ms()
try:
    c.ensure_connected(timeout=2)
except MQTTError as e:
    print(e)
print(time.ticks_diff(time.ticks_ms(), t))
""", tmp=tmp_path, timeout=20)
    message, elapsed = out.splitlines()
    assert message == f"cannot connect to 127.0.0.1:{port}: [Errno 111] ECONNREFUSED"
    assert 1900 <= int(elapsed) < 3000


def test_200k_payloads_stream_in_64k_heap(mosquitto_factory, devices, tmp_path):
    broker = mosquitto_factory()
    tester = Paho(broker)
    tester.subscribe("big/up")
    retained = os.urandom(BIG)
    tester.publish("big/down", retained, retain=True)
    out = run_upy(prelude(broker) + DEVICE_FILL + """
import gc, hashlib, binascii
buf = bytearray(512)
def on_message(topic, reader, retained):
    h, n = hashlib.sha256(), 0
    while True:
        k = reader.readinto(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
    print("received", topic.decode(), n, binascii.hexlify(h.digest()).decode(), retained)
c = MQTTClient("dev-big", HOST, PORT)
c.connect()
c.set_callback(on_message)
c.subscribe("big/down")
c.wait_msg(10)
gc.collect()
c.publish_stream("big/up", 200 * 1024, fill, qos=1)
print("published")
""", heap="64k", tmp=tmp_path, timeout=60)
    assert out.splitlines() == [f"received big/down {BIG} {hashlib.sha256(retained).hexdigest()} True",
                                "published"]
    [msg] = tester.wait_for(1)
    assert hashlib.sha256(msg.payload).digest() == hashlib.sha256(big_payload()).digest()
    tester.close()


class FakeBroker:
    """Accepts one connection, reads the CONNECT and answers as `behaviour` says, then stalls."""

    host = "127.0.0.1"

    def __init__(self, behaviour: bytes | None):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.behaviour, self.conns = behaviour, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.server.accept()
        self.conns.append(conn)
        conn.recv(1024)
        if self.behaviour == b"close":
            conn.sendall(b"\x20\x02")
            conn.close()
        elif self.behaviour:
            conn.sendall(self.behaviour)

    def close(self):
        for c in self.conns:
            c.close()
        self.server.close()


@pytest.mark.parametrize("answer, error", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "malformed packet: expected CONNACK (0x20), got 0x48"),
    (b"\x20\x02\x00", "timed out in the middle of a packet"),
    (b"close", "connection closed by the broker"),
    (b"\x20\xff\xff\xff\xff\x01", "malformed packet: remaining length > 4 bytes"),
    (b"\x20\x03\x00\x00\x00", "malformed packet: CONNACK of length 3, not 2"),
    (None, "no CONNACK from the broker within 2 s"),
    (b"\x20\x02\x00\x00", "no PINGRESP from the broker within 2 s"),
    (b"\x20\x02\x00\x00\x90\x02\x00\x01", "unexpected packet from the broker: type 0x90, length 2"),
    (b"\x20\x02\x00\x00\x34\x06\x00\x01t\x00\x01x", "unexpected packet from the broker: type 0x34, length 6"),
    (b"\x20\x02\x00\x00\x30\x04\x00\x03top", "malformed or oversized PUBLISH topic: 3 bytes"),
    (b"\x20\x02\x00\x00\x30\xda\x04\x02\x58", "malformed or oversized PUBLISH topic: 600 bytes"),
], ids=["garbage", "truncated", "closed", "length-5-bytes", "long-connack", "stall", "no-pingresp",
        "short-suback", "qos2-publish", "topic-beyond-packet", "topic-over-512"])
def test_malformed_broker_gives_clear_error(answer, error, tmp_path):
    fake = FakeBroker(answer)
    try:
        out = run_upy(prelude(fake) + """
c = MQTTClient("dev-m", HOST, PORT, keepalive=2)
t = time.ticks_ms()
try:
    c.connect(timeout=2)
    c.wait_msg(10)
    print("no error")
except MQTTError as e:
    print(e)
print(time.ticks_diff(time.ticks_ms(), t))
""", tmp=tmp_path, timeout=20)
    finally:
        fake.close()
    message, elapsed = out.splitlines()
    assert message.startswith(error)
    assert int(elapsed) < 4500


def test_fill_must_write_the_announced_length(mosquitto_factory, tmp_path):
    broker = mosquitto_factory()
    tester = Paho(broker)
    tester.subscribe("fill/#")
    out = run_upy(prelude(broker) + """
c = MQTTClient("dev-f", HOST, PORT)
for qos in (0, 1):
    for data in (b"abc", b"abcde"):
        c.ensure_connected()
        try:
            c.publish_stream("fill/bad", 4, lambda write: write(data), qos)
        except ValueError as e:
            print(qos, len(data), e, c.sock is None)
    c.ensure_connected()
    c.publish_stream("fill/good", 4, lambda write: [write(b"ab"), write(b"cd")], qos)
try:
    c.publish_stream("fill/bad", 1, lambda write: write(b"x"), qos=2)
except ValueError as e:
    print(e)
c.disconnect()
try:
    c.publish("fill/bad", b"x", qos=0)
except MQTTError as e:
    print(e)
""", tmp=tmp_path, timeout=30)
    cut = "fill wrote more or fewer bytes than announced True"
    assert out.splitlines() == [f"0 3 {cut}", f"0 5 {cut}", f"1 3 {cut}", f"1 5 {cut}",
                                "QoS must be 0 or 1", "not connected to the broker"]
    assert [(m.topic, m.payload) for m in tester.wait_for(2)] == [("fill/good", b"abcd")] * 2
    tester.close()


def test_refused_credentials(mosquitto_factory, tmp_path):
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "device", "right"], check=True)
    broker = mosquitto_factory(f"allow_anonymous false\npassword_file {passwords}")
    out = run_upy(prelude(broker) + """
for password in ("wrong", "right"):
    c = MQTTClient("dev-p", HOST, PORT, user="device", password=password)
    try:
        c.ensure_connected(timeout=20)  # a refusal is final: no retrying for 20 s
        print("connected")
        c.disconnect()
    except MQTTError as e:
        print(e)
""", tmp=tmp_path, timeout=15)
    assert out.splitlines() == ["broker refused the connection: not authorised (5)", "connected"]


def _certificate(tmp_path, name):
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return key, cert, der


def test_tls(mosquitto_factory, tmp_path):
    key, cert, der = _certificate(tmp_path, "broker")
    _, _, other = _certificate(tmp_path, "other")
    tls_port = _free_port()
    broker = mosquitto_factory(f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}")
    deadline = time.monotonic() + 5
    while socket.socket().connect_ex(("127.0.0.1", tls_port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    tester = Paho(broker)
    tester.subscribe("tls/#")
    (tmp_path / "ca.der").write_bytes(der)
    (tmp_path / "other.der").write_bytes(other)
    out = run_upy(prelude(broker, tls_port) + f"""
for ca in ("other.der", "ca.der"):
    cadata = open({str(tmp_path)!r} + "/" + ca, "rb").read()
    c = MQTTClient("dev-t", HOST, PORT, ssl_params={{"cadata": cadata, "server_hostname": "localhost"}})
    try:
        c.connect()
    except MQTTError as e:
        print(ca, e)
        continue
    got = []
    c.set_callback(lambda t, r, retained: got.append(r.read()))
    c.subscribe("tls/echo")
    print("idle", c.wait_msg(0.3), c.check_msg())  # a wait that ends without a packet leaves TLS usable
    c.publish("tls/echo", b"over tls", qos=1)
    while not got and c.wait_msg(5):
        pass
    print("got", got[0])
    c.disconnect()
""", tmp=tmp_path, timeout=30)
    assert out.splitlines() == [
        "other.der TLS handshake with the broker failed: The certificate is not correctly signed by the trusted CA",
        "idle False False", "got b'over tls'"]
    assert [m.payload for m in tester.wait_for(1)] == [b"over tls"]
    tester.close()
