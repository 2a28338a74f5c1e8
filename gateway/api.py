"""The coordinator's HTTP API as the gateway uses it (docs/coordinator.md section 5).

Every answer is sorted into two kinds: a verdict on the message (final: the
uplink leaves the queue), or `Unavailable` (the coordinator could not judge it:
no connection, a timeout, 5xx, or an answer that is not a verdict; the uplink
stays queued and is sent again later).

Several uplinks go in one POST /messages while the coordinator offers it (ours:
a request costs the gateway more than relaying the uplink in it); a coordinator
without it (XayNet's) gets one POST /message each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.parse

import aiohttp

from gateway.metrics import Metrics
from pet.verdict import ACCEPTED, Verdict

log = logging.getLogger("gateway.api")

RETRY_BATCH = 600.0  # seconds before a coordinator without POST /messages is asked again


class Unavailable(Exception):
    """The coordinator did not give a usable answer; try again later."""


class CoordinatorApi:
    def __init__(self, url: str, token: str, timeout: float, metrics: Metrics):
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self.up: bool | None = None  # did the last request get an answer? None: no request yet
        self._no_batch_until = 0.0   # monotonic time; before it, POST /message only

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_message(self, payload: bytes) -> Verdict:
        """The coordinator's verdict on one sealed message or chunk."""
        started = time.monotonic()
        status, body = await self._request("POST", "/message", payload)
        self.metrics.latency.observe(time.monotonic() - started)
        if 200 <= status < 300:
            return ACCEPTED
        if 400 <= status < 500 and status != 401:
            verdict = _verdict(body)
            if verdict is not None:
                return verdict
        # 401: the gateway's own token is wrong, not the device's fault; anything else is not
        # a verdict (a proxy's error page, a wrong URL): keep the message and retry.
        self.metrics.coordinator_errors.labels("/message").inc()
        raise Unavailable(f"POST /message: HTTP {status} {body[:200].decode(errors='replace')!r}")

    @property
    def batch(self) -> bool:
        """Is POST /messages worth trying?"""
        return time.monotonic() >= self._no_batch_until

    async def post_messages(self, payloads: list[bytes]) -> list[Verdict]:
        """The verdicts on several messages, in order: in one POST /messages, or one POST
        /message each when the coordinator does not take them together (a coordinator
        without the route, a body too large for it)."""
        if len(payloads) > 1 and self.batch:
            body = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
            started = time.monotonic()
            status, answer = await self._request("POST", "/messages", body)
            self.metrics.latency.observe(time.monotonic() - started)
            if status == 200:
                verdicts = _verdicts(answer, len(payloads))
                if verdicts is not None:
                    return verdicts
            if status in (200, 401):  # a 200 that is no list of verdicts; the gateway's own token
                self.metrics.coordinator_errors.labels("/messages").inc()
                raise Unavailable(f"POST /messages: HTTP {status} {answer[:200].decode(errors='replace')!r}")
            if status in (404, 405):
                log.info("the coordinator has no POST /messages: one POST /message per uplink")
                self._no_batch_until = time.monotonic() + RETRY_BATCH
        return list(await asyncio.gather(*(self.post_message(p) for p in payloads)))

    async def get(self, path: str, headers: dict[str, str] | None = None) -> bytes | None:
        """The body of a GET, None for 204 (not available in this phase)."""
        status, body = await self._request("GET", path, headers=headers)
        if status == 204:
            return None
        if status != 200:
            self.metrics.coordinator_errors.labels(path.split("?")[0]).inc()
            raise Unavailable(f"GET {path}: HTTP {status}")
        return body

    async def status(self, report: dict[str, str] | None = None) -> dict:
        """GET /status; report: the X-Pet-Gateway headers that tell the coordinator who asks."""
        body = await self.get("/status", report)
        try:
            return json.loads(body or b"")
        except ValueError:
            raise Unavailable("GET /status: not JSON") from None

    async def seeds(self, sum_pk: bytes) -> bytes | None:
        pk = urllib.parse.quote(base64.b64encode(sum_pk).decode(), safe="")
        return await self.get(f"/seeds?pk={pk}")

    async def _request(self, method: str, path: str, body: bytes | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if body is not None:
            headers = {**(headers or {}), "Content-Type": "application/octet-stream"}
        try:
            async with self._session.request(method, self.url + path, data=body, headers=headers) as r:
                data = await r.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._set_up(False)
            self.metrics.coordinator_errors.labels(path.split("?")[0]).inc()
            raise Unavailable(f"{method} {path}: {type(e).__name__}: {e}") from None
        self._set_up(r.status < 500)
        if r.status >= 500:
            self.metrics.coordinator_errors.labels(path.split("?")[0]).inc()
            raise Unavailable(f"{method} {path}: HTTP {r.status}")
        return r.status, data

    def _set_up(self, up: bool) -> None:
        self.up = up
        self.metrics.coordinator_up.set(int(up))


def _as_verdict(d: object) -> Verdict | None:
    """A decoded verdict JSON object, or None when d is not one."""
    if isinstance(d, dict) and d.get("accepted") is True:
        return ACCEPTED
    if isinstance(d, dict) and d.get("accepted") is False and isinstance(d.get("reason"), str):
        return Verdict(False, d["reason"], str(d.get("detail", "")))
    return None


def _verdict(body: bytes) -> Verdict | None:
    """A rejection's JSON body, or None when the body is not one."""
    try:
        verdict = _as_verdict(json.loads(body))
    except ValueError:
        return None
    return verdict if verdict is not None and not verdict.accepted else None


def _verdicts(body: bytes, count: int) -> list[Verdict] | None:
    """The JSON list of `count` verdicts of POST /messages, or None when the body is not one."""
    try:
        items = json.loads(body)
    except ValueError:
        return None
    if not isinstance(items, list) or len(items) != count:
        return None
    verdicts = [_as_verdict(d) for d in items]
    return None if any(v is None for v in verdicts) else verdicts
