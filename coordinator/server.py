"""The coordinator's HTTP API: XayNet's REST routes, our verdicts, status and metrics.

  POST /message            one sealed message -> 200, or 4xx with a JSON verdict
  POST /messages           several (u32 BE length | message, repeated) -> 200, their verdicts
  GET  /params             RoundParameters (bincode)
  GET  /sums               SumDict (204 outside Update and Sum2)
  GET  /seeds?pk=<base64>  the caller's seed column (204 outside Sum2 or for an unknown pk)
  GET  /model[?format=f32] the latest global model (204 before the first one)
  GET  /status             the round in JSON (a gateway identifies itself with X-Pet-Gateway)
  GET  /rounds             past rounds in JSON: participants, duration, evaluation figures
  GET  /gateways           the gateways that read /status lately, in JSON
  GET  /rejections         the latest rejected messages, in JSON
  GET  /events             server-sent events: status, rounds, gateways, rejections as they change
  GET  /                   the dashboard (static files under /dashboard/)
  GET  /metrics            Prometheus text format
  GET  /health             "ok" (also /healthz)

A worker process (make_worker_app) serves POST /message, POST /messages and
GET /health itself and passes every other request on to its leader.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import re
import signal
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from coordinator.leader import Leader, WorkerProcesses
from coordinator.rounds import Coordinator
from coordinator.settings import load_hook
from coordinator.store import Store, open_store
from coordinator.worker import Worker, check_setup
from pet.verdict import Verdict, rejected

log = logging.getLogger("coordinator.server")

OCTET = "application/octet-stream"
MAX_BATCH = 1000  # messages in one POST /messages at most
COORDINATOR = web.AppKey("coordinator", Coordinator)
JUDGE = web.AppKey("judge", object)  # what judges POST /message(s): the Coordinator, or a Worker
CLOSING = web.AppKey("closing", asyncio.Event)  # set on shutdown: event streams end
PRIVATE_PORT = web.AppKey("private_port", int)  # the leader's port for its workers, if any
WORKER = web.AppKey("worker", Worker)
LEADER_CLIENT = web.AppKey("leader_client", aiohttp.ClientSession)
FORWARDED_FOR = "X-Pet-Forwarded-For"  # the client's address, as a worker passes a request on
# headers of one connection, not of the request: not passed on
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}

DASHBOARD = Path(__file__).resolve().parent / "dashboard"
# The page loads nothing but its own files and talks to nothing but this server.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
EVENT_INTERVAL = 0.5  # seconds between two looks for changes, per event stream
FEEDS = {  # what GET /events streams, each event named after its route
    "status": lambda c: c.status(),
    "rounds": lambda c: c.rounds(),
    "gateways": lambda c: c.gateways.list(),
    "rejections": lambda c: c.rejections(),
}
_GATEWAY_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
_QUEUED = re.compile(r"[0-9]{1,18}")


def _bytes_or_204(data: bytes | None) -> web.Response:
    if data is None:
        return web.Response(status=204)
    return web.Response(body=data, content_type=OCTET)


def _verdict_response(verdict) -> web.Response:
    if verdict.accepted:
        return web.Response(status=200)
    return web.Response(status=verdict.http_status, body=verdict.to_json(), content_type="application/json")


async def _read_body(request: web.Request) -> tuple[bytes | None, Verdict | None]:
    """(body, None), or (None, the verdict) for a wrong token or a body above api.max_body_bytes."""
    api = request.app[JUDGE].settings.api
    if api.token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api.token}".encode()):
            return None, rejected("unauthorized", "send Authorization: Bearer <token>")
    if (request.content_length or 0) > api.max_body_bytes:
        return None, rejected("too_large", f"{request.content_length} bytes, at most {api.max_body_bytes}")
    try:
        return await request.read(), None
    except web.HTTPRequestEntityTooLarge:
        return None, rejected("too_large", f"more than {api.max_body_bytes} bytes")


async def post_message(request: web.Request) -> web.Response:
    coordinator = request.app[JUDGE]
    body, verdict = await _read_body(request)
    if verdict is None:
        return _verdict_response(await coordinator.handle(body))
    coordinator.record(verdict)
    return _verdict_response(verdict)


def split_frames(body: bytes) -> list[bytes]:
    """The messages of a POST /messages body: u32 BE length | message, repeated."""
    messages, at = [], 0
    while at < len(body):
        if len(messages) == MAX_BATCH:
            raise ValueError(f"more than {MAX_BATCH} messages")
        if len(body) - at < 4:
            raise ValueError(f"message {len(messages) + 1}: {len(body) - at} bytes left, "
                             f"its length takes 4")
        length = int.from_bytes(body[at:at + 4], "big")
        if length > len(body) - at - 4:
            raise ValueError(f"message {len(messages) + 1}: {length} bytes announced, "
                             f"{len(body) - at - 4} left")
        messages.append(body[at + 4:at + 4 + length])
        at += 4 + length
    return messages


async def post_messages(request: web.Request) -> web.Response:
    """Several messages in one request, for a gateway with many uplinks to forward: each is
    judged as by POST /message, all at once (so that updates share store transactions),
    and the answer is the list of their verdicts, in order."""
    coordinator = request.app[JUDGE]
    body, verdict = await _read_body(request)
    if verdict is None:
        try:
            messages = split_frames(body)
        except ValueError as e:
            verdict = rejected("malformed", str(e))
    if verdict is not None:
        coordinator.record(verdict)
        return _verdict_response(verdict)
    verdicts = await asyncio.gather(*(coordinator.handle(m) for m in messages))
    return web.Response(body=b"[" + b", ".join(v.to_json() for v in verdicts) + b"]",
                        content_type="application/json")


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


def gateway_report(headers) -> dict | None:
    """What a gateway says of itself in its GET /status request; None from anyone else.
    ValueError names a header that is not as docs/dashboard.md describes it."""
    gateway_id = headers.get("X-Pet-Gateway")
    if gateway_id is None:
        return None
    if not _GATEWAY_ID.fullmatch(gateway_id):
        raise ValueError("X-Pet-Gateway must be the gateway's id: 1 to 64 printable ASCII "
                         "characters, no spaces")
    mqtt = headers.get("X-Pet-Gateway-Mqtt")
    if mqtt not in (None, "connected", "disconnected"):
        raise ValueError(f"X-Pet-Gateway-Mqtt must be connected or disconnected, got {mqtt[:40]!r}")
    queued = headers.get("X-Pet-Gateway-Queue")
    if queued is not None and not _QUEUED.fullmatch(queued):
        raise ValueError(f"X-Pet-Gateway-Queue must be the number of queued uplinks, got {queued[:40]!r}")
    return {"gateway_id": gateway_id, "mqtt": mqtt, "queued": None if queued is None else int(queued)}


def _client_address(request: web.Request) -> str | None:
    """The client's address; for a request a worker passed on, the one the worker names."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if FORWARDED_FOR in request.headers and sockname and sockname[1] == request.app.get(PRIVATE_PORT):
        return request.headers[FORWARDED_FOR]
    return request.remote


async def get_status(request: web.Request) -> web.Response:
    coordinator = request.app[COORDINATOR]
    try:
        report = gateway_report(request.headers)
    except ValueError as e:
        return web.Response(status=400, text=f"{e}\n")
    if report is not None:
        coordinator.gateways.heard(**report, address=_client_address(request), when=coordinator.clock())
    return web.json_response(coordinator.status())


async def get_rounds(request: web.Request) -> web.Response:
    return web.json_response(request.app[COORDINATOR].rounds())


async def get_gateways(request: web.Request) -> web.Response:
    return web.json_response(request.app[COORDINATOR].gateways.list())


async def get_rejections(request: web.Request) -> web.Response:
    return web.json_response(request.app[COORDINATOR].rejections())


async def get_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for the dashboard: each feed, named after its route, whenever
    its JSON changed (status changes every time: it holds the coordinator's clock)."""
    coordinator, closing = request.app[COORDINATOR], request.app[CLOSING]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent: dict[str, str] = {}
    try:
        await response.write(b"retry: 2000\n\n")  # reconnect after 2 s when the stream breaks
        while not closing.is_set():
            for name, feed in FEEDS.items():
                data = json.dumps(feed(coordinator), separators=(",", ":"))
                if sent.get(name) != data:
                    await response.write(f"event: {name}\ndata: {data}\n\n".encode())
                    sent[name] = data
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), EVENT_INTERVAL)
    except ConnectionResetError:  # the page went away
        pass
    return response


async def get_dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DASHBOARD / "index.html", headers=DASHBOARD_HEADERS)


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[COORDINATOR].metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def get_health(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(coordinator: Coordinator) -> web.Application:
    """The aiohttp application around a coordinator; starting the app starts the rounds."""
    app = web.Application(client_max_size=coordinator.settings.api.max_body_bytes)
    app[COORDINATOR] = app[JUDGE] = coordinator
    app[CLOSING] = asyncio.Event()
    app.add_routes([
        web.post("/message", post_message), web.post("/messages", post_messages),
        web.get("/params", get_params), web.get("/sums", get_sums),
        web.get("/seeds", get_seeds), web.get("/model", get_model), web.get("/status", get_status),
        web.get("/metrics", get_metrics), web.get("/health", get_health), web.get("/healthz", get_health),
        web.get("/rounds", get_rounds), web.get("/gateways", get_gateways),
        web.get("/rejections", get_rejections), web.get("/events", get_events),
        web.get("/", get_dashboard), web.static("/dashboard", DASHBOARD),
    ])

    async def end_event_streams(app):
        app[CLOSING].set()
    app.on_shutdown.append(end_event_streams)

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


def build(settings, store: Store | None = None, leader_url: str | None = None, **options) -> web.Application:
    """The app for these settings; options go to Coordinator (evaluate=, keygen=). Without
    evaluate=, the function model.evaluate names (if any) scores the global models. A store
    that processes can share (Redis) gets a Leader, whose workers reach it at leader_url."""
    if options.get("evaluate") is None and settings.model.evaluate:
        options["evaluate"] = load_hook(settings.model.evaluate)
    store = store or store_for(settings)
    if store.shared:
        return make_app(Leader(settings, store, leader_url=leader_url, **options))
    return make_app(Coordinator(settings, store, **options))


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def run(settings, worker_command: list[str] | None = None) -> None:
    """Serve until SIGINT / SIGTERM. On Redis the leader also listens on a loopback port of
    its own, where its workers pass on the routes they do not serve; with api.processes
    above 1 it starts api.processes - 1 worker processes (worker_command) that share
    api.bind with it (SO_REUSEPORT: the kernel spreads the connections)."""
    api = settings.api
    private = _loopback_socket() if settings.store.kind == "redis" else None
    leader_url = f"http://127.0.0.1:{private.getsockname()[1]}" if private else None
    app = build(settings, leader_url=leader_url)
    if private:
        app[PRIVATE_PORT] = private.getsockname()[1]
    if api.processes > 1:
        app.cleanup_ctx.append(WorkerProcesses(worker_command, api.processes - 1).lifecycle)
    log.info("coordinator listening on http://%s:%d (store: %s%s)", api.host, api.port, settings.store.kind,
             f", {api.processes} processes" if api.processes > 1 else "")
    web.run_app(app, host=api.host, port=api.port, sock=private, reuse_port=api.processes > 1 or None,
                print=None, access_log=None, handle_signals=True)


# -- a worker process -----------------------------------------------------------------------------

async def worker_post(request: web.Request) -> web.Response:
    worker = request.app[WORKER]
    if worker.refusal:
        return web.Response(status=503, text=f"this worker takes no messages: {worker.refusal}\n")
    return await (post_message if request.path == "/message" else post_messages)(request)


async def forward(request: web.Request) -> web.StreamResponse:
    """Any other route is the leader's: the request goes on to it, its answer comes back."""
    url = request.app[WORKER].leader_url
    if not url:
        return web.Response(status=502, text="this worker does not know its leader's address\n")
    headers = {k: v for k, v in request.headers.items()
               if k.lower() not in HOP_BY_HOP and k.lower() != FORWARDED_FOR.lower()}
    headers[FORWARDED_FOR] = request.remote or ""
    body = await request.read()
    response = None
    try:
        async with request.app[LEADER_CLIENT].request(request.method, url + request.path_qs, headers=headers,
                                                      data=body or None, allow_redirects=False) as answer:
            response = web.StreamResponse(status=answer.status, headers={
                k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for data in answer.content.iter_any():
                await response.write(data)
    except (aiohttp.ClientError, ConnectionResetError) as e:
        if response is None:
            return web.Response(status=502, text=f"the leader at {url} cannot be reached: {e}\n")
    return response


def make_worker_app(worker: Worker, leader_pid: int | None = None) -> web.Application:
    """The HTTP side of a worker process. With leader_pid, it ends when that process does."""
    app = web.Application(client_max_size=worker.settings.api.max_body_bytes)
    app[WORKER] = app[JUDGE] = worker
    app.add_routes([web.post("/message", worker_post), web.post("/messages", worker_post),
                    web.get("/health", get_health), web.get("/healthz", get_health),
                    web.route("*", "/{tail:.*}", forward)])

    async def lifecycle(app):
        app[LEADER_CLIENT] = aiohttp.ClientSession(auto_decompress=False,
                                                   timeout=aiohttp.ClientTimeout(total=None, connect=5))
        await worker.start()
        watch = asyncio.create_task(_end_with(leader_pid)) if leader_pid else None
        yield
        if watch:
            watch.cancel()
        await worker.stop()
        await app[LEADER_CLIENT].close()
    app.cleanup_ctx.append(lifecycle)
    return app


async def _end_with(leader_pid: int) -> None:
    """A worker started by a leader ends with it (it would be the child of another then)."""
    while os.getppid() == leader_pid:
        await asyncio.sleep(1)
    log.warning("the leader (pid %d) is gone; stopping", leader_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def run_worker(settings, leader_pid: int | None = None) -> None:
    """Serve as a worker of the leader whose setup the store holds, until SIGINT / SIGTERM.
    Raises StoreError, or NoLeader when there is no leader or the settings differ from its."""
    api = settings.api
    store = store_for(settings)
    try:
        setup = check_setup(settings, store)
    except BaseException:
        store.close()
        raise
    worker = Worker(settings, store)
    worker.leader_url = setup.get("leader_url")
    log.info("worker %s listening on http://%s:%d for the leader at %s", worker.name, api.host, api.port,
             worker.leader_url)
    web.run_app(make_worker_app(worker, leader_pid), host=api.host, port=api.port, reuse_port=True,
                print=None, access_log=None, handle_signals=True)


__all__ = ["make_app", "build", "run", "make_worker_app", "run_worker"]
