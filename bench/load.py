"""One PET round of thousands of update participants against a coordinator process.

Its round time, and the coordinator's CPU against the crypto floor of the same messages.

The coordinator runs as its own process (`python -m coordinator`, what pet-coordinator
runs) on a loopback port, with a SQLite file store or, with --store redis, a
redis-server of this script's own. Its settings take exactly --sums sum participants
and --participants update participants, each phase ending as soon as all are in; the
mask config is the MCU profile with room for that many models (W32/F32/b2/m13 for 5,000).

The participants take the reference participant's steps (pet.sortition, pet.mask,
pet.crypto, pet.wire, pet.multipart) with keys derived from their number; this
process plays them all, sending from one asyncio event loop:

  prepare  (not timed; a process pool) the round parameters from GET /params; keys
           whose sortition gives the Sum task and keys that give the Update task; each
           update participant's model (uniform in [-1, 1] from its own seed), masked,
           its mask seed sealed to every sum participant's ephemeral key, signed and
           sealed to the round key
  Sum      the sum participants' messages; then wait for the Update phase
  round    (timed) every Update message POSTed, at most --concurrency in flight
           (aiohttp); when the Sum2 phase begins, each sum participant fetches its seed
           column (GET /seeds), opens the seeds, adds up the masks (in the pool: they
           are separate devices) and sends its Sum2 message; the round ends when
           GET /model has the round's global model

Reported: round time (first Update sent to global model available), updates
accepted, the coordinator's CPU seconds over the round (user + system of all its
threads, from /proc/PID/stat) and this process's own. The floor is the CPU time one
thread needs for seal_open + Ed25519 verify + the sortition check (2 SHA-256, the update
signature's Ed25519 verify) + decode + modular add of the same N
Update messages (bench/coordinator.py's floor; the same signed messages, sealed to a
key of the floor's own since the round's secret key never leaves the coordinator;
best of 3). ratio = floor CPU / coordinator CPU over the round; the target is 0.5.
The global model must be the average of the models within the mask config's
fixed-point step, or the run fails.

Usage: python bench/load.py [--participants 5000] [--weights 1000] [--sums 10]
       [--store sqlite|redis] [--concurrency 64] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# the repository first: this file's own directory would make "coordinator" mean bench/coordinator.py
sys.path.insert(0, str(ROOT))

from pet import crypto  # noqa: E402
from pet.crypto import EncryptKeyPair, SigningKeyPair, sha256  # noqa: E402
from pet.mask import aggregate_masks, mask_model  # noqa: E402
from pet.multipart import encode_messages, max_payload_size  # noqa: E402
from pet.sortition import Task, select_task  # noqa: E402
from pet.wire import LocalSeedDict, Message, RoundParameters, Sum, Sum2, Update, UpdateSeedDict  # noqa: E402

TARGET = 0.5
SUM_PROB, UPDATE_PROB = 0.01, 1.0  # every key not drawn for Sum is an update participant


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_coordinator():
    """bench/coordinator.py, for its floor (imported by path: its name is taken by the package)."""
    spec = importlib.util.spec_from_file_location("bench_coordinator", ROOT / "bench" / "coordinator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the participants (also run in the pool's processes) ---------------------------------------

def participant_keys(i: int) -> SigningKeyPair:
    return SigningKeyPair.from_seed(sha256(b"load participant" + i.to_bytes(8, "little")))


def model_of(i: int, weights: int) -> np.ndarray:
    return np.random.default_rng(i).uniform(-1, 1, weights).astype(np.float32)


def sealed_messages(keys: SigningKeyPair, params: RoundParameters, payload, max_message_size) -> list[bytes]:
    """As the reference participant queues a payload: chunked if it must be, signed, sealed."""
    messages = encode_messages(keys.public_key, params.pk, payload, max_payload_size(max_message_size))
    return [crypto.seal(crypto.sign_message(m.encode(), keys), params.pk) for m in messages]


def find_roles(first: int, count: int, params_bytes: bytes) -> list[tuple[int, Task]]:
    """The participants among numbers first .. first + count - 1 that have a task this round."""
    params = RoundParameters.from_bytes(params_bytes)
    found = []
    for i in range(first, first + count):
        task = select_task(participant_keys(i), params.seed, params.sum, params.update).task
        if task is not Task.NONE:
            found.append((i, task))
    return found


def build_updates(numbers: list[int], params_bytes: bytes, sums: dict[bytes, bytes],
                  max_message_size, floor_pk: bytes) -> list[tuple[list[bytes], bytes]]:
    """Each update participant's sealed message(s), and its whole signed message sealed to the floor's key."""
    params = RoundParameters.from_bytes(params_bytes)
    out = []
    for i in numbers:
        keys = participant_keys(i)
        selection = select_task(keys, params.seed, params.sum, params.update)
        assert selection.task is Task.UPDATE
        seed, masked = mask_model(model_of(i, params.model_length), 1.0,
                                  params.mask_config.vect, params.mask_config.unit)
        seeds = LocalSeedDict((sum_pk, crypto.seal(seed, ephm_pk)) for sum_pk, ephm_pk in sums.items())
        payload = Update(selection.sum_signature, selection.update_signature, masked, seeds)
        whole = crypto.sign_message(Message.from_payload(keys.public_key, params.pk, payload).encode(), keys)
        boxes = ([crypto.seal(whole, params.pk)] if max_message_size is None
                 else sealed_messages(keys, params, payload, max_message_size))
        out.append((boxes, crypto.seal(whole, floor_pk)))
    return out


def build_sum2(i: int, ephm_sk: bytes, params_bytes: bytes, column_bytes: bytes,
               max_message_size) -> tuple[list[bytes], float]:
    """A sum participant's Sum2 message(s): open the seeds of its column, add up the masks;
    and the CPU seconds that took."""
    started = time.process_time()
    params = RoundParameters.from_bytes(params_bytes)
    keys = participant_keys(i)
    ephm = EncryptKeyPair.from_secret_key(ephm_sk)
    column = UpdateSeedDict.from_bytes(column_bytes)
    seeds = [crypto.seal_open(box, ephm.public_key, ephm.secret_key) for box in column.values()]
    mask = aggregate_masks(seeds, params.model_length, params.mask_config.vect, params.mask_config.unit)
    sum_signature = select_task(keys, params.seed, params.sum, params.update).sum_signature
    boxes = sealed_messages(keys, params, Sum2(sum_signature, mask), max_message_size)
    return boxes, time.process_time() - started


# -- the coordinator process -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class RedisServer:
    """A redis-server of our own on a free loopback port, without persistence."""

    def __init__(self, workdir: Path):
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, 10, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class CoordinatorProcess:
    """`python -m coordinator` with a settings file for one round of S sums and N updates."""

    def __init__(self, workdir: Path, mask_config: str, weights: int, sums: int, updates: int,
                 redis_url: str | None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "coordinator.toml"
        config.write_text(
            f'[pet.sum]\nprob = {SUM_PROB}\ncount = {{ min = {sums}, max = {sums} }}\n'
            f'time = {{ min = 0.0, max = 3600.0 }}\n\n'
            f'[pet.update]\nprob = {UPDATE_PROB}\ncount = {{ min = {updates}, max = {updates} }}\n'
            f'time = {{ min = 0.0, max = 3600.0 }}\n\n'
            f'[pet.sum2]\ncount = {{ min = {sums}, max = {sums} }}\ntime = {{ min = 0.0, max = 3600.0 }}\n\n'
            f'[mask]\nconfig = "{mask_config}"\n\n[model]\nlength = {weights}\n\n[log]\nlevel = "warning"\n')
        cmd = [sys.executable, "-m", "coordinator", "--config", str(config), "--port", str(self.port),
               "--data-dir", str(workdir / "data")]
        if redis_url:
            cmd += ["--redis", redis_url]
        self.log = workdir / "coordinator.log"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_until(self.healthy, 60, f"the coordinator to start (log: {self.log})")

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the coordinator exited:\n{self.log.read_text()[-2000:]}")
        try:
            return http_get(self.url + "/health")[0] == 200
        except OSError:
            return False

    def status(self) -> dict:
        return json.loads(http_get(self.url + "/status")[1])

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- preparation -------------------------------------------------------------------------------

def choose_participants(pool, params_bytes: bytes, sums: int, updates: int, block: int = 200):
    """The first `sums` numbers drawn for Sum and the first `updates` drawn for Update."""
    found: list[tuple[int, Task]] = []
    first = 0
    while True:
        sum_numbers = [i for i, t in found if t is Task.SUM]
        update_numbers = [i for i, t in found if t is Task.UPDATE]
        if len(sum_numbers) >= sums and len(update_numbers) >= updates:
            return sum_numbers[:sums], update_numbers[:updates]
        # enough candidates for what is still missing, with some to spare
        more = max((updates - len(update_numbers)) / ((1 - SUM_PROB) * UPDATE_PROB),
                   (sums - len(sum_numbers)) / SUM_PROB)
        count = int(more * 1.1) + block
        starts = range(first, first + count, block)
        for part in pool.map(find_roles, starts, [min(block, first + count - s) for s in starts],
                             [params_bytes] * len(starts)):
            found += part
        first += count


def prepare(pool, params: RoundParameters, sums: int, updates: int, max_message_size, floor_pk: bytes):
    """The sum participants (number, ephemeral keys, sealed Sum messages) and the update
    participants' sealed messages and floor boxes."""
    params_bytes = params.to_bytes()
    sum_numbers, update_numbers = choose_participants(pool, params_bytes, sums, updates)
    summers = []
    for i in sum_numbers:
        keys = participant_keys(i)
        selection = select_task(keys, params.seed, params.sum, params.update)
        ephm = EncryptKeyPair.generate()
        summers.append((i, ephm, sealed_messages(keys, params, Sum(selection.sum_signature, ephm.public_key),
                                                 max_message_size)))
    sum_dict = {participant_keys(i).public_key: ephm.public_key for i, ephm, _ in summers}
    block = 50
    parts = [update_numbers[k:k + block] for k in range(0, len(update_numbers), block)]
    futures = [pool.submit(build_updates, part, params_bytes, sum_dict, max_message_size, floor_pk)
               for part in parts]
    built, last = [], time.monotonic()
    for future in futures:
        built += future.result()
        if time.monotonic() - last > 5 or len(built) == updates:
            last = time.monotonic()
            progress(f"  prepared {len(built)}/{updates} update messages")
    return summers, update_numbers, built


# -- the round ---------------------------------------------------------------------------------

class Sender:
    """POST /message with at most `concurrency` requests in flight; counts the verdicts."""

    def __init__(self, session: aiohttp.ClientSession, url: str, concurrency: int):
        self.session, self.url = session, url + "/message"
        self.gate = asyncio.Semaphore(concurrency)
        self.refused: list[tuple[int, str]] = []
        self.accepted = 0

    async def send(self, boxes: list[bytes]) -> None:
        for box in boxes:
            async with self.gate:
                async with self.session.post(self.url, data=box,
                                             headers={"Content-Type": "application/octet-stream"}) as r:
                    text = await r.text()
            if r.status != 200:
                self.refused.append((r.status, text))
                return
        self.accepted += 1


async def wait_for(session: aiohttp.ClientSession, url: str, check, what: str, timeout: float = 600,
                   pause: float = 0.02):
    """Poll GET url until check(status, body) is not None; return that."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(url) as r:
            found = check(r.status, await r.read())
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(pause)


def phase_is(phase: str):
    return lambda status, body: True if status == 200 and json.loads(body)["phase"] == phase else None


async def run_round(coordinator: CoordinatorProcess, pool, params: RoundParameters, round_id: int,
                    summers, update_boxes: list[list[bytes]], concurrency: int, max_message_size) -> dict:
    url, n = coordinator.url, len(update_boxes)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        sender = Sender(session, url, concurrency)
        await asyncio.gather(*(sender.send(boxes) for _, _, boxes in summers))
        if sender.refused:
            raise RuntimeError(f"a Sum message was refused: {sender.refused[0]}")
        await wait_for(session, url + "/status", phase_is("update"), "the Update phase")

        progress(f"round: {n} Update messages, at most {concurrency} in flight")
        sender = Sender(session, url, concurrency)
        cpu0, own0, t0 = coordinator.cpu(), time.process_time(), time.perf_counter()

        async def report():
            while True:
                await asyncio.sleep(5)
                progress(f"  {sender.accepted}/{n} accepted after {time.perf_counter() - t0:.0f} s")
        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(*(sender.send(boxes) for boxes in update_boxes))
        finally:
            reporter.cancel()
        t_sent, cpu_sent, own_sent = time.perf_counter(), coordinator.cpu(), time.process_time()
        if sender.refused:
            raise RuntimeError(f"{len(sender.refused)} of {n} Update messages refused, e.g. "
                               f"HTTP {sender.refused[0][0]}: {sender.refused[0][1]}")
        progress(f"  all {n} accepted in {t_sent - t0:.1f} s; Sum2")
        await wait_for(session, url + "/status", phase_is("sum2"), "the Sum2 phase")
        t_sum2 = time.perf_counter()

        loop = asyncio.get_running_loop()
        sum2_cpu = []

        async def sum2(i, ephm, _):
            pk = base64.b64encode(participant_keys(i).public_key).decode()
            async with session.get(url + "/seeds", params={"pk": pk}) as r:
                if r.status != 200:
                    raise RuntimeError(f"GET /seeds: HTTP {r.status}")
                column = await r.read()
            boxes, cpu = await loop.run_in_executor(pool, build_sum2, i, ephm.secret_key, params.to_bytes(),
                                                    column, max_message_size)
            sum2_cpu.append(cpu)
            await sender.send(boxes)
        sender = Sender(session, url, concurrency)
        await asyncio.gather(*(sum2(*s) for s in summers))
        if sender.refused:
            raise RuntimeError(f"a Sum2 message was refused: {sender.refused[0]}")
        t_sum2_sent = time.perf_counter()

        def global_model(status, body):
            if status == 200 and int.from_bytes(body[:8], "little") == round_id:
                return np.frombuffer(body[12:], dtype="<f4")
            return None
        model = await wait_for(session, url + "/model?format=f32", global_model, "the global model")
        t_end, cpu_end, own_end = time.perf_counter(), coordinator.cpu(), time.process_time()
    return {"model": model, "round_s": t_end - t0, "update_phase_s": t_sent - t0,
            "sum2_phase_s": t_sum2_sent - t_sum2, "sum_participants_cpu_s": sum(sum2_cpu),
            "model_after_s": t_end - t_sum2_sent,
            "coordinator_cpu_s": cpu_end - cpu0, "coordinator_cpu_update_phase_s": cpu_sent - cpu0,
            "generator_cpu_update_phase_s": own_sent - own0, "generator_cpu_s": own_end - own0}


# -- the floor ---------------------------------------------------------------------------------

def floor_cpu(boxes: list[bytes], floor_keys: EncryptKeyPair, params: RoundParameters, weights: int,
              repeat: int = 3) -> float:
    """CPU seconds of seal_open + verify + sortition check + decode + add of every box in one
    thread, best of `repeat`."""
    bc = bench_coordinator()
    config, sortition = params.mask_config.vect, bc.Sortition.of(params)
    best = math.inf
    for _ in range(repeat):
        aggregate = np.zeros(weights, dtype=np.uint64)
        started = time.process_time()
        for box in boxes:
            bc.floor_add(aggregate, bc.floor_open(box, floor_keys, config, weights, sortition), config.order)
        best = min(best, time.process_time() - started)
    return best


# -- driver ------------------------------------------------------------------------------------

def default_mask_config(updates: int) -> str:
    """The MCU profile with room for `updates` models (at least the default m10)."""
    return f"W32/F32/b2/m{max(10, math.ceil(math.log2(updates)))}"


def run(updates: int, weights: int, sums: int, store: str, concurrency: int, mask_config: str,
        max_message_size, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, ProcessPoolExecutor(workers) as pool:
        workdir = Path(tmp)
        redis = RedisServer(workdir) if store == "redis" else None
        coordinator = None
        try:
            progress(f"coordinator: {mask_config}, {weights} weights, {sums} sums, {updates} updates, "
                     f"{store}")
            coordinator = CoordinatorProcess(workdir, mask_config, weights, sums, updates,
                                             redis.url if redis else None)
            wait_until(lambda: http_get(coordinator.url + "/params")[0] == 200, 60, "the round parameters")
            params = RoundParameters.from_bytes(http_get(coordinator.url + "/params")[1])
            status = coordinator.status()
            if status["phase"] != "sum":
                raise RuntimeError(f"the coordinator is in phase {status['phase']}, not sum")
            round_id = status["round_id"]
            progress(f"preparing {sums} sum and {updates} update participants ({workers} processes)")
            floor_keys = EncryptKeyPair.generate()
            started = time.perf_counter()
            summers, numbers, built = prepare(pool, params, sums, updates, max_message_size,
                                              floor_keys.public_key)
            prepare_s = time.perf_counter() - started
            result = asyncio.run(run_round(coordinator, pool, params, round_id, summers,
                                           [boxes for boxes, _ in built], concurrency, max_message_size))
            latest = coordinator.status()["latest_model"]
        finally:
            if coordinator:
                coordinator.stop()
            if redis:
                redis.stop()

    progress("checking the global model; the floor")
    expected = np.zeros(weights)
    for i in numbers:
        expected += model_of(i, weights)
    expected /= updates
    config = params.mask_config.vect
    # fixed point floors each weight to a multiple of 1/exp_shift; the f32 download rounds
    tolerance = 1 / float(config.exp_shift) + 1e-6
    error = float(np.max(np.abs(result.pop("model") - expected)))
    floor = floor_cpu([box for _, box in built], floor_keys, params, weights)
    ratio = floor / result["coordinator_cpu_s"]
    return {
        "what": f"round of {updates} updates, {weights} weights, {sums} sums, {store}",
        "participants": updates, "weights": weights, "sums": sums, "store": store, "mask_config": mask_config,
        "concurrency": concurrency, "message_bytes": sum(len(b) for b in built[0][0]),
        "messages_per_update": len(built[0][0]), "prepare_s": prepare_s, **result,
        "updates_accepted": latest["updates"] if latest else 0,
        "sum2_accepted": latest["sum2"] if latest else 0,
        "coordinator_round_duration_s": latest["duration"] if latest else None,
        "updates_per_s": updates / result["update_phase_s"],
        "floor_cpu_s": floor, "ratio": ratio, "target": TARGET, "workers": workers,
        # the sending loop is one thread: near one CPU-second per second means it was the limit
        "generator_bound": result["generator_cpu_update_phase_s"] > 0.9 * result["update_phase_s"],
        "model_max_error": error, "model_tolerance": tolerance, "model_ok": error <= tolerance,
        "cpus": os.cpu_count(),
    }


def print_report(r: dict) -> None:
    print(f"{r['what']} (mask config {r['mask_config']}, {r['message_bytes']} bytes in "
          f"{r['messages_per_update']} message(s) per update, {r['concurrency']} in flight)")
    print(f"  round time (first Update sent -> global model)  {r['round_s']:8.2f} s")
    print(f"    Update phase                                  {r['update_phase_s']:8.2f} s "
          f"({r['updates_per_s']:.0f} updates/s)")
    print(f"    Sum2: sum participants' masks, sent           {r['sum2_phase_s']:8.2f} s "
          f"({r['sums']} participants on {r['workers']} processes, {r['sum_participants_cpu_s']:.2f} s CPU)")
    print(f"    then the global model                         {r['model_after_s']:8.2f} s")
    print(f"  updates accepted                                {r['updates_accepted']:8d}")
    print(f"  coordinator CPU over the round                  {r['coordinator_cpu_s']:8.2f} s "
          f"({r['coordinator_cpu_update_phase_s']:.2f} s in the Update phase)")
    print(f"  floor CPU, same {r['participants']} messages, one thread        {r['floor_cpu_s']:8.2f} s")
    print(f"  ratio floor / coordinator                       {r['ratio']:8.3f}   (target {r['target']})")
    print(f"  CPU in the Update phase, of {r['update_phase_s']:.2f} s wall on {r['cpus']} CPUs: coordinator "
          f"{r['coordinator_cpu_update_phase_s']:.2f} s, "
          f"this process {r['generator_cpu_update_phase_s']:.2f} s")
    if r["generator_bound"]:
        print("  this process kept one CPU busy in the Update phase: the load generator, not the "
              "coordinator, set the pace; compare the CPU seconds, not the round time")
    print(f"  global model: max error {r['model_max_error']:.2e} (allowed {r['model_tolerance']:.2e}): "
          f"{'ok' if r['model_ok'] else 'WRONG'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Progress goes to stderr, the report to stdout.")
    parser.add_argument("--participants", type=int, default=5000, help="update participants (default 5000)")
    parser.add_argument("--weights", type=int, default=1000, help="model length (default 1000)")
    parser.add_argument("--sums", type=int, default=10, help="sum participants (default 10)")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="the coordinator's store (default sqlite; redis starts a redis-server)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--mask-config", help="default: W32/F32/b2/m<k> with 2^k >= participants, k >= 10")
    parser.add_argument("--max-message-size", type=int,
                        help="chunk messages above this many sealed bytes, as the reference participant "
                             "does by default (3912); default: whole messages")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes preparing messages and computing Sum2 masks (default: CPUs)")
    parser.add_argument("--quick", action="store_true", help="a small run: 50 participants, 3 sums")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.participants, args.sums = 50, 3
    if args.participants < 3:
        parser.error("--participants must be at least 3 (the coordinator's minimum)")
    mask_config = args.mask_config or default_mask_config(args.participants)
    result = run(args.participants, args.weights, args.sums, args.store, args.concurrency, mask_config,
                 args.max_message_size, args.workers)
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["model_ok"] and result["updates_accepted"] == args.participants else 1


if __name__ == "__main__":
    sys.exit(main())
