"""A site of real processes for the fault tests, and a fleet that a test steers phase by phase.

The site: mosquitto with persistence (tests.conftest.Mosquitto), the coordinator
(`python -m coordinator`, tests.test_coordinator_kill.CoordinatorProcess) on SQLite or Redis,
and the gateway (`python -m gateway`, tests.test_gateway.Service), each a process of its own
that `Site.fault` can SIGKILL (and start again on the same port and files) or SIGSTOP for
longer than the keepalives. The devices are reference participants over MQTT
(tests.test_gateway.make_devices), each stepping in a thread of its own.

The fleet is gated: in a round, a participant acts in Sum, Update or Sum2 only once the test
has released it for that phase. So a test decides who sends what, and when; a participant
that is never released is a dropout. Phase counts are set so that every phase needs every
message it is given (SUMS, UPDATES): a message lost fails the round, and an update counted twice
changes the global model away from the weighted average of the models handed over.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pet.participant import Phase
from pet.participant.mqtt import DeviceClient
from pet.sortition import Task, select_task
from pet.wire import RoundParameters
from tests.conftest import _free_port
from tests.test_coordinator_kill import CoordinatorProcess
from tests.test_gateway import Service, gateway_env, make_devices, metric, wait_for

DEVICES = 16
SUMS, UPDATES = 2, 3  # what a round needs (Sum and Sum2 count.min, Update count.min)
# SIGSTOP, seconds: longer than the gateway's request timeout (5 s) for the coordinator; than
# its MQTT keepalive (5 s; paho gives up on a silent broker after 7.5 s) for the broker; and
# for the gateway, long enough that mosquitto gives up on it (7.5 s by the keepalive, but
# mosquitto 2.0.11 was seen to take 11 s) and publishes its last will
STOP_SECONDS = {"coordinator": 9.0, "broker": 9.0, "gateway": 14.0}

# time.max leaves room for a restart or a SIGSTOP inside a phase on a slow machine
COORDINATOR = {
    "pet.sum.prob": 0.4, "pet.update.prob": 1.0,
    "pet.sum.count.min": SUMS, "pet.sum.time.min": 1, "pet.sum.time.max": 40,
    "pet.update.count.min": UPDATES, "pet.update.time.min": 1, "pet.update.time.max": 40,
    "pet.sum2.count.min": SUMS, "pet.sum2.time.min": 0.3, "pet.sum2.time.max": 40,
    "model.length": 40,
}
GATED = {Phase.SUM: "sum", Phase.UPDATE: "update", Phase.SUM2: "sum2"}


def env_of(settings: dict) -> dict[str, str]:
    return {"PET__" + key.replace(".", "__").upper(): str(value) for key, value in settings.items()}


def http(url: str) -> tuple[int, bytes] | None:
    """(status, body), or None while nothing answers (the process is down or stopped)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None


class GatedFleet:
    """(participant, app, device) triples, each participant stepping in a thread."""

    def __init__(self, devices):
        self.devices = devices
        self.released: set[tuple[bytes, str, bytes]] = set()  # (round seed, phase, participant key)
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(p,), daemon=True) for p, _, _ in devices]
        for t in self.threads:
            t.start()

    def release(self, seed: bytes, phase: str, members) -> None:
        for p, _, _ in members:
            self.released.add((seed, phase, p.public_key))

    def _may_step(self, p) -> bool:
        phase = GATED.get(p.phase)
        if phase is None or (p.params.seed, phase, p.public_key) in self.released:
            return True
        return p.transport.params() != p.params  # a new round: it moves on

    def _run(self, p) -> None:
        pause = 0.02
        while not self.stop_event.is_set():
            if self._may_step(p) and p.step():
                pause = 0.02
                continue
            self.stop_event.wait(pause)
            pause = min(pause * 1.5, 0.2)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        for _, _, device in self.devices:
            device.close()


@dataclass
class Round:
    round_id: int
    params: RoundParameters
    sums: list       # the fleet's (participant, app, device) triples drawn for sum ...
    updaters: list   # ... and for update, in fleet order

    @property
    def seed(self) -> bytes:
        return self.params.seed


class Site:
    """The three processes and the fleet, and what a test does with them: rounds, faults, checks."""

    def __init__(self, tmp_path: Path, broker, store_args: list[str], settings: dict):
        self.broker = broker
        self.coordinator = CoordinatorProcess(tmp_path, store_args, env_of(settings))
        self.coordinator.start()
        self.url = self.coordinator.url
        http_port = _free_port()
        self.gateway_url = f"http://127.0.0.1:{http_port}"
        env = gateway_env((broker.host, broker.port), self.url, tmp_path / "queue.db", "pet",
                          **{"http.bind": f"127.0.0.1:{http_port}", "mqtt.keepalive": 5,
                             "log.level": "info"})
        self.gateway = Service("gateway", [], env, tmp_path / "gateway.log", self.gateway_url + "/health")
        self.gateway.start()
        # a device that waits 5 s for an ack sends its message again: resends are part of every fault
        self.fleet = GatedFleet(make_devices((broker.host, broker.port), "pet", DEVICES, ack_timeout=5))
        self.last_round = 0   # the last round a test saw end

    def close(self) -> None:
        self.fleet.stop()
        self.gateway.kill()
        self.coordinator.kill()

    # -- the coordinator's view ---------------------------------------------------------------

    def status(self) -> dict:
        answer = http(self.url + "/status")
        return json.loads(answer[1]) if answer and answer[0] == 200 else {}

    def rounds(self) -> dict[int, dict]:
        answer = http(self.url + "/rounds")
        assert answer and answer[0] == 200, "GET /rounds"
        return {r["round_id"]: r for r in json.loads(answer[1])}

    def metrics(self) -> str:
        return http(self.url + "/metrics")[1].decode()

    # -- rounds ------------------------------------------------------------------------------

    def next_round(self, timeout: float = 120) -> Round:
        """The first round after the last one seen, in its Sum phase; nobody released yet."""
        while True:
            wait_for(lambda: self.status().get("round_id", 0) > self.last_round
                     and self.status().get("phase") == "sum", timeout, "a new round")
            round_id = self.status()["round_id"]
            params = RoundParameters.from_bytes(http(self.url + "/params")[1])
            if self.status().get("round_id") == round_id:
                break
        roles = {Task.SUM: [], Task.UPDATE: [], Task.NONE: []}
        for member in self.fleet.devices:
            roles[select_task(member[0].keys, params.seed, params.sum, params.update).task].append(member)
        return Round(round_id, params, roles[Task.SUM], roles[Task.UPDATE])

    def round_with(self, sums: int, updaters: int) -> Round:
        """The next round in which sortition drew at least this many sum and update
        participants; rounds before it run with everyone released and are not judged."""
        for _ in range(5):
            rnd = self.next_round()
            if len(rnd.sums) >= sums and len(rnd.updaters) >= updaters:
                return rnd
            for phase, members in (("sum", rnd.sums), ("update", rnd.updaters), ("sum2", rnd.sums)):
                self.release(rnd, phase, members)
            self.end_of(rnd)
        raise AssertionError(f"five rounds in a row drew fewer than {sums} sum or {updaters} update participants")

    def release(self, rnd: Round, phase: str, members) -> None:
        self.fleet.release(rnd.seed, phase, members)

    def wait_accepted(self, rnd: Round, phase: str, count: int, timeout: float = 60) -> None:
        """Until the coordinator accepted `count` messages in this phase of this round."""
        def there() -> bool:
            s = self.status()
            if s.get("round_id", rnd.round_id) != rnd.round_id:
                raise AssertionError(f"round {rnd.round_id} ended early: {self.rounds().get(rnd.round_id)}")
            return s.get("phase") == phase and s["accepted"] >= count
        wait_for(there, timeout, f"{count} accepted {phase} message(s) in round {rnd.round_id}")

    def end_of(self, rnd: Round, timeout: float = 120) -> dict | None:
        """Wait for the round to end; what GET /rounds says of it (None: it failed before a
        coordinator restart, and only completed rounds are kept across one)."""
        wait_for(lambda: self.status().get("round_id", rnd.round_id) > rnd.round_id, timeout,
                 f"round {rnd.round_id} to end")
        self.last_round = rnd.round_id
        return self.rounds().get(rnd.round_id)

    def expected_model(self, rnd: Round, updaters) -> np.ndarray:
        """The weighted average of these updaters' models, after checking that nobody else
        handed a model over in this round."""
        trained = [app for _, app, _ in self.fleet.devices if rnd.seed in app.given]
        assert trained == [app for _, app, _ in updaters], "models were taken from participants not released"
        total = sum(app.scalar for app in trained)
        return sum(app.scalar * app.given[rnd.seed].astype(np.float64) for app in trained) / total

    def check_completed(self, rnd: Round, sums, updaters, sum2: int | None = None) -> None:
        """The round completed with exactly these participants (and `sum2` global masks, by
        default one from each sum participant), and its global model is the weighted average
        of exactly these updaters' models: none lost, none counted twice."""
        outcome = self.end_of(rnd)
        assert outcome is not None and outcome["outcome"] == "completed", f"round {rnd.round_id}: {outcome}"
        assert (outcome["sums"], outcome["updates"], outcome["sum2"]) == \
            (len(sums), len(updaters), len(sums) if sum2 is None else sum2)
        code, body = http(self.url + "/model?format=f32")
        assert code == 200
        round_id, length = int.from_bytes(body[:8], "little"), int.from_bytes(body[8:12], "little")
        assert (round_id, length) == (rnd.round_id, rnd.params.model_length)
        got = np.frombuffer(body[12:], dtype="<f4", count=length)
        assert np.allclose(got, self.expected_model(rnd, updaters), atol=1e-5), \
            f"round {rnd.round_id}: the global model is not the average of its {len(updaters)} updates"

    def check_failed(self, rnd: Round, phase: str, failure: str) -> None:
        """The round failed in this phase for this reason, and left no global model."""
        outcome = self.end_of(rnd)
        assert outcome is not None and (outcome["outcome"], outcome["phase"]) == ("failed", phase), \
            f"round {rnd.round_id}: {outcome}"
        assert failure in outcome["failure"], outcome["failure"]
        answer = http(self.url + "/model?format=f32")
        assert answer[0] == 204 or int.from_bytes(answer[1][:8], "little") < rnd.round_id

    def clean_round(self) -> Round:
        """A round without faults: the participants it needs are released in every phase."""
        rnd = self.round_with(SUMS, UPDATES)
        sums, updaters = rnd.sums[:SUMS], rnd.updaters[:UPDATES]
        for phase, members in (("sum", sums), ("update", updaters), ("sum2", sums)):
            self.release(rnd, phase, members)
        self.check_completed(rnd, sums, updaters)
        return rnd

    # -- faults ------------------------------------------------------------------------------

    def process(self, kind: str):
        return {"coordinator": self.coordinator, "gateway": self.gateway, "broker": self.broker}[kind]

    def fault(self, kind: str, how: str, seconds: float | None = None, during=lambda: None) -> None:
        """`kill`: SIGKILL, then start again on the same port and files after `seconds` (0 by
        default); `stop`: SIGSTOP for `seconds` (STOP_SECONDS[kind] by default), then SIGCONT.
        `during()` runs while the process is away."""
        target = self.process(kind)
        if how == "kill":
            target.kill()
            during()
            time.sleep(seconds or 0)
            target.start()
        else:
            target.proc.send_signal(signal.SIGSTOP)
            try:
                during()
                time.sleep(STOP_SECONDS[kind] if seconds is None else seconds)
            finally:
                target.proc.send_signal(signal.SIGCONT)

    def gateway_connections(self) -> int:
        """How often the gateway has connected to the broker (its log, across its restarts)."""
        return self.gateway.log.read_text(errors="replace").count("gateway.mqtt: connected to")

    def gateway_errors(self) -> float:
        """Requests to the coordinator that got no answer (the gateway's counter)."""
        answer = http(self.gateway_url + "/metrics")
        return metric(answer[1].decode(), "pet_gateway_coordinator_errors_total") if answer else 0.0

    def check_settled(self) -> None:
        """The gateway is back on the broker, reaches the coordinator, its queue is empty, and
        its retained status says online."""
        def settled() -> bool:
            answer = http(self.gateway_url + "/health")
            health = json.loads(answer[1]) if answer else {}
            return health.get("mqtt_connected") and health.get("coordinator_up") and health.get("queued") == 0
        wait_for(settled, 30, "the gateway to be connected with an empty queue")
        watcher = DeviceClient((self.broker.host, self.broker.port), "pet", bytes(32), watch="pet/gw/+/status")
        try:  # the broker says so too: its last will, if published, was replaced
            wait_for(lambda: watcher.topic("gw/site-a/status") == b"online", 10, "the gateway's status online")
        finally:
            watcher.close()

    def check_metrics(self) -> None:
        """The coordinator's counters agree with its round history (a coordinator that was not
        restarted: a restart starts the counters again)."""
        rounds = self.rounds().values()
        text = self.metrics()
        completed = [r for r in rounds if r["outcome"] == "completed"]
        assert metric(text, "pet_rounds_total", outcome="completed") == len(completed)
        assert metric(text, "pet_rounds_total", outcome="failed") == len(rounds) - len(completed)
        for phase, field in (("sum", "sums"), ("update", "updates"), ("sum2", "sum2")):
            assert metric(text, "pet_messages_total", phase=phase, verdict="accepted") == \
                sum(r[field] for r in rounds), f"accepted {phase} messages"


@pytest.fixture
def site(tmp_path, mosquitto_factory, request):
    """make(store="sqlite", **settings) -> a Site; every process is gone when the test ends."""
    sites: list[Site] = []

    def make(store: str = "sqlite", **settings) -> Site:
        if store == "redis":
            args = ["--redis", request.getfixturevalue("redis_url")]
            settings = {"store.prefix": f"faults-{uuid.uuid4().hex[:8]}:"} | settings
        else:
            args = ["--data-dir", str(tmp_path / "data")]
        broker = mosquitto_factory(persistence_dir=tmp_path / "mosquitto")
        sites.append(Site(tmp_path, broker, args, COORDINATOR | settings))
        return sites[-1]

    yield make
    for s in sites:
        s.close()
