"""The coordinator's HTTP API: XayNet's REST routes, our verdicts, status and metrics.

  POST /message            one sealed message -> 200, or 4xx with a JSON verdict
  GET  /params             RoundParameters (bincode)
  GET  /sums               SumDict (204 outside Update and Sum2)
  GET  /seeds?pk=<base64>  the caller's seed column (204 outside Sum2 or for an unknown pk)
  GET  /model[?format=f32] the latest global model (204 before the first one)
  GET  /status             the round in JSON
  GET  /metrics            Prometheus text format
  GET  /health             "ok" (also /healthz)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from aiohttp import web

from coordinator.rounds import Coordinator
from coordinator.store import Store, open_store
from pet.verdict import rejected

log = logging.getLogger("coordinator.server")

OCTET = "application/octet-stream"
COORDINATOR = web.AppKey("coordinator", Coordinator)


def _bytes_or_204(data: bytes | None) -> web.Response:
    if data is None:
        return web.Response(status=204)
    return web.Response(body=data, content_type=OCTET)


def _verdict_response(verdict) -> web.Response:
    if verdict.accepted:
        return web.Response(status=200)
    return web.Response(status=verdict.http_status, body=verdict.to_json(), content_type="application/json")


async def post_message(request: web.Request) -> web.Response:
    coordinator = request.app[COORDINATOR]
    api = coordinator.settings.api
    verdict = None
    if api.token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api.token}".encode()):
            verdict = rejected("unauthorized", "send Authorization: Bearer <token>")
    if verdict is None and (request.content_length or 0) > api.max_body_bytes:
        verdict = rejected("too_large", f"{request.content_length} bytes, at most {api.max_body_bytes}")
    if verdict is None:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            verdict = rejected("too_large", f"more than {api.max_body_bytes} bytes")
        else:
            return _verdict_response(await coordinator.handle(body))
    coordinator.record(verdict)
    return _verdict_response(verdict)


async def get_params(request: web.Request) -> web.Response:
    return _bytes_or_204(request.app[COORDINATOR].params_bytes())


async def get_sums(request: web.Request) -> web.Response:
    return _bytes_or_204(request.app[COORDINATOR].sums_bytes())


async def get_seeds(request: web.Request) -> web.Response:
    raw = request.query.get("pk", "")
    try:
        pk = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        pk = b""
    if len(pk) != 32:
        return web.Response(status=400, text="pk must be the base64 of a 32-byte public key\n")
    return _bytes_or_204(await request.app[COORDINATOR].seeds_bytes(pk))


async def get_model(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "bincode")
    if fmt not in ("bincode", "f32"):
        return web.Response(status=400, text="format is bincode (default) or f32\n")
    return _bytes_or_204(await request.app[COORDINATOR].model_bytes(fmt))


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[COORDINATOR].status())


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[COORDINATOR].metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def get_health(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(coordinator: Coordinator) -> web.Application:
    """The aiohttp application around a coordinator; starting the app starts the rounds."""
    app = web.Application(client_max_size=coordinator.settings.api.max_body_bytes)
    app[COORDINATOR] = coordinator
    app.add_routes([
        web.post("/message", post_message), web.get("/params", get_params), web.get("/sums", get_sums),
        web.get("/seeds", get_seeds), web.get("/model", get_model), web.get("/status", get_status),
        web.get("/metrics", get_metrics), web.get("/health", get_health), web.get("/healthz", get_health),
    ])

    async def lifecycle(app):
        await coordinator.start()
        yield
        await coordinator.stop()
    app.cleanup_ctx.append(lifecycle)
    return app


def store_for(settings) -> Store:
    s = settings.store
    if s.kind == "redis":
        return open_store("redis", s.url, prefix=s.prefix)
    return open_store("sqlite", s.path)


def build(settings, store: Store | None = None, **options) -> web.Application:
    """The app for these settings; options go to Coordinator (evaluate=, keygen=)."""
    store = store or store_for(settings)
    return make_app(Coordinator(settings, store, **options))


def run(settings) -> None:
    """Serve until SIGINT / SIGTERM."""
    api = settings.api
    app = build(settings)
    log.info("coordinator listening on http://%s:%d (store: %s)", api.host, api.port, settings.store.kind)
    web.run_app(app, host=api.host, port=api.port, print=None, access_log=None, handle_signals=True)


__all__ = ["make_app", "build", "run"]
