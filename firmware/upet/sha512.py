"""SHA-512 (FIPS 180-4), needed by Ed25519: the boards' hashlib has no SHA-512.

`sha512(*parts)` hashes the concatenation of its arguments without joining
them, so Ed25519 hashes a prefix and a message in place. The compression
function is a kernel (`upet.kernels.load("sha512")`): viper with 64-bit words
kept as pairs of 32-bit halves, or plain Python integers.
"""

import array
import struct
from upet import kernels

_k = kernels.load("sha512")


def _roots(root, count, words):
    """The first 64 bits of the fractional parts of the root-th roots of the
    first `count` primes (the round constants and initial hash value), as
    32-bit halves, high half first, at the start of `words` zero words.
    Computed, so no table sits in the code; run as the module loads and then
    dropped, so neither does this code."""
    out = array.array("I", bytes(4 * words))
    p = 1
    i = 0
    while i < 2 * count:
        p += 1
        q = 2
        while q * q <= p and p % q:
            q += 1
        if q * q > p:  # a prime
            n = p << (64 * root)
            x = 1 << 67  # above the root for every prime up to 512
            while True:  # Newton's method from above ends on the integer root
                y = ((root - 1) * x + n // x ** (root - 1)) // root
                if y >= x:
                    break
                x = y
            out[i] = (x >> 32) & 0xFFFFFFFF
            out[i + 1] = x & 0xFFFFFFFF
            i += 2
    return out


# The kernels read the round constants from [0:160] and keep the message
# schedule in [160:320]: one shared scratch, as hashing never interleaves.
_KW = _roots(3, 80, 320)
_IV = _roots(2, 8, 16)
del _roots


def sha512(*parts):
    """The SHA-512 digest of the concatenation of parts (bytes, bytearrays or memoryviews)."""
    h = array.array("I", _IV)  # 8 words as 16 halves, high half first
    block = bytearray(256)  # a block being filled; then the padding, one block or two
    fill = 0
    length = 0
    for data in parts:
        mv = memoryview(data)
        n = len(mv)
        length += n
        i = 0
        while i < n:
            if not fill and n - i >= 128:  # whole blocks straight from the data
                _k.compress(h, _KW, mv[i:i + 128])
                i += 128
                continue
            take = min(128 - fill, n - i)
            block[fill:fill + take] = mv[i:i + take]
            fill += take
            i += take
            if fill == 128:
                _k.compress(h, _KW, block)
                fill = 0
    end = 256 if fill >= 112 else 128
    block[fill] = 0x80
    for i in range(fill + 1, end - 16):
        block[i] = 0
    block[end - 16:end] = (length * 8).to_bytes(16, "big")
    _k.compress(h, _KW, block)
    if end == 256:
        _k.compress(h, _KW, memoryview(block)[128:])
    return struct.pack(">16I", *h)
