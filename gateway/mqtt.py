"""The gateway's MQTT connection (paho-mqtt): topics, persistent session, manual PUBACKs.

The session is persistent (fixed client id, MQTT 5 with clean_start=False and
a session expiry), so the broker keeps the uplink subscription and queues
device messages while the gateway is away. PUBACKs are sent by the gateway
itself (`ack`), only once an uplink is safely in the on-disk queue: until
then the broker still holds the message and sends it again after a
reconnect.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from coordinator.ratelog import RateLimitedLog
from gateway.metrics import Metrics

log = logging.getLogger("gateway.mqtt")

_PK_HEX = re.compile(r"[0-9a-f]{64}")


class Topics:
    """The topic layout of docs/protocol.md section 6 under one prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.uplinks = f"{prefix}/dev/+/msg"
        self.round = f"{prefix}/round/"
        self.params = f"{prefix}/round/params"
        self.sums = f"{prefix}/round/sums"
        self.seeds_prefix = f"{prefix}/round/seeds/"
        self.model = f"{prefix}/model/global"

    def seeds(self, sum_pk_hex: str) -> str:
        return self.seeds_prefix + sum_pk_hex

    def ack(self, pk_hex: str) -> str:
        return f"{self.prefix}/dev/{pk_hex}/ack"

    def status(self, gateway_id: str) -> str:
        return f"{self.prefix}/gw/{gateway_id}/status"

    def device_of(self, topic: str) -> str | None:
        """The pk_hex of a well-formed uplink topic <prefix>/dev/<64 lowercase hex>/msg, else None."""
        head, tail = f"{self.prefix}/dev/", "/msg"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        pk_hex = topic[len(head):-len(tail)]
        return pk_hex if _PK_HEX.fullmatch(pk_hex) else None


@dataclass(frozen=True)
class Received:
    """One PUBLISH from the broker; `generation` is the connection it came on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int


class MqttLink:
    """One paho client with its network thread.

    Set the hooks before start(); they run on paho's thread and must not block:
    on_uplink(Received) for everything under <prefix>/dev/, on_retained(topic, payload)
    for retained messages under <prefix>/round/ and on <prefix>/model/global (what the broker
    holds, e.g. from a past run, and what is written there later, the gateway's own
    messages included), on_connect() after every (re)connection.
    """

    def __init__(self, settings, metrics: Metrics):
        self.settings = settings
        self.topics = Topics(settings.mqtt.prefix)
        self.status_topic = self.topics.status(settings.gateway.id)
        self.metrics = metrics
        self.on_uplink: Callable[[Received], None] = lambda message: None
        self.on_retained: Callable[[str, bytes], None] = lambda topic, payload: None
        self.on_connect: Callable[[], None] = lambda: None
        self.connected = threading.Event()
        self._stopping = False
        self.generation = 0  # +1 on every connection: PUBACKs belong to the connection they answer
        self._ratelog = RateLimitedLog(log, interval=10.0)
        m = settings.mqtt
        c = self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                      protocol=paho.MQTTv5, manual_ack=True)
        if m.username:
            c.username_pw_set(m.username, m.password or None)
        if m.tls.enabled:
            c.tls_set(ca_certs=m.tls.ca_file or None, certfile=m.tls.cert_file or None,
                      keyfile=m.tls.key_file or None)
        c.will_set(self.status_topic, b"offline", qos=1, retain=True)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message

    def start(self) -> None:
        m = self.settings.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline (the retained status), disconnect cleanly, stop the network thread."""
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, message: Received) -> None:
        """PUBACK: the broker may now forget the message. A message that came on an
        earlier connection is not acknowledged: the broker sends it again anyway."""
        if message.qos > 0 and message.generation == self.generation:
            self.client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1; paho keeps it while the broker is away and sends it after reconnecting."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    # -- paho callbacks (paho's network thread) ---------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._ratelog.warning("refused", "the broker refused the connection: %s", reason_code)
            return
        self.generation += 1
        log.info("connected to %s:%d as %s (session %s)", self.settings.mqtt.host,
                 self.settings.mqtt.port, self.settings.client_id,
                 "resumed" if flags.session_present else "new")
        # Retain As Published: a retained message another client writes later reaches the
        # gateway marked retained too, so the downlink learns of it and puts the topic right
        state = SubscribeOptions(qos=0, retainAsPublished=True)
        client.subscribe([(self.topics.uplinks, SubscribeOptions(qos=1)),
                          (self.topics.round + "#", state), (self.topics.model, state)])
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self.connected.set()
        self.metrics.mqtt_connected.set(1)
        self.on_connect()

    def _on_connect_fail(self, client, userdata) -> None:
        self._ratelog.warning("unreachable", "cannot reach the broker at %s:%d; retrying",
                              self.settings.mqtt.host, self.settings.mqtt.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("disconnected from the broker: %s", reason_code)
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        try:
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                topic = msg._topic.decode(errors="replace")  # reported as a bad topic
            received = Received(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain),
                                self.generation)
            if topic.startswith(self.topics.round) or topic == self.topics.model:
                if msg.retain:
                    self.on_retained(topic, received.payload)
                return
            self.on_uplink(received)
        except Exception:  # never let one message stop paho's network thread
            log.exception("failed to take a message from the broker")
