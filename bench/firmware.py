"""The firmware's four targets in one run: X25519, Ed25519 sign, sealing a mask seed, masking.

Each figure is the firmware on the MicroPython Unix port (the x64 .mpy, viper
kernels) against libsodium (PyNaCl) or numpy + OpenSSL ChaCha20 measured in
the same run, as a ratio. The details behind each row are in
bench/firmware_curve.py, bench/firmware_box.py and bench/firmware_mask.py.

Usage: python bench/firmware.py [--rounds R] [--weights N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import firmware_box  # noqa: E402
import firmware_curve  # noqa: E402
import firmware_mask  # noqa: E402
from tools.build import build  # noqa: E402


def measure(rounds: int, weights: int) -> list[dict]:
    build(["x64"], ROOT / "build", log=lambda line: None)
    print("timing X25519 and Ed25519 ...", file=sys.stderr)
    fw, ls = {}, {}
    for _ in range(rounds):
        for name, t in firmware_curve.firmware_times(False, False, None, 1500).items():
            fw[name] = min(t, fw.get(name, t))
        for name, t in firmware_curve.sodium_times(0.3).items():
            ls[name] = min(t, ls.get(name, t))
    print("timing sealed boxes ...", file=sys.stderr)
    box_fw = firmware_box.firmware(5, False)
    box_ls = firmware_box.libsodium(5)
    print("timing masking ...", file=sys.stderr)
    mask_rows = [r for r in firmware_mask.run(weights, 5) if r["kernels"] == "native" and r["scalar"] == 1.0]
    rows = [
        {"what": "X25519", "firmware_us": fw["x25519"] * 1e6, "reference": "libsodium",
         "reference_us": ls["x25519"] * 1e6, "ratio": fw["x25519"] / ls["x25519"], "target": "<= 40x slower"},
        {"what": "Ed25519 sign (100 bytes)", "firmware_us": fw["ed25519 sign"] * 1e6, "reference": "libsodium",
         "reference_us": ls["ed25519 sign"] * 1e6, "ratio": fw["ed25519 sign"] / ls["ed25519 sign"],
         "target": "<= 50x slower"},
        {"what": "seal a 32-byte mask seed", "firmware_us": box_fw["seal_32"], "reference": "libsodium",
         "reference_us": box_ls["seal_32"], "ratio": box_fw["seal_32"] / box_ls["seal_32"],
         "target": "<= 50x slower"},
        {"what": "seal a 32-byte mask seed, Ed25519 loaded", "firmware_us": box_fw["seal_32_ed25519_loaded"],
         "reference": "libsodium", "reference_us": box_ls["seal_32"],
         "ratio": box_fw["seal_32_ed25519_loaded"] / box_ls["seal_32"], "target": "<= 50x slower"},
    ]
    for r in mask_rows:
        rows.append({"what": f"masking, {r['config']}, per weight ({weights} weights)",
                     "firmware_us": r["firmware_s"] / weights * 1e6, "reference": "numpy + OpenSSL ChaCha20",
                     "reference_us": r["mask_model_s"] / weights * 1e6,
                     "ratio": r["ratio_vs_mask_model"], "target": ">= 0.1 of the throughput"})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for the curve timings")
    parser.add_argument("--weights", type=int, default=10 ** 5, help="model length for masking (default 10^5)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = measure(args.rounds, args.weights)
    print(f"{'what':46} {'firmware':>12} {'reference':>12} {'ratio':>8}  target")
    for r in rows:
        unit = "x" if r["target"].startswith("<=") else ""
        print(f"{r['what']:46} {r['firmware_us']:10.3f}us {r['reference_us']:10.3f}us "
              f"{r['ratio']:7.3f}{unit}  {r['target']}")
    print("ratio: firmware time / reference time for the crypto rows (lower is better); "
          "reference time / firmware time for masking (higher is better)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
