"""Update-message ingestion of the coordinator (messages/s) against a PyNaCl + numpy floor.

For each mask config and model length, N update-eligible participants each send
one sealed Update message to a coordinator in its Update phase (sum participants
registered first with real Sum messages). Two ways, each on a fresh coordinator
with a SQLite file store:

  in-process  await coordinator.handle(sealed), --concurrency messages in flight
  HTTP        POST /message on loopback, all N requests at once (aiohttp client
              in the same process, so the client's work counts against us too)

The floor is the least any coordinator must do with the same N messages:
crypto_box_seal_open with the round key, one Ed25519 check of the signed bytes,
the sortition check (SHA-256 of the sum and the update signature against the
round's thresholds, and the Ed25519 check of the update signature, without
which anybody could claim the update task), decoding the masked vector and
adding it, modulo the group order, into a numpy aggregate; in one thread (the
ratio's reference) and with 2 threads for the crypto. Floors are best of 3.
ratio = our msg/s / floor msg/s; the target is 0.5. Message preparation is not
timed. Every message must be accepted.

Usage: python bench/coordinator.py [--weights 1000,100000] [--messages N]
       [--config "W32/F32/b2/m10,Prime/F32/B0/M3"] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import aiohttp
import nacl.bindings as sodium
import numpy as np

# the repository first: this file's own directory would make "coordinator" mean this file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coordinator.settings import load_settings, parse_mask_config  # noqa: E402
from pet import crypto  # noqa: E402
from pet.crypto import EncryptKeyPair, SigningKeyPair, sha256  # noqa: E402
from pet.mask import mask_model  # noqa: E402
from pet.sortition import Task, eligibility_bound, select_task  # noqa: E402
from pet.wire import HEADER_LENGTH, SIGNATURE_LENGTH, LocalSeedDict, Message, Sum, Tag, Update  # noqa: E402
from tests.coordinator_harness import RunningCoordinator  # noqa: E402

TARGET = 0.5
KEY_LABEL = b"bench"  # fixed round keys: the same round, so the same roles, on every run
# the masked vector's numbers start after the header, two signatures and the vect's config and count
VECTOR_OFFSET = HEADER_LENGTH + 2 * SIGNATURE_LENGTH + 8


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def default_messages(weights: int) -> int:
    return 300 if weights <= 10_000 else 40


# -- preparation ------------------------------------------------------------------------------

def bench_settings(config_name: str, weights: int, sums: int, messages: int, store_path: Path | str):
    """A Sum phase that ends as soon as `sums` Sum messages are in, and a long Update phase."""
    env = {
        "PET__PET__SUM__PROB": "0.1", "PET__PET__UPDATE__PROB": "0.9",
        "PET__PET__SUM__COUNT__MIN": str(sums), "PET__PET__SUM__COUNT__MAX": str(sums),
        "PET__PET__SUM__TIME__MIN": "0", "PET__PET__SUM__TIME__MAX": "600",
        "PET__PET__SUM2__COUNT__MIN": "1", "PET__PET__SUM2__COUNT__MAX": str(sums),
        "PET__PET__UPDATE__COUNT__MIN": str(messages), "PET__PET__UPDATE__COUNT__MAX": str(messages),
        "PET__PET__UPDATE__TIME__MIN": "3600", "PET__PET__UPDATE__TIME__MAX": "7200",
        "PET__MASK__CONFIG": config_name, "PET__MODEL__LENGTH": str(weights),
        "PET__STORE__PATH": str(store_path),
    }
    return load_settings(None, env=env)


def find_participants(params, sums: int, updates: int):
    """Deterministic participant keys, sorted by the task sortition gives them this round."""
    found = {Task.SUM: [], Task.UPDATE: []}
    want = {Task.SUM: sums, Task.UPDATE: updates}
    i = 0
    while any(len(found[t]) < want[t] for t in want):
        keys = SigningKeyPair.from_seed(sha256(b"participant" + i.to_bytes(8, "little")))
        selection = select_task(keys, params.seed, params.sum, params.update)
        if selection.task in found and len(found[selection.task]) < want[selection.task]:
            found[selection.task].append((keys, selection))
        i += 1
    return found[Task.SUM], found[Task.UPDATE]


def seal_message(keys: SigningKeyPair, round_pk: bytes, payload) -> bytes:
    message = Message.from_payload(keys.public_key, round_pk, payload).encode()
    return crypto.seal(crypto.sign_message(message, keys), round_pk)


def prepare(params, config, weights: int, sums: int, messages: int):
    """The sealed Sum messages and the sealed Update messages of one round."""
    summers, updaters = find_participants(params, sums, messages)
    ephemeral = [EncryptKeyPair.from_seed(sha256(b"ephemeral" + keys.public_key)) for keys, _ in summers]
    sum_boxes = [seal_message(keys, params.pk, Sum(sel.sum_signature, eph.public_key))
                 for (keys, sel), eph in zip(summers, ephemeral)]
    rng = np.random.default_rng(0)
    update_boxes = []
    for keys, sel in updaters:
        model = rng.uniform(-1, 1, weights).astype(np.float32)
        seed, masked = mask_model(model, 1.0, config)
        seeds = LocalSeedDict((keys.public_key, crypto.seal(seed, eph.public_key))
                              for (keys, _), eph in zip(summers, ephemeral))
        update = Update(sel.sum_signature, sel.update_signature, masked, seeds)
        update_boxes.append(seal_message(keys, params.pk, update))
    return sum_boxes, update_boxes


def start_in_update_phase(settings, sum_boxes, params) -> RunningCoordinator:
    """A coordinator with the sum participants registered and the Update phase begun."""
    running = RunningCoordinator(settings, key_label=KEY_LABEL)
    coordinator = running.coordinator
    try:
        if coordinator.params != params:
            raise RuntimeError("the coordinator's round parameters differ from the prepared ones")
        for box in sum_boxes:
            verdict = running.call(coordinator.handle(box))
            if not verdict.accepted:
                raise RuntimeError(f"a Sum message was rejected: {verdict.reason}: {verdict.detail}")
        deadline = time.monotonic() + 10
        # handle() checks messages against the round view, which follows the phase once it is saved
        while coordinator.view.phase is not Tag.UPDATE:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not reach the Update phase ({coordinator.phase})")
            time.sleep(0.005)
    except BaseException:
        running.stop()
        raise
    return running


def check_all_in(running: RunningCoordinator, expected: int) -> None:
    got = running.coordinator.aggregation.nb_models
    if got != expected:
        raise RuntimeError(f"the aggregate holds {got} updates, {expected} were sent")


# -- ours -------------------------------------------------------------------------------------

async def handle_all(coordinator, boxes, concurrency: int) -> tuple[float, list]:
    gate = asyncio.Semaphore(concurrency)

    async def one(box):
        async with gate:
            return await coordinator.handle(box)
    started = time.perf_counter()
    verdicts = await asyncio.gather(*(one(box) for box in boxes))
    return time.perf_counter() - started, verdicts


def run_in_process(settings, sum_boxes, boxes, params, concurrency: int) -> float:
    running = start_in_update_phase(settings, sum_boxes, params)
    try:
        seconds, verdicts = running.call(handle_all(running.coordinator, boxes, concurrency), timeout=3600)
        refused = [v for v in verdicts if not v.accepted]
        if refused:
            raise RuntimeError(f"{len(refused)} of {len(boxes)} updates rejected, e.g. "
                               f"{refused[0].reason}: {refused[0].detail}")
        check_all_in(running, len(boxes))
    finally:
        running.stop()
    return len(boxes) / seconds


async def post_all(url: str, boxes) -> tuple[float, list]:
    connector = aiohttp.TCPConnector(limit=len(boxes))
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(box):
            async with session.post(url, data=box, headers={"Content-Type": "application/octet-stream"}) as r:
                return r.status, await r.text()
        started = time.perf_counter()
        answers = await asyncio.gather(*(one(box) for box in boxes))
        return time.perf_counter() - started, answers


def run_http(settings, sum_boxes, boxes, params) -> float:
    running = start_in_update_phase(settings, sum_boxes, params)
    try:
        seconds, answers = asyncio.run(post_all(running.url + "/message", boxes))
        refused = [(status, text) for status, text in answers if status != 200]
        if refused:
            raise RuntimeError(f"{len(refused)} of {len(boxes)} updates rejected, e.g. "
                               f"HTTP {refused[0][0]}: {refused[0][1]}")
        check_all_in(running, len(boxes))
    finally:
        running.stop()
    return len(boxes) / seconds


# -- the floor --------------------------------------------------------------------------------

class Sortition(NamedTuple):
    """What the floor's sortition check needs of the round: its seed and the two thresholds."""

    seed: bytes
    sum_bound: int     # a signature is eligible when int_le(SHA-256(signature)) <= bound
    update_bound: int

    @classmethod
    def of(cls, params) -> "Sortition":
        return cls(bytes(params.seed), eligibility_bound(params.sum), eligibility_bound(params.update))


def floor_open(box: bytes, round_keys: EncryptKeyPair, config, weights: int,
               sortition: Sortition) -> np.ndarray:
    """Unseal, verify the signature, check the sortition, decode the masked vector."""
    plain = sodium.crypto_box_seal_open(box, round_keys.public_key, round_keys.secret_key)
    pk = plain[64:96]
    sodium.crypto_sign_open(plain, pk)  # signature || signed bytes is the message itself
    sum_sig = plain[HEADER_LENGTH:HEADER_LENGTH + SIGNATURE_LENGTH]
    update_sig = plain[HEADER_LENGTH + SIGNATURE_LENGTH:HEADER_LENGTH + 2 * SIGNATURE_LENGTH]
    if (int.from_bytes(hashlib.sha256(sum_sig).digest(), "little") <= sortition.sum_bound
            or int.from_bytes(hashlib.sha256(update_sig).digest(), "little") > sortition.update_bound):
        raise RuntimeError("the floor was given a message of a participant without the update task")
    sodium.crypto_sign_open(update_sig + sortition.seed + b"update", pk)
    bpn = config.bytes_per_number
    data = plain[VECTOR_OFFSET:VECTOR_OFFSET + weights * bpn]
    if bpn in (4, 8):
        values = np.frombuffer(data, dtype=f"<u{bpn}").astype(np.uint64)
    else:
        padded = np.zeros((weights, 8), dtype=np.uint8)
        padded[:, :bpn] = np.frombuffer(data, dtype=np.uint8).reshape(weights, bpn)
        values = padded.view("<u8").reshape(weights)
    if config.order < 1 << (8 * bpn) and bool((values >= np.uint64(config.order)).any()):
        raise RuntimeError("an element is not below the group order")
    return values


def floor_add(aggregate: np.ndarray, values: np.ndarray, order: int) -> None:
    """aggregate += values modulo order (at most 2^63, or 2^64), in place; both below order."""
    np.add(aggregate, values, out=aggregate)
    if order < 1 << 64:
        # a sum below order wraps around when order is taken off, so the minimum is the residue
        np.minimum(aggregate, aggregate - np.uint64(order), out=aggregate)


def run_floor(boxes, round_keys: EncryptKeyPair, config, weights: int, sortition: Sortition, threads: int,
              repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        aggregate = np.zeros(weights, dtype=np.uint64)
        started = time.perf_counter()
        if threads == 1:
            for box in boxes:
                floor_add(aggregate, floor_open(box, round_keys, config, weights, sortition), config.order)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for values in pool.map(lambda b: floor_open(b, round_keys, config, weights, sortition), boxes):
                    floor_add(aggregate, values, config.order)
        best = min(best, time.perf_counter() - started)
    return len(boxes) / best


# -- driver -----------------------------------------------------------------------------------

def run(config_name: str, weights: int, messages: int, sums: int, concurrency: int,
        workdir: Path) -> list[dict]:
    config = parse_mask_config(config_name)
    if config.order > 1 << 63 and config.order != 1 << 64:
        raise SystemExit(f"{config_name}: the numpy floor needs a group order of at most 2^63, or 2^64")
    what = f"{config.name}, {weights} weights"
    stores = Path(tempfile.mkdtemp(dir=workdir))  # fresh store files: a round to itself
    settings = {mode: bench_settings(config.name, weights, sums, messages, stores / f"{mode}.db")
                for mode in ("in-process", "http")}
    # the fixed round keys give every coordinator of these settings the same first round
    probe = RunningCoordinator(bench_settings(config.name, weights, sums, messages, ":memory:"),
                               key_label=KEY_LABEL)
    view = probe.coordinator.view
    probe.stop()
    params, round_keys = view.params, EncryptKeyPair(view.round_pk, view.round_sk)
    progress(f"{what}: building {messages} update messages ({sums} sum participants)")
    sum_boxes, boxes = prepare(params, config, weights, sums, messages)
    progress(f"{what}: {len(boxes[0])} bytes per message; in-process handle(), {concurrency} in flight")
    ours_local = run_in_process(settings["in-process"], sum_boxes, boxes, params, concurrency)
    progress(f"{what}: HTTP, {messages} concurrent requests")
    ours_http = run_http(settings["http"], sum_boxes, boxes, params)
    progress(f"{what}: floor")
    sortition = Sortition.of(params)
    floor1 = run_floor(boxes, round_keys, config, weights, sortition, threads=1)
    floor2 = run_floor(boxes, round_keys, config, weights, sortition, threads=2)
    rows = []
    for label, ours in ((f"handle(), {concurrency} in flight", ours_local),
                        (f"HTTP POST, {messages} concurrent", ours_http)):
        rows.append({"config": config.name, "what": label, "weights": weights, "messages": messages,
                     "message_bytes": len(boxes[0]), "ours_msg_per_s": ours, "floor_msg_per_s": floor1,
                     "floor_2_threads_msg_per_s": floor2, "ratio": ours / floor1, "target": TARGET})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'config':<16} {'what':<26} {'weights':>8} {'messages':>8} {'ours msg/s':>11} "
          f"{'floor msg/s':>12} {'ratio':>6} {'target':>6}  {'floor x2 msg/s':>14}")
    for r in rows:
        print(f"{r['config']:<16} {r['what']:<26} {r['weights']:>8} {r['messages']:>8} "
              f"{r['ours_msg_per_s']:>11.1f} {r['floor_msg_per_s']:>12.1f} {r['ratio']:>6.3f} "
              f"{r['target']:>6.1f}  {r['floor_2_threads_msg_per_s']:>14.1f}")
    print("ratio = ours / floor; floor = seal_open + Ed25519 verify + sortition check (2 SHA-256, "
          "1 Ed25519 verify) + decode + numpy modular add, "
          "one thread (floor x2: crypto on 2 threads)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Progress goes to stderr, the table to stdout.")
    parser.add_argument("--weights", default="1000,100000",
                        help="model lengths, comma-separated (default 1000,100000)")
    parser.add_argument("--messages", type=int,
                        help="update messages per run (default 300 up to 10,000 weights, else 40)")
    parser.add_argument("--config", default="W32/F32/b2/m10",
                        help='mask configs, comma-separated (default the MCU profile "W32/F32/b2/m10"; '
                             'XayNet\'s default is "Prime/F32/B0/M3")')
    parser.add_argument("--sums", type=int, default=3,
                        help="sum participants, so seeds per update (default 3)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="in-process messages in flight (default 8)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run: 1000 weights, 30 messages, the first config only")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)

    weights = [int(w) for w in args.weights.split(",")]
    configs = [c.strip() for c in args.config.split(",")]
    if args.quick:
        weights, configs, args.messages = [1000], configs[:1], 30
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-coordinator-") as tmp:
        for config_name in configs:
            for n in weights:
                messages = args.messages or default_messages(n)
                rows += run(config_name, n, messages, args.sums, args.concurrency, Path(tmp))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
