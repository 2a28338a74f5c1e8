"""Masking and aggregation throughput against a bare numpy floor measured in the same run.

The floor is the least work any masking can do: one ChaCha20 keystream word per
weight (OpenSSL through `cryptography`) plus one numpy addition. Aggregation's
floor is one modular numpy addition. Ratios are floor time / our time (1.0 means
we run at the floor). Usage: python bench/mask.py [--weights N] [--repeat R] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pet.mask import (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG, Aggregation,  # noqa: E402
                      derive_mask, mask_model)
from pet.mask.rng import keystream_words  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def floor_mask(weights: np.ndarray) -> np.ndarray:
    words = keystream_words(os.urandom(32), 0, len(weights))
    return weights.view(np.uint32) + words


def floor_aggregate(a: np.ndarray, b: np.ndarray, order: int) -> np.ndarray:
    s = a + b
    return np.minimum(s, s - np.uint64(order))


def run(n: int, repeat: int) -> list[dict]:
    weights = np.random.default_rng(0).uniform(-1, 1, n).astype(np.float32)
    t_floor = best_of(repeat, lambda: floor_mask(weights))
    a = np.random.default_rng(1).integers(0, 2 ** 40, n, dtype=np.uint64)
    b = np.random.default_rng(2).integers(0, 2 ** 40, n, dtype=np.uint64)
    t_agg_floor = best_of(repeat, lambda: floor_aggregate(a, b, DEFAULT_CONFIG.order))
    rows = []
    for cfg in (DEFAULT_MCU_CONFIG, DEFAULT_CONFIG):
        t_mask = best_of(repeat, lambda: mask_model(weights, 1.0, cfg))
        t_mask_s = best_of(repeat, lambda: mask_model(weights, 0.37, cfg))
        seed, masked = mask_model(weights, 1.0, cfg)
        t_derive = best_of(repeat, lambda: derive_mask(seed, n, cfg))

        def aggregate():
            agg = Aggregation(cfg, cfg, n)
            agg.aggregate(masked)
            agg.aggregate(masked)
        t_agg = best_of(repeat, aggregate) / 2
        for what, ours, ref in (("mask (scalar 1)", t_mask, t_floor),
                                ("mask (scalar 0.37)", t_mask_s, t_floor),
                                ("derive mask (sum participant)", t_derive, t_floor),
                                ("aggregate one model", t_agg, t_agg_floor)):
            rows.append({"config": cfg.name, "what": what, "weights": n, "ours_s": ours,
                         "floor_s": ref, "ratio": ref / ours,
                         "ours_weights_per_s": n / ours})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=10 ** 6, help="model length (default 10^6)")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs (default 3)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = run(args.weights, args.repeat)
    print(f"{'config':<22} {'what':<32} {'ours ms':>9} {'floor ms':>9} {'ratio':>7} {'Mweights/s':>11}")
    for r in rows:
        print(f"{r['config']:<22} {r['what']:<32} {r['ours_s'] * 1e3:9.1f} {r['floor_s'] * 1e3:9.1f} "
              f"{r['ratio']:7.3f} {r['ours_weights_per_s'] / 1e6:11.1f}")
    print("ratio = floor time / our time, floor = ChaCha20 keystream word + numpy add per weight")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
