"""The reference participant over MQTT: the gateway's topics (docs/protocol.md section 6).

Round state comes from retained topics (parameters, sum dict, the own seed
column, global model); each sealed message is published on the participant's
uplink topic and its verdict read from its ack topic, matched by the first 16
hex digits of the payload's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pet.participant.transport import TransportError
from pet.verdict import Verdict
from pet.wire import RoundParameters, SumDict, UpdateSeedDict



log = logging.getLogger("pet.participant")


def _verdict(payload: bytes) -> dict | None:
    """A verdict from the ack topic ({"msg": id, "accepted": ..., ...}), or None for anything else:
    junk there must not stop the client's network thread."""
    try:
        ack = json.loads(payload)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return ack if isinstance(ack, dict) and isinstance(ack.get("msg"), str) else None

class DeviceClient:
    """A participant's MQTT client: the retained round topics as they arrive and its own
    acks (plus whatever `watch` matches, to see what the broker holds)."""

    def __init__(self, broker: tuple[str, int], prefix: str, pk: bytes, watch: str = "",
                 username: str | None = None, password: str | None = None, tls_ca: str | None = None):
        self.prefix, self.pk_hex = prefix, pk.hex()
        self.retained: dict[str, bytes] = {}
        self.acks: list[dict] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.subscriptions = [(f"{prefix}/round/params", 1), (f"{prefix}/round/sums", 1),
                              (f"{prefix}/round/seeds/{self.pk_hex}", 1), (f"{prefix}/model/global", 1),
                              (f"{prefix}/dev/{self.pk_hex}/ack", 1)] + ([(watch, 1)] if watch else [])
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = self._on_connect
        self.client.connect(*broker)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TransportError(f"no SUBACK from the broker at {broker[0]}:{broker[1]}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        # on every connection: the session is clean, so a broker that restarted, or that
        # dropped the connection, has forgotten the subscriptions; and what was retained may
        # have been cleared meanwhile, so only what the broker sends again is kept
        if not reason_code.is_failure:
            with self.cond:
                self.retained.clear()
            client.subscribe(self.subscriptions)

    def _on_message(self, client, userdata, msg):
        with self.cond:
            if msg.topic.endswith("/ack"):
                ack = _verdict(msg.payload)
                if ack is None:
                    log.warning("ignored a malformed verdict on %s (%d bytes)", msg.topic, len(msg.payload))
                else:
                    self.acks.append(ack)
            elif msg.payload:
                self.retained[msg.topic] = bytes(msg.payload)
            else:
                self.retained.pop(msg.topic, None)
            self.cond.notify_all()

    def topic(self, name: str) -> bytes | None:
        with self.cond:
            return self.retained.get(f"{self.prefix}/{name}")

    def publish(self, payload: bytes, topic: str | None = None) -> str:
        """Publish an uplink (QoS 1); returns its message id."""
        self.client.publish(topic or f"{self.prefix}/dev/{self.pk_hex}/msg", payload, qos=1)
        return hashlib.sha256(payload).hexdigest()[:16]

    def ack(self, msg: str, timeout: float) -> dict | None:
        with self.cond:
            self.cond.wait_for(lambda: any(a["msg"] == msg for a in self.acks), timeout)
            return next((a for a in self.acks if a["msg"] == msg), None)

    def close(self):
        self.client.disconnect()  # wakes paho's thread, so loop_stop() need not wait for it
        self.client.loop_stop()


class MqttTransport:
    """pet.participant's Transport over the gateway's topics (docs/protocol.md section 6)."""

    def __init__(self, device: DeviceClient, ack_timeout: float = 10.0):
        self.device = device
        self.ack_timeout = ack_timeout
        self.sent: list[str] = []

    def params(self):
        raw = self.device.topic("round/params")
        return RoundParameters.from_bytes(raw) if raw else None

    def sums(self):
        raw = self.device.topic("round/sums")
        return SumDict.from_bytes(raw) if raw else None

    def seeds(self, sum_pk: bytes):
        raw = self.device.topic(f"round/seeds/{sum_pk.hex()}")
        return UpdateSeedDict.from_bytes(raw) if raw else None

    def model(self):
        raw = self.device.topic("model/global")
        if not raw:
            return None
        return [float(w) for w in np.frombuffer(raw[12:], dtype="<f4")]

    def send(self, sealed: bytes) -> Verdict:
        msg = self.device.publish(sealed)
        self.sent.append(msg)
        ack = self.device.ack(msg, self.ack_timeout)
        if ack is None:
            raise TransportError(f"no ack for {msg} within {self.ack_timeout} s")
        return Verdict(ack["accepted"], ack["reason"], ack["detail"])
