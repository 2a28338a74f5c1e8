"""Firmware X25519, Ed25519 and SHA-512 (MicroPython Unix port) against libsodium
(PyNaCl) measured in the same run.

Each round times the firmware in a fresh `micropython` process and libsodium in
this one, alternately; the best time of all rounds counts, so a busy machine
hurts both sides alike. Ratio = firmware time / libsodium time (lower is
better). libsodium signs with a secret key that carries the public key, as
`sign` does once it has seen the seed; "new seed" also derives the key pair on
both sides. Usage: python bench/firmware_curve.py [--rounds R] [--fallback]
[--source] [--heap 64k] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nacl.bindings as sodium

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = Path(sys.executable).with_name("micropython")

SEED = bytes(range(32))
MSG = bytes(range(100))

# (name, firmware statement, target ratio or None)
CASES = [
    ("x25519", "x25519(SEED, PK)", 40),
    ("x25519_base", "x25519_base(SEED)", None),
    ("ed25519 public_key", "public_key_new_seed()", None),
    ("ed25519 sign", "sign(SEED, MSG)", 50),
    ("ed25519 sign_with_pk", "sign_with_pk(SEED, EPK, MSG)", 50),
    ("ed25519 sign, new seed", "sign_new_seed()", None),
    ("ed25519 verify", "verify(EPK, MSG, SIG)", None),
    ("sha512 (100 bytes)", "sha512(MSG)", None),
]

UPY_SCRIPT = """
import time, gc
{prelude}
from upet.x25519 import x25519, x25519_base
from upet import ed25519
from upet.ed25519 import public_key, sha512, sign
from upet.ed25519_verify import verify
from upet.crypto import ed25519_sign_with_pk as sign_with_pk
def sign_new_seed():
    ed25519._last = None  # forget the remembered public key
    return sign(SEED, MSG)
def public_key_new_seed():
    ed25519._last = None
    return public_key(SEED)
SEED = bytes(range(32))
MSG = bytes(range(100))
PK = x25519_base(bytes(32))
EPK = public_key(SEED)
SIG = sign(SEED, MSG)
out = []
for name, stmt in {cases!r}:
    fn = eval("lambda: " + stmt)
    fn()
    best = 1 << 30
    n = 0
    start = time.ticks_ms()
    while n < 5 or (n < 200 and time.ticks_diff(time.ticks_ms(), start) < {budget_ms}):
        gc.collect()
        t0 = time.ticks_us()
        fn()
        best = min(best, time.ticks_diff(time.ticks_us(), t0))
        n += 1
    out.append((name, best))
print(repr(out))
"""


def firmware_times(fallback: bool, source: bool, heap: str | None, budget_ms: int) -> dict[str, float]:
    prelude = "import upet.kernels\nupet.kernels.force_fallback = True" if fallback else ""
    script = UPY_SCRIPT.format(prelude=prelude, cases=[(n, s) for n, s, _ in CASES], budget_ms=budget_ms)
    built = ROOT / "build" / "x64"
    path = built if (built / "upet").is_dir() and not source else ROOT / "firmware"
    cmd = [str(MICROPYTHON)] + (["-X", f"heapsize={heap}"] if heap else []) + ["-c", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, MICROPYPATH=str(path)))
    if proc.returncode:
        sys.exit(f"micropython failed:\n{proc.stdout}\n{proc.stderr}")
    last = proc.stdout.strip().splitlines()[-1]
    return {name: us / 1e6 for name, us in eval(last)}  # a list of (str, int) printed by our own script


def sodium_times(budget_s: float) -> dict[str, float]:
    pk = sodium.crypto_scalarmult_base(bytes(32))
    epk, esk = sodium.crypto_sign_seed_keypair(SEED)
    signed = sodium.crypto_sign(MSG, esk)
    import hashlib
    fns = {
        "x25519": lambda: sodium.crypto_scalarmult(SEED, pk),
        "x25519_base": lambda: sodium.crypto_scalarmult_base(SEED),
        "ed25519 public_key": lambda: sodium.crypto_sign_seed_keypair(SEED),
        "ed25519 sign": lambda: sodium.crypto_sign(MSG, esk),
        "ed25519 sign_with_pk": lambda: sodium.crypto_sign(MSG, esk),
        "ed25519 sign, new seed": lambda: sodium.crypto_sign(MSG, sodium.crypto_sign_seed_keypair(SEED)[1]),
        "ed25519 verify": lambda: sodium.crypto_sign_open(signed, epk),
        "sha512 (100 bytes)": lambda: hashlib.sha512(MSG).digest(),
    }
    out = {}
    for name, fn in fns.items():
        batch = 100
        best = float("inf")
        end = time.perf_counter() + budget_s
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            best = min(best, (time.perf_counter() - t0) / batch)
        out[name] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fallback", action="store_true", help="force the pure-Python kernels")
    ap.add_argument("--source", action="store_true", help="run firmware/ even if build/x64 exists")
    ap.add_argument("--heap", help="micropython -X heapsize, e.g. 64k")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    fw: dict[str, float] = {}
    ls: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, t in firmware_times(args.fallback, args.source, args.heap, 1500).items():
            fw[name] = min(t, fw.get(name, t))
        for name, t in sodium_times(0.3).items():
            ls[name] = min(t, ls.get(name, t))
    rows = []
    print(f"{'operation':26} {'firmware':>11} {'libsodium':>11} {'ratio':>7} {'target':>7}")
    for name, _, target in CASES:
        ratio = fw[name] / ls[name]
        rows.append({"operation": name, "firmware_us": fw[name] * 1e6, "libsodium_us": ls[name] * 1e6,
                     "ratio": ratio, "target": target})
        tgt = f"<= {target}" if target else ""
        print(f"{name:26} {fw[name] * 1e6:9.0f}us {ls[name] * 1e6:9.1f}us {ratio:6.1f}x {tgt:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
