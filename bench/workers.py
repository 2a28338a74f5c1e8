"""Update ingestion of a coordinator on Redis with 1 and 2 processes (msg/s), against the crypto floor.

Each run starts `python -m coordinator --redis URL --processes K` (K = 1: the leader
alone; K = 2: the leader and one worker process sharing the port) on a redis-server of
this script's own, with the MCU mask profile W32/F32/b2/m12 (room for 4,096 updates in
a round), registers --sums sum participants with real Sum messages, and once the Update
phase began sends --warmup Update messages (not timed: a process's first messages cost
more) and then N more from a lean client, timed. Prepared before the clock starts: the
messages (sortition, masking, seeds sealed to the sum participants, signature, seal) and
the HTTP/1.1 requests as bytes, on --connections keep-alive connections opened
beforehand; the kernel spreads the connections over the processes. Timed: first request
to last answer, each connection taking the next request from one queue when its
previous one was answered (so a busier process gets fewer). Every message must be
accepted and the leader's /status must count them all. Two routes: POST /message (one
message per request) and POST /messages (--batch per request, as a gateway sends them).
Runs alternate K = 1, 2, 1, 2, ... (--repeat each), best taken.

Also reported, over the timed window of the best run: CPU seconds (user + system, from
/proc/PID/stat) of the client (this process), of the coordinator processes and of
redis-server, and how many messages each coordinator process judged.

The floor is bench/coordinator.py's: crypto_box_seal_open + Ed25519 verify + the sortition
check (2 SHA-256, the update signature's Ed25519 verify) + decode + numpy modular add of
the same N signed messages (sealed to a key of the floor's own),
best of 3, on one thread and with the crypto on 2 threads.

Rows (bench/run.py's form): the speed-up (2 processes / 1 process), 2 processes against
the floor on 2 threads, 1 process against the floor on 1 thread (the project's target for
both, >= 0.5).

Usage: python bench/workers.py [--messages 3000] [--warmup 64] [--weights 1000] [--sums 3]
       [--batch 20] [--connections 32] [--threads 2] [--repeat 5] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# the repository first: this file's own directory would make "coordinator" mean bench/coordinator.py
sys.path.insert(0, str(ROOT))

from pet import crypto  # noqa: E402
from pet.crypto import EncryptKeyPair, sha256  # noqa: E402
from pet.mask import mask_model  # noqa: E402
from pet.wire import LocalSeedDict, Message, RoundParameters, Sum, Update  # noqa: E402

CONFIG = "W32/F32/b2/m12"  # the MCU profile with room for 4,096 updates in a round
FLOOR_TARGET = 0.5


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_load():
    """bench/load.py, for its process helpers (imported by path, like bench/coordinator.py)."""
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_load = bench_load()
free_port, cpu_seconds, RedisServer = _load.free_port, _load.cpu_seconds, _load.RedisServer


def bench_coordinator():
    """bench/coordinator.py, for its participants and floor (imported by path: its name is the package's)."""
    spec = importlib.util.spec_from_file_location("bench_coordinator", ROOT / "bench" / "coordinator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bc = bench_coordinator()


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http(url: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- processes ----------------------------------------------------------------------------------

class Coordinator:
    """`python -m coordinator --processes K` on Redis, for one Update phase of N messages."""

    def __init__(self, workdir: Path, redis_url: str, processes: int, weights: int, sums: int, messages: int,
                 threads: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")} | {
            "PET__STORE__PREFIX": f"bench-{uuid.uuid4().hex[:8]}:", "PET__MASK__CONFIG": CONFIG,
            "PET__MODEL__LENGTH": str(weights), "PET__PET__SUM__PROB": "0.1", "PET__PET__UPDATE__PROB": "0.9",
            "PET__PET__SUM__COUNT": f"{{ min = {sums}, max = {sums} }}",
            "PET__PET__SUM__TIME": "{ min = 0, max = 600 }",
            "PET__PET__UPDATE__COUNT": f"{{ min = {messages}, max = {messages} }}",  # warm-up included
            "PET__PET__UPDATE__TIME": "{ min = 3600, max = 7200 }",
            "PET__PET__SUM2__COUNT": f"{{ min = 1, max = {sums} }}", "PET__LOG__LEVEL": "warning",
            "PET__API__WORKERS": str(threads)}
        self.log = open(workdir / f"coordinator-{self.port}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "coordinator", "--redis", redis_url,
                                      "--port", str(self.port), "--processes", str(processes)],
                                     cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._processes() == processes, 60, f"{processes} coordinator processes")
        except BaseException:
            self.stop()
            raise

    def _processes(self) -> int:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the coordinator ended (exit status {self.proc.returncode}); see {self.log.name}")
        try:
            return len(self.status()["processes"])
        except OSError:
            return 0

    def status(self) -> dict:
        return json.loads(http(self.url, "/status")[1])

    def pids(self) -> list[int]:
        return [p["pid"] for p in self.status()["processes"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the leader stops its workers
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- the messages -------------------------------------------------------------------------------

def prepare(params: RoundParameters, weights: int, sums: int, messages: int, floor_pk: bytes):
    """Sealed Sum messages, sealed Update messages, and the Update messages sealed to the floor's key."""
    summers, updaters = bc.find_participants(params, sums, messages)
    ephemeral = [EncryptKeyPair.from_seed(sha256(b"ephemeral" + keys.public_key)) for keys, _ in summers]
    sum_boxes = [bc.seal_message(keys, params.pk, Sum(sel.sum_signature, eph.public_key))
                 for (keys, sel), eph in zip(summers, ephemeral)]
    rng = np.random.default_rng(0)
    boxes, floor_boxes = [], []
    for keys, sel in updaters:
        seed, masked = mask_model(rng.uniform(-1, 1, weights).astype(np.float32), 1.0, params.mask_config.vect)
        seeds = LocalSeedDict((k.public_key, crypto.seal(seed, eph.public_key))
                              for (k, _), eph in zip(summers, ephemeral))
        message = Message.from_payload(keys.public_key, params.pk,
                                       Update(sel.sum_signature, sel.update_signature, masked, seeds)).encode()
        signed = crypto.sign_message(message, keys)
        boxes.append(crypto.seal(signed, params.pk))
        floor_boxes.append(crypto.seal(signed, floor_pk))
    return sum_boxes, boxes, floor_boxes


def requests(boxes: list[bytes], batch: int) -> list[bytes]:
    """The HTTP/1.1 requests as bytes: POST /message each, or POST /messages of `batch`."""
    if batch == 1:
        bodies, path = boxes, "/message"
    else:
        bodies = [b"".join(len(b).to_bytes(4, "big") + b for b in boxes[i:i + batch])
                  for i in range(0, len(boxes), batch)]
        path = "/messages"
    return [f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


# -- the lean client ----------------------------------------------------------------------------

async def send_all(port: int, wire: list[bytes], connections: int) -> tuple[float, list[tuple[int, bytes]]]:
    """Send every request over `connections` keep-alive connections (opened before the clock
    starts); (seconds from first request to last answer, [(status, body)])."""
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    queue, answers = deque(wire), []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        while queue:
            writer.write(queue.popleft())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answers.append((int(head[9:12]), await reader.readexactly(length)))

    started = time.perf_counter()
    await asyncio.gather(*(connection(r, w) for r, w in streams))
    seconds = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    return seconds, answers


def refused(answers: list[tuple[int, bytes]], batch: int) -> list[str]:
    if batch == 1:
        return [f"HTTP {status}: {body[:200]!r}" for status, body in answers if status != 200]
    out = [f"HTTP {status}: {body[:200]!r}" for status, body in answers if status != 200]
    for status, body in answers:
        if status == 200:
            out += [f"{v['reason']}: {v['detail']}" for v in json.loads(body) if not v["accepted"]]
    return out


# -- one run --------------------------------------------------------------------------------------

def run_once(workdir: Path, redis, processes: int, args, batch: int, floor_pk: bytes) -> dict:
    """One coordinator, one Update phase: msg/s and CPU seconds over the timed window."""
    c = Coordinator(workdir, redis.url, processes, args.weights, args.sums, args.warmup + args.messages,
                    args.threads)
    try:
        params = RoundParameters.from_bytes(http(c.url, "/params")[1])
        sum_boxes, boxes, floor_boxes = prepare(params, args.weights, args.sums, args.warmup + args.messages,
                                                floor_pk)
        for box in sum_boxes:
            status, body = http(c.url, "/message", box)
            if status != 200:
                raise RuntimeError(f"a Sum message was refused: HTTP {status} {body[:200]!r}")
        wait_until(lambda: c.status()["phase"] == "update", 30, "the Update phase")
        # not timed: every process judges a few updates first (each of 16 connections goes to either)
        warm, boxes, floor_boxes = boxes[:args.warmup], boxes[args.warmup:], floor_boxes[args.warmup:]
        bad = refused(asyncio.run(send_all(c.port, requests(warm, 1), 16))[1], 1)
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(warm)} warm-up updates refused, e.g. {bad[0]}")
        wire = requests(boxes, batch)
        pids = c.pids()
        cpu_before = [cpu_seconds(pid) for pid in pids]
        redis_before, client_before = cpu_seconds(redis.proc.pid), time.process_time()
        seconds, answers = asyncio.run(send_all(c.port, wire, args.connections))
        client_cpu = time.process_time() - client_before
        coordinator_cpu = sum(cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before))
        redis_cpu = cpu_seconds(redis.proc.pid) - redis_before
        bad = refused(answers, batch)
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(boxes)} updates refused, e.g. {bad[0]}")
        total = len(warm) + len(boxes)
        wait_until(lambda: c.status()["updates"] == total, 10, f"the leader to count {total} updates")
        # every process reports how many messages it judged (the Sum messages too), workers every 0.25 s
        judged = wait_until(lambda: (j := {p["name"]: p["messages"] for p in c.status()["processes"]})
                            and sum(j.values()) == total + len(sum_boxes) and j, 10, "the workers' reports")
    finally:
        c.stop()
    return {"processes": processes, "msg_per_s": len(boxes) / seconds, "seconds": seconds,
            "client_cpu_s": client_cpu, "coordinator_cpu_s": coordinator_cpu, "redis_cpu_s": redis_cpu,
            "judged": judged, "message_bytes": len(boxes[0]), "floor_boxes": floor_boxes,
            "floor_sortition": bc.Sortition.of(params)}


def measure(workdir: Path, args, batch: int) -> dict:
    floor_keys = EncryptKeyPair.generate()
    redis = RedisServer(workdir)
    best: dict[int, dict] = {}
    pairs = []  # the speed-up of each 1-process run and the 2-process run right after it
    try:
        for repeat in range(args.repeat):
            for processes in (1, 2):
                r = run_once(workdir, redis, processes, args, batch, floor_keys.public_key)
                pairs.append(r["msg_per_s"])
                progress(f"  {route_name(batch)}, {processes} process{'es' if processes > 1 else ''}: "
                         f"{r['msg_per_s']:.0f} msg/s (client {r['client_cpu_s']:.2f} s CPU, coordinator "
                         f"{r['coordinator_cpu_s']:.2f} s, redis {r['redis_cpu_s']:.2f} s over {r['seconds']:.2f} s; "
                         f"judged {r['judged']})")
                if processes not in best or r["msg_per_s"] > best[processes]["msg_per_s"]:
                    best[processes] = r
    finally:
        redis.stop()
    config = bc.parse_mask_config(CONFIG)
    boxes, sortition = best[1].pop("floor_boxes"), best[1].pop("floor_sortition")
    best[2].pop("floor_boxes"), best[2].pop("floor_sortition")
    progress(f"  floor: {len(boxes)} messages, 1 and 2 threads")
    floor1 = bc.run_floor(boxes, floor_keys, config, args.weights, sortition, threads=1)
    floor2 = bc.run_floor(boxes, floor_keys, config, args.weights, sortition, threads=2)
    return {"batch": batch, "one": best[1], "two": best[2], "floor_1_thread_msg_per_s": floor1,
            "floor_2_threads_msg_per_s": floor2,
            "paired_speedups": [two / one for one, two in zip(pairs[::2], pairs[1::2])]}


def route_name(batch: int) -> str:
    return "POST /message" if batch == 1 else f"POST /messages, {batch} per request"


def rows(results: list[dict], args) -> list[dict]:
    out = []
    for r in results:
        one, two = r["one"], r["two"]
        route = route_name(r["batch"])
        key = "message" if r["batch"] == 1 else f"messages{r['batch']}"
        what = f"Update ingestion on Redis, {args.weights:,} weights, {args.messages} messages, {route}"
        per_message = [1e3 * x["coordinator_cpu_s"] / args.messages for x in (one, two)]
        cores = (f"the coordinator used {one['coordinator_cpu_s'] / one['seconds']:.2f} cores with 1 process, "
                 f"{two['coordinator_cpu_s'] / two['seconds']:.2f} with 2 ({per_message[0]:.2f} and "
                 f"{per_message[1]:.2f} ms CPU per message), the client {two['client_cpu_s'] / two['seconds']:.2f}, "
                 f"redis-server {two['redis_cpu_s'] / two['seconds']:.2f}")
        paired = ", ".join(f"{x:.2f}" for x in r["paired_speedups"])
        out += [
            {"id": f"workers/{args.weights}/{key}/speedup", "what": f"{what}: 2 processes (leader and a worker) "
             f"against 1, best of {args.repeat} each (runs in pairs: {paired}) on a 2-core machine shared with the "
             f"client; {cores}",
             "ours": two["msg_per_s"], "unit": "msg/s", "reference": one["msg_per_s"],
             "reference_what": "1 process (the leader alone)", "ratio": two["msg_per_s"] / one["msg_per_s"],
             "ratio_unit": "", "target": None, "met": None},
            {"id": f"workers/{args.weights}/{key}/floor2", "what": f"{what}: 2 processes against the crypto "
             f"floor on 2 threads", "ours": two["msg_per_s"], "unit": "msg/s",
             "reference": r["floor_2_threads_msg_per_s"], "reference_what": "crypto floor, 2 threads",
             "ratio": two["msg_per_s"] / r["floor_2_threads_msg_per_s"], "ratio_unit": "",
             "target": f">= {FLOOR_TARGET}", "met": two["msg_per_s"] / r["floor_2_threads_msg_per_s"] >= FLOOR_TARGET},
            {"id": f"workers/{args.weights}/{key}/floor1", "what": f"{what}: 1 process against the crypto "
             f"floor on 1 thread", "ours": one["msg_per_s"], "unit": "msg/s",
             "reference": r["floor_1_thread_msg_per_s"], "reference_what": "crypto floor, one thread",
             "ratio": one["msg_per_s"] / r["floor_1_thread_msg_per_s"], "ratio_unit": "",
             "target": f">= {FLOOR_TARGET}", "met": one["msg_per_s"] / r["floor_1_thread_msg_per_s"] >= FLOOR_TARGET},
        ]
    return out


def print_table(results: list[dict]) -> None:
    print(f"{'route':<34} {'1 proc msg/s':>12} {'2 proc msg/s':>12} {'speed-up':>8} {'floor1':>8} "
          f"{'floor2':>8} {'2p/floor2':>9}  client CPU (2p)  coordinator CPU (2p)  redis CPU (2p)")
    for r in results:
        one, two = r["one"], r["two"]
        print(f"{route_name(r['batch']):<34} {one['msg_per_s']:>12.0f} {two['msg_per_s']:>12.0f} "
              f"{two['msg_per_s'] / one['msg_per_s']:>8.2f} {r['floor_1_thread_msg_per_s']:>8.0f} "
              f"{r['floor_2_threads_msg_per_s']:>8.0f} {two['msg_per_s'] / r['floor_2_threads_msg_per_s']:>9.2f}  "
              f"{two['client_cpu_s']:.2f} s of {two['seconds']:.2f} s   {two['coordinator_cpu_s']:.2f} s"
              f"{'':>14}{two['redis_cpu_s']:.2f} s")
    for r in results:
        one, two = r["one"], r["two"]
        paired = ", ".join(f"{x:.2f}" for x in r["paired_speedups"])
        print(f"{route_name(r['batch'])}: speed-up of each pair of runs {paired}; "
              f"coordinator cores used {one['coordinator_cpu_s'] / one['seconds']:.2f} (1 process), "
              f"{two['coordinator_cpu_s'] / two['seconds']:.2f} (2); judged {two['judged']}")
    print("speed-up = 2 processes / 1 process; floor = seal_open + Ed25519 verify + sortition check + decode + numpy "
          "modular add (floor2: crypto on 2 threads)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Progress goes to stderr, the table to stdout.")
    parser.add_argument("--messages", type=int, default=3000,
                        help="Update messages timed per run (default 3000)")
    parser.add_argument("--warmup", type=int, default=64,
                        help="Update messages sent before the clock starts (default 64)")
    parser.add_argument("--weights", type=int, default=1000, help="model length (default 1000)")
    parser.add_argument("--sums", type=int, default=3, help="sum participants (default 3)")
    parser.add_argument("--batch", type=int, default=20,
                        help="messages per POST /messages request (default 20)")
    parser.add_argument("--connections", type=int, default=32, help="client connections (default 32)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads per coordinator process (api.workers, default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, best taken (default 5)")
    parser.add_argument("--quick", action="store_true", help="a tiny run: 100 messages, one repeat")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.warmup, args.repeat = 200, 32, 1
    if not (1 <= args.messages and args.warmup + args.messages <= 4096):
        parser.error(f"--warmup + --messages must be at most 4096 ({CONFIG} aggregates at most 4096 models)")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for batch in (1, args.batch):
            progress(f"{route_name(batch)}: {args.messages} Update messages of {args.weights} weights")
            results.append(measure(Path(tmp), args, batch))
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows(results, args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
