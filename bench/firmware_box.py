"""Sealed boxes on the MicroPython Unix port against libsodium (PyNaCl) in the same run.

Times, best of R: a whole crypto_box_seal of a 32-byte seed and of a 4 KB
message, the symmetric part alone (BLAKE2b nonce, HSalsa20, XSalsa20,
Poly1305) and each primitive, with the viper kernels and with the Python
fallback. Sealing is timed twice: with only the sealing modules loaded (the
ephemeral public key then takes a Montgomery ladder) and with upet.ed25519
loaded, as on a participant (its fixed-base table serves x25519_base). Ratios are firmware time / libsodium time (lower is better; the
target for sealing a seed is <= 50). The firmware comes from build/x64 (run
`pet-build --arch x64` after changing it) or else from the sources.
Usage: python bench/firmware_box.py [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import nacl.bindings as sodium

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = Path(sys.executable).with_name("micropython")

SCRIPT = """
import time, os
import upet.kernels
upet.kernels.force_fallback = {fallback}
from upet import box, kernels
k = kernels.load("box")
try:
    from upet import crypto, x25519
except ImportError:
    crypto = None
R = {repeat}
def best(fn, n):
    b = None
    for _ in range(R):
        t = time.ticks_us()
        for _ in range(n):
            fn()
        dt = time.ticks_diff(time.ticks_us(), t) / n
        b = dt if b is None or dt < b else b
    return b
key, nonce, pk = os.urandom(32), os.urandom(24), os.urandom(32)
seed, big = os.urandom(32), os.urandom(4096)
def sym(msg):
    out = bytearray(48 + len(msg))
    out[48:] = msg
    out[0:32] = pk
    box.secretbox_into(memoryview(out)[32:], box.blake2b(pk + pk, 24), box.hsalsa20(key, bytes(16)), False)
def xsalsa20(buf):
    st = box.salsa_state(box.hsalsa20(key, nonce[:16]), nonce[16:] + bytes(8))
    k.salsa20_xor(st, buf, 0, len(buf), 0)
buf = bytearray(4096)
print("blake2b_64", best(lambda: box.blake2b(pk + pk, 24), 20))
print("hsalsa20", best(lambda: box.hsalsa20(key, nonce[:16]), 20))
print("xsalsa20_4k", best(lambda: xsalsa20(buf), 2))
print("poly1305_4k", best(lambda: box.poly1305(key, big), 2))
print("symmetric_32", best(lambda: sym(seed), 10))
print("symmetric_4k", best(lambda: sym(big), 2))
if crypto:
    rpk = x25519.x25519_base(os.urandom(32))
    print("x25519", best(lambda: crypto.x25519(key, rpk), 3))
    print("seal_32", best(lambda: crypto.seal(seed, rpk), 3))
    print("seal_4k", best(lambda: crypto.seal(big, rpk), 3))
    s = crypto.Sealer()
    pks = [x25519.x25519_base(os.urandom(32)) for _ in range(3 * R)]
    print("sealer_next_recipient", best(lambda: s.seal(seed, pks.pop()), 3))
    from upet import ed25519  # a participant signs too: x25519_base then uses Ed25519's fixed-base table
    crypto.seal(seed, rpk)
    print("seal_32_ed25519_loaded", best(lambda: crypto.seal(seed, rpk), 3))
"""


def best_of(repeat: int, n: int, fn) -> float:
    """Microseconds per call, best of `repeat` runs of n calls."""
    fn()  # warm up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def firmware(repeat: int, fallback: bool) -> dict[str, float]:
    built = ROOT / "build" / "x64"
    env = dict(os.environ, MICROPYPATH=str(built if (built / "upet").is_dir() else ROOT / "firmware"))
    out = subprocess.run([str(MICROPYTHON), "-c", SCRIPT.format(fallback=fallback, repeat=repeat)],
                         capture_output=True, text=True, env=env, check=True).stdout
    return {name: float(value) for name, value in (line.split() for line in out.splitlines())}


def libsodium(repeat: int) -> dict[str, float]:
    pk, sk = sodium.crypto_box_keypair()
    seed, big = os.urandom(32), os.urandom(4096)
    key, nonce = os.urandom(32), os.urandom(24)
    return {
        "seal_32": best_of(repeat, 2000, lambda: sodium.crypto_box_seal(seed, pk)),
        "seal_4k": best_of(repeat, 500, lambda: sodium.crypto_box_seal(big, pk)),
        "x25519": best_of(repeat, 2000, lambda: sodium.crypto_scalarmult(sk, pk)),
        "secretbox_4k": best_of(repeat, 2000, lambda: sodium.crypto_secretbox_easy(big, nonce, key)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    before = libsodium(args.repeat)
    runs = {fallback: firmware(args.repeat, fallback) for fallback in (False, True)}
    after = libsodium(args.repeat)  # the machine may be busier for one of them: keep the better time
    ref = {name: min(before[name], after[name]) for name in before}
    print(f"libsodium: seal 32 B {ref['seal_32']:.1f} us, seal 4 KB {ref['seal_4k']:.1f} us, "
          f"X25519 {ref['x25519']:.1f} us, secretbox 4 KB {ref['secretbox_4k']:.1f} us")
    for fallback, got in runs.items():
        print(f"\nfirmware, {'Python fallback' if fallback else 'viper kernels'} (us):")
        for name, us in got.items():
            ratio = ""
            base = name.replace("_ed25519_loaded", "")
            if base in ref:
                ratio = f"  {us / ref[base]:7.1f}x libsodium"
            elif name == "symmetric_4k":
                ratio = f"  {us / ref['secretbox_4k']:7.1f}x libsodium secretbox"
            print(f"  {name:24s}{us:10.1f}{ratio}")


if __name__ == "__main__":
    main()
