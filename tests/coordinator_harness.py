"""A real coordinator on a loopback port, run in a background thread, and a fleet driver."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from aiohttp import web

from coordinator.server import COORDINATOR, build
from coordinator.settings import load_settings
from pet.crypto import EncryptKeyPair, SigningKeyPair, sha256
from pet.participant import HttpTransport, Participant, Settings


def fast_settings(**overrides):
    """Settings for quick test rounds; overrides as {"pet.sum.prob": 0.3, ...}."""
    env = {
        "PET__PET__SUM__PROB": "0.3", "PET__PET__UPDATE__PROB": "0.9",
        # minimum phase times long enough that a busy machine gets every participant in
        "PET__PET__SUM__TIME__MIN": "0.5", "PET__PET__SUM__TIME__MAX": "20",
        "PET__PET__UPDATE__TIME__MIN": "1.0", "PET__PET__UPDATE__TIME__MAX": "20",
        "PET__PET__SUM2__TIME__MIN": "0.3", "PET__PET__SUM2__TIME__MAX": "20",
        "PET__MODEL__LENGTH": "40", "PET__STORE__PATH": ":memory:",
    }
    for key, value in overrides.items():
        env["PET__" + key.replace(".", "__").upper()] = str(value)
    return load_settings(None, env=env)


class LoopThread:
    """An asyncio event loop in a daemon thread; `call` runs a coroutine on it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _cleanup(self) -> None:
        """What stop() runs on the loop before it ends."""

    def stop(self):
        self.call(self._cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RunningCoordinator(LoopThread):
    """Serve a coordinator in its own event loop thread; `url` is its base URL."""

    def __init__(self, settings, store=None, evaluate=None, key_label=b"test"):
        self.settings = settings
        # fixed round keys: sortition, and so each test's roles, are the same on every run
        keygen = (lambda round_id: EncryptKeyPair.from_seed(sha256(key_label + round_id.to_bytes(8, "little"))))
        self.app = build(settings, store=store, evaluate=evaluate, keygen=keygen)
        self.coordinator = self.app[COORDINATOR]
        super().__init__()
        self.url = self.call(self._serve())

    async def _serve(self) -> str:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def _cleanup(self) -> None:
        await self.runner.cleanup()

    def status(self) -> dict:
        return self.coordinator.status()


class App:
    """A participant's app with a fixed random model per round; remembers what it sent."""

    def __init__(self, seed: int, scalar: float = 1.0):
        self.rs = np.random.default_rng(seed)
        self.scalar = scalar
        self.given: dict[bytes, np.ndarray] = {}   # round seed -> weights handed over
        self.ready = True                          # False: the model is "still training"

    def train(self, params, global_model):
        if not self.ready:
            return None
        w = self.rs.uniform(-1, 1, params.model_length).astype(np.float32)
        self.given[params.seed] = w
        return w, self.scalar


def make_fleet(url: str, count: int, settings: Settings | None = None, first_key: int = 1):
    fleet = []
    for i in range(count):
        app = App(i, scalar=1.0 / (1 + i % 3))
        keys = SigningKeyPair.from_seed((first_key + i).to_bytes(32, "little"))
        fleet.append((Participant(HttpTransport(url), app.train, keys=keys, settings=settings), app))
    return fleet


def drive(fleet, until, timeout: float = 30.0, pause: float = 0.02) -> None:
    """Step every participant round-robin until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError("timed out driving the fleet")
        progress = [p.step() for p, _ in fleet]
        if not any(progress):
            time.sleep(pause)
