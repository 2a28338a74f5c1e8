"""The gateway put together: MQTT link, queue, intake, relay, downlink, health and metrics.

  GET /health   200 "ok" with a JSON body while connected to the broker, else 503
  GET /metrics  Prometheus text format
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.api import CoordinatorApi
from gateway.downlink import Downlink
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.queue import UplinkQueue
from gateway.relay import Intake, Relay
from pet.config import split_bind

log = logging.getLogger("gateway")


class Gateway:
    def __init__(self, settings):
        self.settings = settings
        s = settings
        self.metrics = Metrics()
        self.queue = UplinkQueue(s.queue.path, s.queue.max_messages, s.queue.max_bytes)
        self.api = CoordinatorApi(s.coordinator.url, s.coordinator.token, s.coordinator.timeout,
                                  self.metrics)
        self.link = MqttLink(s, self.metrics)
        self.downlink = Downlink(self.api, self.link, self.metrics, s.coordinator.poll_interval)
        round_pk = lambda: self.downlink.round_pk  # noqa: E731  (uplinks are labelled with it)
        self.relay = Relay(self.queue, self.api, self.link, self.metrics, s.coordinator.concurrency,
                           s.queue.retry_min, s.queue.retry_max, round_pk)
        self.intake = Intake(self.queue, self.link, self.metrics, s.queue.max_message_bytes, round_pk,
                             self.relay.wake)
        self.link.on_uplink = self.intake.submit
        self.link.on_retained = self.downlink.on_retained
        self.link.on_connect = self.downlink.on_connect
        self.metrics.queued.set(self.queue.count)
        self.metrics.queued_bytes.set(self.queue.bytes)
        self.http_port: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        await self.api.start()
        self._tasks = [asyncio.create_task(self.relay.run(), name="relay"),
                       asyncio.create_task(self.downlink.run(), name="downlink")]
        await asyncio.sleep(0)  # let the relay note its loop before the first uplink arrives
        self.intake.start()
        self.link.start()
        if self.settings.http.bind:
            await self._start_http()
        log.info("gateway %s: broker %s:%d, prefix %r, coordinator %s, %d uplinks queued in %s",
                 self.settings.gateway.id, self.settings.mqtt.host, self.settings.mqtt.port,
                 self.settings.mqtt.prefix, self.settings.coordinator.url, self.queue.count,
                 self.queue.path)

    async def stop(self) -> None:
        """Stop taking uplinks first (the broker keeps what was not acknowledged), then the rest."""
        await asyncio.to_thread(self.link.stop)
        await asyncio.to_thread(self.intake.stop)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.api.close()
        self.queue.close()

    # -- health and metrics -----------------------------------------------------------------

    def health(self) -> dict:
        status = self.downlink.status or {}
        return {"gateway": self.settings.gateway.id, "mqtt_connected": self.link.connected.is_set(),
                "coordinator_up": self.api.up,
                "round_id": status.get("round_id"), "phase": status.get("phase"),
                "queued": self.queue.count, "queued_bytes": self.queue.bytes}

    async def _start_http(self) -> None:
        async def health(request):
            body = self.health()
            return web.json_response(body, status=200 if body["mqtt_connected"] else 503)

        async def metrics(request):
            return web.Response(body=self.metrics.render(),
                                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

        app = web.Application()
        app.add_routes([web.get("/health", health), web.get("/healthz", health),
                        web.get("/metrics", metrics)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = split_bind(self.settings.http.bind)
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d", host, self.http_port)


async def serve(settings, stop: asyncio.Event | None = None) -> None:
    """Run until stop is set, or SIGINT / SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(settings)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await gateway.stop()


def run(settings) -> None:
    asyncio.run(serve(settings))
