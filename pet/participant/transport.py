"""How a participant reaches the coordinator: the REST routes, over HTTP or anything else.

A transport fetches the round's public data and delivers sealed messages. It
answers `None` while a resource is not available yet (HTTP 204) and raises
`TransportError` when the coordinator cannot be reached, so that the caller
retries later.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from pet.errors import DecodeError
from pet.verdict import ACCEPTED, Verdict
from pet.wire import Model, RoundParameters, SumDict, UpdateSeedDict


class TransportError(Exception):
    """The coordinator could not be reached or answered something unusable."""


class Transport(Protocol):
    def params(self) -> RoundParameters | None: ...
    def sums(self) -> SumDict | None: ...
    def seeds(self, sum_pk: bytes) -> UpdateSeedDict | None: ...
    def model(self) -> Model | None: ...
    def send(self, sealed: bytes) -> Verdict: ...


class HttpTransport:
    """XayNet's REST API over HTTP(S), with our verdicts on POST /message."""

    def __init__(self, url: str, timeout: float = 10.0, token: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token

    def _request(self, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET")
        if body is not None:
            req.add_header("Content-Type", "application/octet-stream")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise TransportError(f"{self.url}{path}: {getattr(e, 'reason', e)}") from None

    def _get(self, path: str, decode):
        status, body = self._request(path)
        if status == 204:
            return None
        if status != 200:
            raise TransportError(f"GET {path}: HTTP {status}")
        try:
            return decode(body)
        except DecodeError as e:
            raise TransportError(f"GET {path}: {e}") from None

    def params(self) -> RoundParameters | None:
        return self._get("/params", RoundParameters.from_bytes)

    def sums(self) -> SumDict | None:
        return self._get("/sums", SumDict.from_bytes)

    def seeds(self, sum_pk: bytes) -> UpdateSeedDict | None:
        pk = urllib.parse.quote(base64.b64encode(sum_pk).decode(), safe="")
        return self._get(f"/seeds?pk={pk}", UpdateSeedDict.from_bytes)

    def model(self) -> Model | None:
        return self._get("/model", Model.from_bytes)

    def send(self, sealed: bytes) -> Verdict:
        status, body = self._request("/message", bytes(sealed))
        if 200 <= status < 300:
            return ACCEPTED
        if 400 <= status < 500:
            return Verdict.from_json(body)
        raise TransportError(f"POST /message: HTTP {status}")
