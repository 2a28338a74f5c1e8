"""Several coordinator processes on one real Redis: a leader and workers, over real HTTP.

Workers judge messages for the leader's round (coordinator/worker.py): a round spread
over two workers, chunks included, unmasks the weighted average; the same message sent
to two workers at once counts once; a worker killed with SIGKILL while it holds
updates loses none it acknowledged; `--processes 2` shares one port and replaces a
worker that dies; a worker whose settings differ from the leader's is refused. The
store's scripts are checked on their own too: the phase fence, the count limit, and
the shared reassembly of chunks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from coordinator.store.base import RoundState
from coordinator.store.redis import RedisStore
from pet import crypto
from pet.crypto import SigningKeyPair, sha256
from pet.mask import mask_model
from pet.participant import HttpTransport, Participant, Settings
from pet.sortition import Task, select_task
from pet.verdict import ACCEPTED, Verdict
from pet.wire import LocalSeedDict, Message, RoundParameters, SumDict, Update
from tests.conftest import _free_port
from tests.coordinator_harness import App, drive

ROOT = Path(__file__).resolve().parent.parent

ROUND = {
    "PET__PET__SUM__PROB": "0.3", "PET__PET__UPDATE__PROB": "0.9",
    "PET__PET__SUM__TIME__MIN": "1.5", "PET__PET__SUM__TIME__MAX": "20",
    "PET__PET__UPDATE__TIME__MIN": "1.5", "PET__PET__UPDATE__TIME__MAX": "30",
    "PET__PET__SUM2__TIME__MIN": "0.5", "PET__PET__SUM2__TIME__MAX": "20",
    "PET__MODEL__LENGTH": "200",
}


def http(url: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def status(url: str) -> dict:
    """GET /status, again if the connection breaks (it may land on a process that just died)."""
    for attempt in range(5):
        try:
            return json.loads(http(url, "/status")[1])
        except (ConnectionError, urllib.error.URLError):
            if attempt == 4:
                raise
            time.sleep(0.1)


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Process:
    """`python -m coordinator ARGS` on a port of its own, with these PET__ variables."""

    def __init__(self, log_dir: Path, args: list[str], env: dict[str, str], port: int | None = None):
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")} | env
        self.args = [sys.executable, "-m", "coordinator", "--port", str(self.port), *args]
        self.log = log_dir / f"coordinator-{self.port}-{len(list(log_dir.glob('*.log')))}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT)

    def wait_up(self) -> "Process":
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"the process ended:\n{self.log.read_text()[-3000:]}")
            try:
                return http(self.url, "/healthz")[0] == 200
            except OSError:
                return False
        wait_for(f"{self.args} to answer", up, timeout=30)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cluster(tmp_path, redis_url):
    """start(args, env=None) -> a started Process on the session's Redis under a prefix of
    this test's own; env: the round's settings and the prefix. All are stopped at the end."""
    env = ROUND | {"PET__STORE__PREFIX": f"workers-{uuid.uuid4().hex[:8]}:"}
    started: list[Process] = []

    def start(args: list[str], extra: dict[str, str] | None = None, wait: bool = True) -> Process:
        started.append(Process(tmp_path, ["--redis", redis_url, *args], env | (extra or {})))
        return started[-1].wait_up() if wait else started[-1]

    start.env = env
    yield start
    for p in reversed(started):
        p.stop()


def weighted_average(models: list[tuple[np.ndarray, float]]) -> np.ndarray:
    return sum(w.astype(np.float64) * s for w, s in models) / sum(s for _, s in models)


def model_of(url: str) -> tuple[int, np.ndarray]:
    code, body = http(url, "/model?format=f32")
    assert code == 200
    length = int.from_bytes(body[8:12], "little")
    return int.from_bytes(body[:8], "little"), np.frombuffer(body[12:], "<f4", count=length)


class Spread(HttpTransport):
    """Each request to the next of several URLs: a participant's chunks go to every worker."""

    def __init__(self, urls: list[str]):
        super().__init__(urls[0])
        self.urls, self.n = urls, 0

    def _request(self, path, body=None):
        self.url, self.n = self.urls[self.n % len(self.urls)], self.n + 1
        return super()._request(path, body)


class Twice(HttpTransport):
    """Sends every message to two workers at the same moment; keeps both verdicts."""

    def __init__(self, first: str, second: str):
        super().__init__(first)
        self.other = HttpTransport(second)
        self.pairs: list[tuple[str, ...]] = []

    def send(self, sealed: bytes) -> Verdict:
        verdicts = {}

        def to(name, transport):
            verdicts[name] = HttpTransport.send(transport, sealed)
        threads = [threading.Thread(target=to, args=(name, t)) for name, t in (("a", self), ("b", self.other))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.pairs.append(tuple(sorted(v.reason or "accepted" for v in verdicts.values())))
        return ACCEPTED if "accepted" in self.pairs[-1] else verdicts["a"]


def participant(transport, i: int, settings: Settings | None = None) -> tuple[Participant, App]:
    app = App(i, scalar=1.0 / (1 + i % 3))
    keys = SigningKeyPair.from_seed((5000 + i).to_bytes(32, "little"))
    return Participant(transport, app.train, keys=keys, settings=settings), app


def test_a_round_over_two_workers_unmasks_the_weighted_average_and_counts_duplicates_once(cluster):
    leader = cluster([])
    b, c = cluster(["--role", "worker"]), cluster(["--role", "worker"])
    wait_for("two workers", lambda: len(status(leader.url)["processes"]) == 3)
    round_id = status(leader.url)["round_id"]
    # chunked participants: each message in pieces of at most 600 bytes, spread over both workers
    chunked = [participant(Spread([b.url, c.url]), i, Settings(max_message_size=600)) for i in range(8)]
    # every message of these goes to both workers at once
    doubled = [participant(Twice(b.url, c.url), i) for i in range(8, 14)]
    fleet = chunked + doubled
    drive(fleet, lambda: status(leader.url)["latest_model"] is not None, timeout=60)

    seed = fleet[0][0].params.seed
    senders = [(app.given[seed], app.scalar) for _, app in fleet if seed in app.given]
    latest = status(leader.url)["latest_model"]
    assert latest["round_id"] == round_id, "the first round did not complete"
    assert latest["updates"] == len(senders) >= 3  # the doubled updates counted once
    assert sum(1 for _, app in doubled if seed in app.given) >= 1
    got_round, got = model_of(b.url)  # a worker passes the read routes on to the leader
    assert got_round == round_id
    assert np.allclose(got, weighted_average(senders), atol=1e-5)

    # no doubled message was accepted twice: the other worker found it already counted (or,
    # at the very end of a phase, found the phase over)
    pairs = [pair for p, _ in doubled for pair in p.transport.pairs]
    assert ("accepted", "duplicate") in pairs, pairs
    assert all(pair in (("accepted", "duplicate"), ("accepted", "wrong_phase")) for pair in pairs
               if "accepted" in pair), pairs
    workers = [p for p in status(leader.url)["processes"] if p["name"] != "leader"]
    assert len(workers) == 2 and all(w["messages"] > 0 for w in workers)
    # the chunks of each message went to both workers: reassembled in Redis, none refused
    assert "multipart" not in latest["reasons"], latest["reasons"]
    # the workers' verdicts reach the leader's metrics; a worker serves the leader's dashboard
    code, metrics = http(c.url, "/metrics")
    line = 'pet_messages_total{phase="update",reason="accepted",verdict="accepted"} '
    assert code == 200 and float(metrics.decode().split(line)[1].split()[0]) == len(senders)
    code, page = http(b.url, "/")
    assert code == 200 and b"<html" in page.lower()


def kill_when_stored(proc: subprocess.Popen, redis_url: str, key: str, count: int) -> threading.Thread:
    """SIGKILL proc as soon as Redis holds `count` update participants: in the middle of its
    work, with updates stored but not yet answered and others not yet stored."""
    def watch():
        with redis.Redis.from_url(redis_url) as r:
            while r.scard(key) < count:
                time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def update_messages(params: RoundParameters, sums: SumDict, count: int, length: int):
    """Sealed Update messages of `count` update participants: {pk: sealed}, {pk: (model, scalar)}."""
    sealed, models, i = {}, {}, 0
    rng = np.random.default_rng(7)
    while len(sealed) < count:
        keys = SigningKeyPair.from_seed(sha256(b"kill-test" + i.to_bytes(4, "little")))
        i += 1
        task = select_task(keys, params.seed, params.sum, params.update)
        if task.task is not Task.UPDATE:
            continue
        weights, scalar = rng.uniform(-1, 1, length).astype(np.float32), 1.0 / (1 + i % 4)
        mask_seed, masked = mask_model(weights, scalar, params.mask_config.vect)
        seeds = LocalSeedDict((pk, crypto.seal(mask_seed, ephm_pk)) for pk, ephm_pk in sums.items())
        msg = Message.from_payload(keys.public_key, params.pk,
                                   Update(task.sum_signature, task.update_signature, masked, seeds))
        sealed[keys.public_key] = crypto.seal(crypto.sign_message(msg.encode(), keys), params.pk)
        models[keys.public_key] = (weights, scalar)
    return sealed, models


def test_a_worker_killed_mid_update_loses_no_acknowledged_update(cluster, redis_url):
    crafted, length = 60, 20_000
    # Update ends with the last crafted update, sent when all the others are in
    phase = {"PET__PET__UPDATE__COUNT__MIN": str(crafted + 1), "PET__PET__UPDATE__TIME__MIN": "0",
             "PET__MODEL__LENGTH": str(length)}
    leader = cluster([], phase)
    b, c = cluster(["--role", "worker"], phase), cluster(["--role", "worker"], phase)
    wait_for("two workers", lambda: len(status(leader.url)["processes"]) == 3)
    # reference participants for Sum and Sum2; those drawn for Update never send (not ready)
    fleet = [participant(HttpTransport(c.url), i) for i in range(14)]
    for _, app in fleet:
        app.ready = False
    drive(fleet, lambda: status(leader.url)["phase"] == "update", timeout=60)
    round_id = status(leader.url)["round_id"]
    params = RoundParameters.from_bytes(http(leader.url, "/params")[1])
    sums = SumDict.from_bytes(http(leader.url, "/sums")[1])
    sealed, models = update_messages(params, sums, crafted + 1, length)
    last = sealed.popitem()

    # ten acknowledged one by one, then fifty in one POST /messages, whose answer (all fifty
    # verdicts) comes after the last is stored: the kill, once the first of them is stored,
    # leaves some stored and unanswered and the others not stored
    pks = list(sealed)
    acked = pks[:10]
    answers = [http(b.url, "/message", sealed[key]) for key in acked]
    assert all(code == 200 for code, _ in answers), answers
    killer = kill_when_stored(b.proc, redis_url, cluster.env["PET__STORE__PREFIX"] + "updates", 11)
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        http(b.url, "/messages", b"".join(len(sealed[k]).to_bytes(4, "big") + sealed[k] for k in pks[10:]))
    killer.join(10)
    assert b.proc.wait(10) == -signal.SIGKILL
    # the fifty go to the other worker: each is new there, or was stored before the kill
    again = {}
    for key in pks[10:]:
        code, body = http(c.url, "/message", sealed[key])
        again[key] = "accepted" if code == 200 else Verdict.from_json(body).reason
    assert set(again.values()) <= {"accepted", "duplicate"} and "duplicate" in again.values(), again
    wait_for("every update counted", lambda: status(leader.url)["updates"] == crafted)
    assert http(c.url, "/message", last[1])[0] == 200

    drive(fleet, lambda: (status(leader.url)["latest_model"] or {}).get("round_id") == round_id, timeout=40)
    latest = status(leader.url)["latest_model"]
    assert latest["updates"] == crafted + 1  # every acknowledged update in, none twice
    assert np.allclose(model_of(leader.url)[1], weighted_average(list(models.values())), atol=1e-5)


def worker_pids(url: str) -> set[int]:
    return {p["pid"] for p in status(url)["processes"] if p["name"] != "leader"}


def test_processes_share_the_port_and_a_dead_worker_is_replaced(cluster):
    leader = cluster(["--processes", "2"])
    [worker_pid] = wait_for("the worker process", lambda: worker_pids(leader.url))
    fleet = [participant(HttpTransport(leader.url), i) for i in range(14)]
    first = status(leader.url)["round_id"]
    drive(fleet, lambda: (status(leader.url)["latest_model"] or {}).get("round_id") == first, timeout=60)
    seed = fleet[0][0].params.seed
    senders = [(app.given[seed], app.scalar) for _, app in fleet if seed in app.given]
    assert np.allclose(model_of(leader.url)[1], weighted_average(senders), atol=1e-5)
    # a new connection per request: the kernel spread them over both processes
    assert all(p["messages"] > 0 for p in status(leader.url)["processes"]), status(leader.url)["processes"]

    os.kill(worker_pid, signal.SIGKILL)
    [new_pid] = wait_for("a new worker process", lambda: worker_pids(leader.url) - {worker_pid}, timeout=30)
    second = status(leader.url)["round_id"]
    drive(fleet, lambda: (status(leader.url)["latest_model"] or {}).get("round_id", 0) >= second, timeout=60)

    # a worker whose leader is killed stops too
    leader.proc.send_signal(signal.SIGKILL)
    wait_for("the worker to stop", lambda: not running(new_pid), timeout=20)


def running(pid: int) -> bool:
    """Whether pid is a live process (not gone, not a zombie left to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_worker(cluster, extra: dict[str, str]) -> subprocess.CompletedProcess:
    p = cluster(["--role", "worker"], extra, wait=False)
    p.proc.wait(30)
    return subprocess.CompletedProcess(p.args, p.proc.returncode, "", p.log.read_text())


def test_a_worker_is_refused_without_a_leader_or_with_other_settings(cluster, redis_url):
    alone = run_worker(cluster, {})
    assert alone.returncode == 2
    assert alone.stderr.startswith("pet-coordinator: no leader at redis://127.0.0.1:")
    assert alone.stderr.count("\n") == 1

    leader = cluster([], {"PET__API__TOKEN": "s3cret-token"})
    other = run_worker(cluster, {"PET__API__TOKEN": "guess", "PET__MODEL__LENGTH": "201"})
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "the settings differ from the leader's" in other.stderr
    assert "model.length is 201 here, 200 at the leader" in other.stderr
    assert "api.token differs" in other.stderr and "s3cret" not in other.stderr and "guess" not in other.stderr
    assert len(status(leader.url)["processes"]) == 1  # nothing joined

    # a leader started again with other settings: a running worker takes no messages
    worker = cluster(["--role", "worker"], {"PET__API__TOKEN": "s3cret-token"})
    leader.stop()
    cluster([], {"PET__API__TOKEN": "s3cret-token", "PET__MODEL__LENGTH": "300"})
    code, body = wait_for("the worker to refuse", lambda: (r := http(worker.url, "/message", b"x" * 200))[0] == 503
                          and r)
    assert b"model.length is 200 here, 300 at the leader" in body

    sqlite = subprocess.run([sys.executable, "-m", "coordinator", "--processes", "2", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PET__")})
    assert sqlite.returncode == 2 and "several processes need the redis store" in sqlite.stderr


# -- the store's scripts --------------------------------------------------------------------------

@pytest.fixture
def store(redis_url):
    s = RedisStore(redis_url, f"scripts-{uuid.uuid4().hex[:8]}:")
    yield s
    s.close()


def state(round_id: int, phase: str) -> RoundState:
    return RoundState(round_id, phase, bytes(32), bytes(32), bytes(136), 1.0, {})


def pk(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_the_scripts_add_nothing_once_the_phase_ended_and_keep_to_count_max(store):
    store.save_state(state(4, "sum"))
    assert store.add_sum_participant_in_phase(4, 2, pk(1), pk(11)) == ("ok", 1)
    assert store.add_sum_participant_in_phase(4, 2, pk(1), pk(12)) == ("duplicate", None)
    assert store.add_sum_participant_in_phase(3, 2, pk(2), pk(12)) == ("phase", None)  # another round
    assert store.add_sum_participant_in_phase(4, 2, pk(2), pk(12)) == ("ok", 2)
    assert store.add_sum_participant_in_phase(4, 2, pk(3), pk(13)) == ("full", None)

    store.save_state(state(4, "update"))
    assert store.add_sum_participant_in_phase(4, 2, pk(3), pk(13)) == ("phase", None)
    seeds = {pk(1): b"a" * 80, pk(2): b"b" * 80}
    assert store.add_updates_in_phase(4, 3, "w1", [(pk(20), seeds), (pk(21), seeds)], b"agg-w1", 2) == ("ok", 2)
    assert store.add_updates_in_phase(4, 3, "w2", [(pk(21), seeds), (pk(22), seeds)], b"x", 2) == ("seen", [pk(21)])
    assert store.add_updates_in_phase(4, 3, "w2", [(pk(22), seeds), (pk(23), seeds)], b"x", 2) == ("full", 1)
    assert store.add_updates_in_phase(4, 3, "aggregate", [(pk(22), seeds)], b"agg-leader", 1) == ("ok", 3)
    assert sorted(store.partial_aggregates()) == [(b"agg-leader", 1), (b"agg-w1", 2)]
    assert store.seed_column(pk(2)) == {pk(20): b"b" * 80, pk(21): b"b" * 80, pk(22): b"b" * 80}

    store.save_state(state(4, "sum2"))
    assert store.add_updates_in_phase(4, 9, "w1", [(pk(24), seeds)], b"late", 3) == ("phase", None)
    assert store.update_count() == 3 and store.partial_aggregate("w1") == (b"agg-w1", 2)
    assert store.add_vote_in_phase(4, 1, pk(1), b"mask") == ("ok", 1)
    assert store.add_vote_in_phase(4, 1, pk(2), b"mask") == ("full", None)
    store.clear_round()
    assert store.partial_aggregates() == [] and store.partial_aggregate("w1") is None


LIMITS = dict(max_message_bytes=100, max_chunks=4, max_age=60.0, max_pending_messages=2, max_pending_bytes=1000)


def test_chunks_are_reassembled_in_the_store_under_the_limits(store):
    tag = b"\x02" + bytes(32)  # what every chunk of a message must share: tag, coordinator pk

    def add(sender, message_id, chunk_id, last, data, now=1000.0, limits=LIMITS, meta=tag):
        return store.add_chunk(pk(sender), message_id, meta, chunk_id, last, data, limits, now)

    assert add(1, 7, 1, True, b"world") == ("held", None)
    assert add(1, 7, 1, True, b"world") == ("held", None)  # an exact repeat
    assert add(1, 7, 0, False, b"hello ") == ("done", b"hello world")
    # a chunk that breaks a rule drops its message
    assert add(1, 8, 2, True, b"ab") == ("held", None)
    assert add(1, 8, 2, True, b"xy") == ("bad", "chunk 2 of message 8 arrived twice with different contents")
    assert add(1, 8, 3, True, b"x" * 101) == ("bad", "message 8 would exceed 100 bytes")
    assert add(1, 8, 4, False, b"x") == ("bad", "message 8 would need more than 4 chunks")
    assert add(1, 9, 2, True, b"ab") == ("held", None)
    assert add(1, 9, 3, False, b"c") == ("bad", "chunk 3 of message 9 comes after the last chunk 2")
    assert add(2, 1, 0, False, b"p") == ("held", None)
    assert add(2, 1, 1, False, b"q", meta=b"\x01" + bytes(32))[0] == "bad"  # another tag
    # at most two incomplete messages; one older than max_age is forgotten
    assert add(3, 1, 0, False, b"a", now=1000.0) == ("held", None)
    assert add(3, 2, 0, False, b"a", now=1010.0) == ("held", None)
    assert add(4, 1, 0, False, b"b", now=1020.0) == (
        "full", "reassembly buffer full: 2 incomplete messages pending (limit 2)")
    assert add(4, 1, 0, False, b"b", now=1061.0) == ("held", None)
    roomy = LIMITS | {"max_pending_messages": 10, "max_pending_bytes": 300}
    assert add(5, 1, 0, False, b"z" * 50, now=1062.0, limits=roomy) == (
        "full", "reassembly buffer full: 258 bytes pending, 178 more would exceed 300")
    store.clear_round()
    assert add(4, 1, 1, True, b"c", now=1063.0) == ("held", None)  # chunk 0 went with the round
