"""Firmware masking throughput on the Unix port against numpy + OpenSSL ChaCha20, in one run.

The firmware (upet.mask, built for x64 as on a board, native kernels and the
Python fallback) masks the same float32 weights as `pet.mask.mask_model` with
the MCU config, and as the bare floor of bench/mask.py (one OpenSSL keystream
word per weight plus one numpy addition). Ratios are reference time / firmware
time: the target is >= 0.1 against mask_model. Both sides' bytes are compared.

Usage: python bench/firmware_mask.py [--weights N] [--repeat R] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
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

from pet.mask import MaskConfig, mask_model  # noqa: E402
from pet.mask.rng import keystream_words  # noqa: E402
from tools.build import build  # noqa: E402

MICROPYTHON = Path(sys.executable).with_name("micropython")

DEVICE = """
import time, hashlib
from array import array
from binascii import hexlify
import upet.kernels
upet.kernels.force_fallback = {fallback}
from upet import mask as M
n = {n}
w = array("f", bytes(4 * n))
with open({weights!r}, "rb") as f:
    f.readinto(w)
config = M.MaskConfig({config!r})
out = bytearray(n * config.word_bytes)
for scalar in {scalars!r}:
    best = None
    for _ in range({repeat}):
        m = M.Masker(config, {seed!r}, scalar)
        t = time.ticks_us()
        m.mask_into(w, out)
        dt = time.ticks_diff(time.ticks_us(), t)
        best = dt if best is None else min(best, dt)
    print(scalar, best, hexlify(hashlib.sha256(out).digest()).decode())
"""


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def device_times(path: Path, weights_file: Path, n: int, config: MaskConfig, seed: bytes, scalars, repeat: int,
                 fallback: bool) -> dict:
    """{scalar: (seconds, sha256 of the masked words)} from the Unix port."""
    script = DEVICE.format(fallback=fallback, n=n, weights=str(weights_file), scalars=list(scalars),
                           repeat=repeat, config=config.to_bytes(), seed=seed)
    heap = f"{(n * 16) // 2 ** 20 + 4}m"
    proc = subprocess.run([str(MICROPYTHON), "-X", f"heapsize={heap}", "-c", script], capture_output=True,
                          text=True, env=dict(os.environ, MICROPYPATH=str(path)), timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"micropython failed:\n{proc.stdout}{proc.stderr}")
    rows = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows[float(parts[0])] = (int(parts[1]) / 1e6, parts[2])
    return rows


def run(n: int, repeat: int) -> list[dict]:
    build(["x64"], ROOT / "build", log=lambda line: None)
    path = ROOT / "build" / "x64"
    weights = np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32)
    seed = hashlib.sha256(b"bench/firmware_mask").digest()
    scalars = (1.0, 0.37)
    t_floor = best_of(repeat, lambda: weights.view(np.uint32) + keystream_words(os.urandom(32), 0, n))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights_file = Path(tmp) / "weights.f32"
        weights_file.write_bytes(weights.tobytes())
        for config in (MaskConfig.mcu(2, 10), MaskConfig.mcu(0, 20, wide=True)):
            ref = {s: best_of(repeat, lambda: mask_model(weights, s, config, seed=seed)) for s in scalars}
            want = {s: hashlib.sha256(mask_model(weights, s, config, seed=seed)[1].to_bytes()[8:-4 - config.bytes_per_number]).hexdigest() for s in scalars}
            for kind, fallback, reps in (("native", False, repeat), ("fallback", True, 1)):
                got = device_times(path, weights_file, n, config, seed, scalars, reps, fallback)
                for s in scalars:
                    secs, digest = got[s]
                    if digest != want[s]:
                        raise SystemExit(f"{kind} {config.name} scalar {s}: bytes differ from pet.mask")
                    rows.append({"config": config.name, "kernels": kind, "scalar": s, "weights": n,
                                 "firmware_s": secs, "mask_model_s": ref[s], "floor_s": t_floor,
                                 "ratio_vs_mask_model": ref[s] / secs, "ratio_vs_floor": t_floor / secs,
                                 "firmware_weights_per_s": n / secs})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=10 ** 5, help="model length (default 10^5)")
    parser.add_argument("--repeat", type=int, default=5, help="best of R runs (default 5; fallback: 1)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = run(args.weights, args.repeat)
    print(f"{'config':20s} {'kernels':9s} {'scalar':>6s} {'firmware':>11s} {'mask_model':>11s} "
          f"{'floor':>9s} {'vs mask_model':>14s} {'vs floor':>9s}")
    for r in rows:
        print(f"{r['config']:20s} {r['kernels']:9s} {r['scalar']:6.2f} {r['firmware_s'] * 1e3:9.2f}ms "
              f"{r['mask_model_s'] * 1e3:9.2f}ms {r['floor_s'] * 1e3:7.2f}ms {r['ratio_vs_mask_model']:14.3f} "
              f"{r['ratio_vs_floor']:9.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
