"""A device's work per round, per role, on the MicroPython Unix port against the reference
participant doing the same role's work in the same run; peak heap; bytes on the wire.

Each case runs the real `upet.Participant` (x64 .mpy, viper kernels) in a micropython
process of its own, with everything but the network: a stand-in MQTT client hands
it the round parameters, the sum dict or its seed column and an accepting ack for
every message it publishes, through the participant's own message handler, and
counts the bytes it publishes. Its state goes to files as on a board (upet.store).
upet.mqtt is loaded too, so that its code is in the heap as on a board.

  update  S sum participants, n weights: sortition (two signatures), the weights
          written to flash, then every message of the Update: the model masked in a
          stream, the mask seed sealed to the S sum participants (upet.box.Sealer,
          one ephemeral key), each chunk signed and sealed to the coordinator
  sum     U update participants, n weights: sortition, the Sum message, then the
          seed column read entry by entry (each seed opened with the ephemeral key
          and its mask added up, MaskAggregator) and every Sum2 chunk signed and sealed;
          the column is sealed beforehand to an ephemeral key that replaces the one
          the participant drew

Timed on the device with time.ticks_us, from the round parameters to the last
chunk's ack (for sum: excluding the wait between the two messages). The reference
is pet.participant.Participant (libsodium, numpy + OpenSSL ChaCha20) taking the same
steps from the same bytes through a stand-in transport, its state in a StateStore
on the same file system (/dev/shm when there is one). Both: best of --repeat rounds,
each a round with new parameters; ratio = device / reference (lower is better).

Heap: a second run of each case (not timed) collects the garbage and reads
gc.mem_alloc() at every published message, every accepted chunk and every seed of
the column; the largest is the peak live heap (code, model and round state), beside
the live heap once the code and model are loaded. For the smallest case of each
role at the --bisect model lengths: the smallest -X heapsize in which a round
completes, by bisection to 4 KB (fragmentation moves that limit by a few KB).

Wire: the sealed bytes the Update role publishes, per weight against float32 (4
bytes), and against 4n + 112 S (the target: float32 size plus 112 bytes per sum
participant); the rest is 148 payload bytes per message (signatures, configs, counts,
unit) and 192 per chunk (header 136, chunk header 8, seal 48; docs/protocol.md
section 2). The run stops with an error if the bytes sent by the device or the
reference differ from what those sizes give.

Usage: python bench/device.py [--weights 1000,10000,100000] [--sums 1,10,50]
       [--updates 10,100,1000] [--sum-weights 1000,10000,100000] [--repeat R] [--quick]
       [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pet import crypto  # noqa: E402
from pet.crypto import EncryptKeyPair, SigningKeyPair  # noqa: E402
from pet.mask import DEFAULT_MCU_CONFIG  # noqa: E402
from pet.participant import Participant  # noqa: E402
from pet.participant.participant import Phase  # noqa: E402
from pet.participant.store import StateStore  # noqa: E402
from pet.verdict import ACCEPTED  # noqa: E402
from pet.wire import MaskConfigPair, RoundParameters, SumDict, UpdateSeedDict  # noqa: E402

MICROPYTHON = Path(sys.executable).with_name("micropython")
FIRMWARE = ROOT / "build" / "x64"
MAX_MESSAGE = 3912  # the participants' default largest sealed message
CHUNK_DATA = MAX_MESSAGE - 184 - 8  # payload bytes per chunk
SCALAR = 1.0

DEVICE = r"""
import gc, io, json, struct, time
from array import array
import micropython
C = json.load(open(DIR + "/case.json"))
N = C["n"]
# the model first, while the heap is in one piece (as an app does)
model = array("f", range(N))
with open(DIR + "/weights.f32", "rb") as f:
    f.readinto(model)
import upet.participant
import upet.mqtt  # a board's participant has its MQTT client loaded: count its code in the heap
from upet.store import Store

HEAP = C["heap_pass"]
peak = [0]

def sample():
    if HEAP:
        gc.collect()
        peak[0] = max(peak[0], gc.mem_alloc())

class Reader:
    # a received PUBLISH, read in pieces from a stream (upet.mqtt.Reader's interface)
    def __init__(self, stream, length):
        self.stream, self.length, self.remaining = stream, length, length
    def readinto(self, buf, n=None):
        n = min(len(buf) if n is None else n, self.remaining)
        if n > 0:
            self.stream.readinto(memoryview(buf)[:n])
            self.remaining -= n
            if n == 128:  # a seed column entry
                sample()
        return n
    def read(self, n=-1):
        buf = bytearray(self.remaining if n < 0 else min(n, self.remaining))
        self.readinto(buf)
        return bytes(buf)
    def skip(self):
        self.remaining = 0
        self.stream.close()

class Client:
    # the broker and the gateway: delivers what is queued, acks every publish
    def __init__(self):
        self.queue, self.sent, self.messages, self.keep, self.written = [], 0, 0, None, 0
    def set_callback(self, cb):
        self.cb = cb
    def subscribe(self, topic, qos=1):
        pass
    def check_msg(self):
        if self.queue:
            topic, stream, length = self.queue.pop(0)
            self.cb(topic, Reader(stream, length), False)
    def wait_msg(self, timeout=None):
        self.check_msg()
    def publish_stream(self, topic, length, fill, qos=1, retain=False, timeout=60):
        # the payload comes in pieces, as to the socket; they must add up to the length announced
        self.written = 0
        if self.keep:
            self.keep.write(struct.pack(">I", length))
        fill(self.write)
        if self.written != length:
            raise ValueError("published %d bytes, announced %d" % (self.written, length))
        self.sent += length
        self.messages += 1
        sample()
        ack = b'{"accepted": true, "reason": "", "detail": "", "msg": "%s"}' % p._pending
        self.queue.append((ACK, io.BytesIO(ack), len(ack)))
    def write(self, data):
        self.written += len(data)
        if self.keep:
            self.keep.write(data)

def deliver(topic, name, offset=0, length=None):
    # a retained message arriving: read from the case's file, as from the socket
    f = open(DIR + "/" + name, "rb")
    f.seek(offset)
    client.queue.append((topic, f, C[name] if length is None else length))

client = Client()
store = Store(DIR)
p = upet.participant.Participant({"prefix": "pet", "max_message_size": C["max_message"]},
                                 train=lambda params: (model, C["scalar"]), model=model,
                                 store=store, client=client, log=lambda *a: sample())
ACK = b"pet/dev/%s/ack" % p.me
gc.collect()
loaded = gc.mem_alloc()
ephm_sk = bytes.fromhex(C.get("ephm_sk", ""))

def until(done):
    while not done():
        p.step()

for rep in range(C["repeat"]):
    client.sent = client.messages = 0
    client.keep = open(DIR + "/sent.bin", "wb") if C["keep"] and rep == 0 else None
    deliver(b"pet/round/params", "params.bin", 136 * rep, 136)
    if C["role"] == "update":
        deliver(b"pet/round/sums", "sums.bin")
        t0 = time.ticks_us()
        p.step()  # sortition
        until(lambda: p.phase == "awaiting")
        parts = [time.ticks_diff(time.ticks_us(), t0)]
    else:
        t0 = time.ticks_us()
        p.step()  # sortition: the Sum task, a fresh ephemeral key
        p.state["ephm_sk"] = ephm_sk  # the key the column was sealed to
        until(lambda: p.phase == "sum2")
        parts = [time.ticks_diff(time.ticks_us(), t0)]
        deliver(b"pet/round/seeds/" + p.me, "column.bin")
        t0 = time.ticks_us()
        until(lambda: p.phase == "awaiting")
        parts.append(time.ticks_diff(time.ticks_us(), t0))
    if client.keep:
        client.keep.close()
    print(json.dumps({"rep": rep, "us": parts, "sent": client.sent, "messages": client.messages,
                      "heap_loaded": loaded, "heap_peak": peak[0]}))
"""


# -- one case -----------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fs_root() -> str | None:
    """A RAM-backed directory when there is one: both sides write their state files there."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class Case:
    """The inputs of one case, the same bytes for the device and the reference."""

    def __init__(self, role: str, n: int, others: int, repeat: int, number: int):
        self.role, self.n, self.others, self.repeat = role, n, others, repeat
        rng = np.random.default_rng(number)
        self.keys = SigningKeyPair.from_seed(bytes(rng.integers(0, 256, 32, dtype=np.uint8)))
        self.weights = rng.uniform(-1, 1, n).astype("<f4")
        self.round_keys = [EncryptKeyPair.generate() for _ in range(repeat)]
        config = MaskConfigPair(DEFAULT_MCU_CONFIG, DEFAULT_MCU_CONFIG)
        # sum: sum probability 1; update: sum probability 0 and update probability 1
        probs = (1.0, 0.0) if role == "sum" else (0.0, 1.0)
        self.params = [RoundParameters(k.public_key, *probs, os.urandom(32), config, n).to_bytes()
                       for k in self.round_keys]
        self.sum_keys = [EncryptKeyPair.generate() for _ in range(others if role == "update" else 0)]
        self.sums = SumDict({os.urandom(32): k.public_key for k in self.sum_keys}).to_bytes()

    def single(self) -> "Case":
        """The same case, one round."""
        one = object.__new__(Case)
        one.__dict__.update(self.__dict__, repeat=1, params=self.params[:1], round_keys=self.round_keys[:1])
        return one

    @property
    def name(self) -> str:
        return f"{self.role}, {self.n:,} weights, {others(self.role, self.others)}"

    def column(self, ephm_pk: bytes) -> bytes:
        """The seed column of a sum participant: one sealed mask seed per update participant."""
        return UpdateSeedDict({os.urandom(32): crypto.seal(os.urandom(32), ephm_pk)
                               for _ in range(self.others)}).to_bytes()


def device_heap_kb(n: int) -> int:
    """The heap the timed runs get: room enough that its limit plays no part."""
    return 2048 + 8 * n // 1024


def run_device(case: Case, work: Path, timeout: float, heap_pass: bool = False, keep: bool = False,
               heap_kb: int | None = None) -> list[dict]:
    """The case's rounds on the device: one dict per round (us: [parts], sent, messages, heap)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "key").write_bytes(case.keys.seed + case.keys.public_key)
    (work / "weights.f32").write_bytes(case.weights.tobytes())
    for name in ("round.json", "round.f32", "sent.bin"):
        (work / name).unlink(missing_ok=True)
    (work / "params.bin").write_bytes(b"".join(case.params))
    (work / "sums.bin").write_bytes(case.sums)
    spec = {"role": case.role, "n": case.n, "scalar": SCALAR, "repeat": case.repeat, "heap_pass": heap_pass,
            "keep": keep, "max_message": MAX_MESSAGE, "sums.bin": len(case.sums)}
    if case.role == "sum":
        ephm = EncryptKeyPair.generate()
        column = case.column(ephm.public_key)
        (work / "column.bin").write_bytes(column)
        spec.update({"ephm_sk": ephm.secret_key.hex(), "column.bin": len(column)})
    (work / "case.json").write_text(json.dumps(spec))
    (work / "main.py").write_text(f"DIR = {str(work)!r}\n" + DEVICE)
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE))
    heap = heap_kb or device_heap_kb(case.n)
    proc = subprocess.run([str(MICROPYTHON), "-X", f"heapsize={heap}k", str(work / "main.py")],
                          capture_output=True, text=True, env=env, timeout=timeout)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != case.repeat:
        raise RuntimeError(f"the device's run of {case.name} in {heap}k failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return rows


def smallest_heap(case: Case, work: Path, timeout: float, step_kb: int = 4) -> int:
    """The smallest -X heapsize (KB, to step_kb) in which one round of the case completes."""
    one = case.single()
    low, high = 16, device_heap_kb(case.n)
    while high - low > step_kb:
        mid = (low + high) // 2
        try:
            run_device(one, work, timeout, heap_kb=mid)
            high = mid
        except RuntimeError:
            low = mid
    return high


# -- the reference participant --------------------------------------------------------------------


class Transport:
    """What the coordinator would serve, decoded from bytes as HttpTransport does; every
    message accepted and counted."""

    def __init__(self, params: bytes, sums: bytes):
        self.raw_params, self.raw_sums, self.raw_column = params, sums, None
        self.sent = self.messages = 0

    def params(self):
        return RoundParameters.from_bytes(self.raw_params)

    def sums(self):
        return SumDict.from_bytes(self.raw_sums)

    def seeds(self, sum_pk):
        return None if self.raw_column is None else UpdateSeedDict.from_bytes(self.raw_column)

    def model(self):
        return None

    def send(self, sealed: bytes):
        self.sent += len(sealed)
        self.messages += 1
        return ACCEPTED


def run_reference(case: Case, work: Path) -> list[dict]:
    """The same rounds by the reference participant: one dict per round (s: [parts], sent)."""
    out = []
    for rep in range(case.repeat):
        work.mkdir(parents=True, exist_ok=True)
        transport = Transport(case.params[rep], case.sums)
        weights = case.weights
        p = Participant(transport, lambda params, model: (weights, SCALAR), keys=case.keys,
                        store=StateStore(work / f"reference-{rep}"))
        t0 = time.perf_counter()
        p.step()  # new round
        if case.role == "update":
            while p.phase is not Phase.AWAITING:
                p.step()
            parts = [time.perf_counter() - t0]
        else:
            while p.phase is not Phase.SUM2:
                p.step()
            parts = [time.perf_counter() - t0]
            transport.raw_column = case.column(p.ephm.public_key)  # not timed: other participants' work
            t0 = time.perf_counter()
            while p.phase is not Phase.AWAITING:
                p.step()
            parts.append(time.perf_counter() - t0)
        out.append({"s": parts, "sent": transport.sent, "messages": transport.messages})
    return out


# -- what a case costs on the wire ------------------------------------------------------------------


def others(role: str, count: int) -> str:
    who = "sum" if role == "update" else "update"
    return f"{count:,} {who} participant{'s' if count != 1 else ''}"


def update_bytes(n: int, sums: int) -> tuple[int, int]:
    """(sealed bytes, messages) of an Update of n weights to `sums` sum participants by
    docs/protocol.md section 2: payload 148 + 4n + 112 S; 184 bytes more for one message,
    192 more per chunk (header 136, chunk header 8, seal 48) when it is split."""
    payload = 148 + 4 * n + 112 * sums
    return wire_bytes(payload)


def sum_bytes(n: int) -> tuple[int, int]:
    """(sealed bytes, messages) of the Sum role: Sum (232 + 48) and Sum2 (payload 80 + 4n)."""
    total, messages = wire_bytes(80 + 4 * n)
    return total + 232 + 48, messages + 1


def wire_bytes(payload: int) -> tuple[int, int]:
    if payload <= MAX_MESSAGE - 184:
        return payload + 184, 1
    chunks = -(-payload // CHUNK_DATA)
    return payload + 192 * chunks, chunks


# -- the run ----------------------------------------------------------------------------------------


def measure(case: Case, work: Path, timeout: float, bisect: bool, keep: bool = False) -> dict:
    """Device and reference, heap, bytes: one dict of figures for the case."""
    progress(f"{case.name}: device, {case.repeat} rounds ...")
    dev = run_device(case, work / "device", timeout)
    progress(f"{case.name}: reference, {case.repeat} rounds ...")
    ref = run_reference(case, work / "reference")
    progress(f"{case.name}: device heap (collecting at every message and seed) ...")
    heap = run_device(case.single(), work / "device", timeout, heap_pass=True, keep=keep)[0]
    device_ms = min(sum(r["us"]) for r in dev) / 1e3
    reference_ms = min(sum(r["s"]) for r in ref) * 1e3
    expected = update_bytes(case.n, case.others) if case.role == "update" else sum_bytes(case.n)
    out = {"role": case.role, "weights": case.n, "others": case.others, "rounds": case.repeat,
           "device_ms": device_ms, "reference_ms": reference_ms, "ratio": device_ms / reference_ms,
           "device_parts_ms": [x / 1e3 for x in min(dev, key=lambda r: sum(r["us"]))["us"]],
           "reference_parts_ms": [x * 1e3 for x in min(ref, key=lambda r: sum(r["s"]))["s"]],
           "device_bytes": dev[0]["sent"], "device_messages": dev[0]["messages"],
           "reference_bytes": ref[0]["sent"], "reference_messages": ref[0]["messages"],
           "protocol_bytes": expected[0], "protocol_messages": expected[1],
           "heap_loaded_kb": heap["heap_loaded"] / 1024, "heap_peak_kb": heap["heap_peak"] / 1024,
           "device_heap_kb": device_heap_kb(case.n)}
    sizes = {(r["sent"], r["messages"]) for r in dev + ref + [heap]}
    if sizes != {expected}:
        raise RuntimeError(f"{case.name}: sent (bytes, messages) {sorted(sizes)}, but docs/protocol.md's "
                           f"sizes give {expected}")
    if keep:  # what it takes to open the device's messages (tests/test_bench_device.py does)
        (work / "keys.json").write_text(json.dumps({
            "round_sk": [k.secret_key.hex() for k in case.round_keys],
            "sum_sk": [k.secret_key.hex() for k in case.sum_keys], "device_pk": case.keys.public_key.hex()}))
    if bisect:
        progress(f"{case.name}: smallest -X heapsize (bisection) ...")
        out["smallest_heap_kb"] = smallest_heap(case, work / "device", timeout)
    progress(f"{case.name}: device {device_ms:,.1f} ms, reference {reference_ms:,.1f} ms, "
             f"{out['ratio']:.1f}x; peak live heap {out['heap_peak_kb']:.1f} KB; {dev[0]['sent']:,} bytes sent")
    return out


def rows(results: list[dict]) -> list[dict]:
    """The figures as rows: what, ours, unit, reference, reference_what, ratio, target, met."""
    out = []
    for r in results:
        case = f"{r['role']} role, {r['weights']:,} weights, {others(r['role'], r['others'])}"
        parts = ("sortition + Sum message, then Sum2: " + " + ".join(f"{x:,.1f}" for x in r["device_parts_ms"])
                 + " ms" if r["role"] == "sum" else "")
        out.append({"id": f"device/{r['role']}/{r['weights']}/{r['others']}/time",
                    "what": f"device per round (Unix port), {case}" + (f" ({parts})" if parts else ""),
                    "ours": r["device_ms"], "unit": "ms", "reference": r["reference_ms"],
                    "reference_what": "reference participant (libsodium, numpy + OpenSSL ChaCha20)",
                    "ratio": r["ratio"], "ratio_unit": "x", "target": None, "met": None,
                    "device_parts_ms": r["device_parts_ms"], "reference_parts_ms": r["reference_parts_ms"],
                    "sent_bytes": r["device_bytes"], "messages": r["device_messages"],
                    "protocol_bytes": r["protocol_bytes"], "protocol_messages": r["protocol_messages"],
                    "reference_bytes": r["reference_bytes"], "rounds": r["rounds"]})
        heap = f"peak live heap on the device, {case} (live once loaded {r['heap_loaded_kb']:.1f} KB"
        if "smallest_heap_kb" in r:
            heap += f"; smallest -X heapsize that completes: {r['smallest_heap_kb']}k"
        out.append({"id": f"device/{r['role']}/{r['weights']}/{r['others']}/heap", "what": heap + ")",
                    "ours": r["heap_peak_kb"], "unit": "KB", "reference": None, "reference_what": "",
                    "ratio": None, "target": None, "met": None})
        if r["role"] == "update":
            n, s, sent = r["weights"], r["others"], r["device_bytes"]
            target = 4 * n + 112 * s
            out.append({"id": f"device/update/{n}/{s}/wire",
                        "what": f"bytes on the wire per weight, {case}: {sent:,} bytes in "
                                f"{r['device_messages']} messages, {sent / (4 * n):.3f}x float32; "
                                f"{sent - target:,} bytes above 4n + 112 S",
                        "ours": sent / n, "unit": "bytes/weight", "reference": target / n,
                        "reference_what": "float32 + 112 bytes per sum participant",
                        "ratio": sent / target, "ratio_unit": "x", "target": "<= 1",
                        "met": sent <= target, "float32_ratio": sent / (4 * n),
                        "overhead_bytes": sent - target, "messages": r["device_messages"]})
    return out


def per_sum_participant(results: list[dict]) -> list[tuple[int, float]]:
    """(weights, measured bytes each further sum participant adds) from the Update cases."""
    out = []
    for n in sorted({r["weights"] for r in results if r["role"] == "update"}):
        by_s = {r["others"]: r["device_bytes"] for r in results if r["role"] == "update" and r["weights"] == n}
        if len(by_s) >= 2:
            lo, hi = min(by_s), max(by_s)
            out.append((n, (by_s[hi] - by_s[lo]) / (hi - lo)))
    return out


def report(results: list[dict]) -> None:
    print(f"{'role':7} {'weights':>8} {'others':>6} {'device ms':>11} {'reference ms':>13} {'ratio':>8} "
          f"{'live heap KB':>13} {'peak KB':>8} {'bytes':>10} {'x float32':>9} {'/(4n+112S)':>10}")
    for r in results:
        wire = r["device_bytes"] / (4 * r["weights"])
        target = (r["device_bytes"] / (4 * r["weights"] + 112 * r["others"])) if r["role"] == "update" else None
        print(f"{r['role']:7} {r['weights']:>8,} {r['others']:>6,} {r['device_ms']:>11,.1f} "
              f"{r['reference_ms']:>13,.2f} {r['ratio']:>7.1f}x {r['heap_loaded_kb']:>13.1f} "
              f"{r['heap_peak_kb']:>8.1f} {r['device_bytes']:>10,} {wire:>9.3f} "
              f"{'' if target is None else f'{target:.3f}':>10}"
              + (f"  smallest heap {r['smallest_heap_kb']}k" if "smallest_heap_kb" in r else ""))
    for n, b in per_sum_participant(results):
        print(f"each further sum participant adds {b:.1f} bytes to an Update of {n:,} weights")
    print("others: sum participants (update role) or update participants (sum role); live heap: after "
          "loading the code and model; peak: the largest live heap during the round; each chunk adds "
          "192 bytes (header 136, chunk header 8, seal 48), each Update 148 payload bytes besides "
          "weights and seeds")


def int_list(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Progress goes to stderr, the table to stdout.")
    parser.add_argument("--weights", type=int_list, default=[1000, 10_000, 100_000],
                        help="model lengths of the Update cases (default 1000,10000,100000)")
    parser.add_argument("--sums", type=int_list, default=[1, 10, 50],
                        help="sum participants of the Update cases (default 1,10,50)")
    parser.add_argument("--updates", type=int_list, default=[10, 100, 1000],
                        help="update participants of the Sum cases (default 10,100,1000)")
    parser.add_argument("--sum-weights", type=int_list, default=[1000, 10_000, 100_000],
                        help="model lengths of the Sum cases (default 1000,10000,100000)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds per case on each side; the best counts (default 5)")
    parser.add_argument("--bisect", type=int_list, default=[1000, 10_000], metavar="N,...",
                        help="also bisect -X heapsize for the smallest Update and Sum cases of these "
                             "model lengths (default 1000,10000; empty: none)")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest cases only: 1,000 weights, 1 and 2 sum participants, 10 updates, "
                             "2 rounds, no bisection")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each case's folder under DIR, with the device's first round's sealed "
                             "messages in sent.bin (u32 BE length, message)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one device run may take")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.weights, args.sums, args.updates, args.sum_weights = [1000], [1, 2], [10], [1000]
        args.repeat, args.bisect = 2, []
    if not MICROPYTHON.exists():
        parser.error(f"{MICROPYTHON} is missing: run `make install`")
    from tools.build import build
    build(["x64"], ROOT / "build", log=lambda line: None)
    cases = [Case("update", n, s, args.repeat, 1 + i) for i, (n, s) in
             enumerate((n, s) for n in args.weights for s in args.sums)]
    cases += [Case("sum", n, u, args.repeat, 100 + i) for i, (n, u) in
              enumerate((n, u) for n in args.sum_weights for u in args.updates)]
    bisected = set()
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pet-bench-device-", dir=fs_root()) as tmp:
        for i, case in enumerate(cases):
            progress(f"[{i + 1}/{len(cases)}] {case.name} ({time.monotonic() - started:.0f} s so far)")
            bisect = case.n in args.bisect and (case.role, case.n) not in bisected
            bisected.add((case.role, case.n))
            work = (args.keep or Path(tmp)) / f"{case.role}-{case.n}-{case.others}"
            results.append(measure(case, work, args.timeout, bisect, keep=args.keep is not None))
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows(results), indent=1))
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
