"""Downlink: follow the coordinator and keep the retained round topics in step with it.

Every poll_interval the gateway reads GET /status, saying who it is, whether
it is connected to its broker and how many uplinks it holds (headers
X-Pet-Gateway, X-Pet-Gateway-Mqtt, X-Pet-Gateway-Queue: the coordinator's
dashboard shows which gateways are alive). When the round, the phase or the
latest global model changed, it fetches what devices need now:

  <prefix>/round/params         GET /params, always
  <prefix>/round/sums           GET /sums, during Update and Sum2
  <prefix>/round/seeds/<pk_hex> GET /seeds?pk=..., one column per sum participant, during Sum2
  <prefix>/model/global         GET /model?format=f32, once there is a global model

and publishes them retained. Sums and seed columns that are no longer wanted
are cleared (an empty retained message). Order matters to a device that reads
the topics as they come: clears first, then the model, the parameters, the
sums and the seed columns, so that a device that sees new round parameters
never still holds the last round's sum dict.

What the broker holds is learned from the retained messages it sends on
subscribing, so topics a previous run left behind are cleared as well.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from coordinator.ratelog import RateLimitedLog
from gateway.api import CoordinatorApi, Unavailable
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from pet.errors import DecodeError
from pet.wire import SumDict

log = logging.getLogger("gateway.downlink")

_ROUND_PK = slice(8, 40)  # RoundParameters: u64 length prefix, then the round's public key


class Downlink:
    def __init__(self, api: CoordinatorApi, link: MqttLink, metrics: Metrics, poll_interval: float):
        self.api, self.link, self.metrics = api, link, metrics
        self.topics = link.topics
        self.poll_interval = poll_interval
        self.round_pk: bytes | None = None  # the round key devices are sealing to now
        self.status: dict | None = None     # the coordinator's last /status
        self._wanted: dict[str, bytes] = {}    # topic -> what it should hold now
        self._on_broker: dict[str, bytes] = {}  # topic -> what the broker holds, as far as we know
        self._lock = threading.Lock()           # _on_broker is also written on paho's thread
        self._seen: tuple | None = None         # (round, phase, start, model) of the last refresh
        self._model, self._model_key = b"", None  # the latest global model and its (round, time)
        self._ratelog = RateLimitedLog(log, interval=10.0)

    # -- paho's thread ------------------------------------------------------------------------

    def on_retained(self, topic: str, payload: bytes) -> None:
        with self._lock:
            if payload:
                self._on_broker[topic] = payload
            else:
                self._on_broker.pop(topic, None)

    def on_connect(self) -> None:
        """A broker that restarted without persistence has lost the retained topics: publish
        everything again (what survived is learned back from the retained messages)."""
        with self._lock:
            self._on_broker.clear()

    # -- the poll loop ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Unavailable as e:
                self._ratelog.warning("unavailable", "cannot follow the coordinator: %s", e)
            except Exception:  # a surprise in an answer must not stop the downlink for good
                log.exception("failed to follow the coordinator")
            if self.link.connected.is_set():
                self.sync()
            await asyncio.sleep(self.poll_interval)

    async def refresh(self) -> None:
        """Fetch what the topics should hold, when the coordinator's state changed."""
        status = await self.api.status(self._report())
        self.status = status
        model = status.get("latest_model") or {}
        model_key = (model.get("round_id"), model.get("created")) if model else None
        # phase_started too: a coordinator that started afresh is in round 1 again
        seen = (status.get("round_id"), status.get("phase"), status.get("phase_started"), model_key)
        if seen == self._seen:
            return
        wanted: dict[str, bytes] = {}
        params = await self.api.get("/params")
        if params is not None:
            wanted[self.topics.params] = params
        if status.get("phase") in ("update", "sum2"):
            sums = await self.api.get("/sums")
            if sums is not None:
                wanted[self.topics.sums] = sums
                if status.get("phase") == "sum2":
                    wanted.update(await self._seed_columns(sums))
        if model_key is not None:
            if model_key != self._model_key:
                body = await self.api.get("/model?format=f32")
                if body is not None:
                    self._model, self._model_key = body, model_key
            if self._model_key is not None:
                wanted[self.topics.model] = self._model
        if params is not None and params[_ROUND_PK] != self.round_pk:
            log.info("round %s: round key %s", status.get("round_id"), params[_ROUND_PK][:4].hex())
            self.round_pk = params[_ROUND_PK]
        if seen[:2] != (self._seen or (None, None))[:2]:
            log.info("round %s: %s phase", status.get("round_id"), status.get("phase"))
        self._wanted, self._seen = wanted, seen

    def _report(self) -> dict[str, str]:
        queued = self.metrics.registry.get_sample_value("pet_gateway_queue_messages") or 0
        return {"X-Pet-Gateway": self.link.settings.gateway.id,
                "X-Pet-Gateway-Mqtt": "connected" if self.link.connected.is_set() else "disconnected",
                "X-Pet-Gateway-Queue": str(int(queued))}

    async def _seed_columns(self, sums: bytes) -> dict[str, bytes]:
        try:
            sum_pks = list(SumDict.from_bytes(sums))
        except DecodeError as e:
            raise Unavailable(f"GET /sums: {e}") from None
        columns = await asyncio.gather(*(self.api.seeds(pk) for pk in sum_pks))
        return {self.topics.seeds(pk.hex()): column for pk, column in zip(sum_pks, columns)
                if column is not None}

    def sync(self) -> None:
        """Publish the difference between what the topics should hold and what they hold."""
        wanted = self._wanted
        with self._lock:
            held = dict(self._on_broker)
        # new parameters: whatever round state the broker holds is not theirs
        new_round = (self.topics.params in wanted
                     and held.get(self.topics.params) != wanted[self.topics.params])
        # the sum dict is cleared with new parameters even when the broker was not seen to hold
        # one: just after a (re)connection the gateway has not learned yet what the broker kept,
        # and a device that sees the new parameters next to the last round's sum dict uses it
        for topic in held.keys() | ({self.topics.sums} if new_round else set()):
            round_state = topic == self.topics.sums or topic.startswith(self.topics.seeds_prefix)
            if round_state and (topic not in wanted or new_round):
                self._publish(topic, b"", "clear")
        order = [self.topics.model, self.topics.params, self.topics.sums]
        order += sorted(t for t in wanted if t.startswith(self.topics.seeds_prefix))
        for topic in order:
            if topic in wanted:
                with self._lock:
                    same = self._on_broker.get(topic) == wanted[topic]
                if not same:
                    self._publish(topic, wanted[topic], _kind(self.topics, topic))

    def _publish(self, topic: str, payload: bytes, kind: str) -> None:
        self.link.publish(topic, payload, retain=True)
        self.metrics.downlink.labels(kind).inc()
        with self._lock:
            if payload:
                self._on_broker[topic] = payload
            else:
                self._on_broker.pop(topic, None)


def _kind(topics, topic: str) -> str:
    if topic.startswith(topics.seeds_prefix):
        return "seeds"
    return {topics.params: "params", topics.sums: "sums", topics.model: "model"}[topic]
