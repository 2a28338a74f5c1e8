"""Writes one device's shard of scikit-learn's digits as the flash file app.py reads.

    python firmware/examples/digits/make_shard.py --shard 3 --of 10 --out digits.bin

Samples are dealt round-robin after a fixed shuffle, so the shards of one
fleet do not overlap. Format: u32 LE count, then per sample 64 pixel bytes
(0..16) and the label byte.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np


def shard_bytes(shard: int, of: int, seed: int = 0) -> bytes:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[shard::of]
    pixels = digits.data[order].astype(np.uint8)
    labels = digits.target[order].astype(np.uint8)
    rows = np.concatenate([pixels, labels[:, None]], axis=1)
    return struct.pack("<I", len(rows)) + rows.tobytes()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", type=int, default=0, help="this device's shard, 0 .. of-1")
    ap.add_argument("--of", type=int, default=10, help="number of shards (devices)")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed, the same for the whole fleet")
    ap.add_argument("--out", type=Path, default=Path("digits.bin"))
    args = ap.parse_args(argv)
    if not 0 <= args.shard < args.of:
        ap.error("--shard must be from 0 to --of - 1")
    data = shard_bytes(args.shard, args.of, args.seed)
    args.out.write_bytes(data)
    print(f"{args.out}: {struct.unpack_from('<I', data)[0]} samples")


if __name__ == "__main__":
    main()
