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

# The round constants and the initial hash value: the first 64 bits of the
# fractional parts of the cube roots of the first 80 primes and of the square
# roots of the first 8, as 32-bit halves, high half first. Computed here, at
# the top level, whose code leaves the heap once the module is loaded. The
# kernel reads the constants from _KW[0:160] and keeps the message schedule in
# _KW[160:320]: one shared scratch, as hashing never interleaves.
_KW = array.array("I", bytes(1280))
_IV = array.array("I", bytes(64))
for _root, _out, _count in ((3, _KW, 160), (2, _IV, 16)):
    _p = 1
    _i = 0
    while _i < _count:
        _p += 1
        _q = 2
        while _q * _q <= _p and _p % _q:
            _q += 1
        if _q * _q > _p:  # a prime
            _n = _p << (64 * _root)
            _x = 1 << 67  # above the root for every prime up to 512
            while True:  # Newton's method from above ends on the integer root
                _y = ((_root - 1) * _x + _n // _x ** (_root - 1)) // _root
                if _y >= _x:
                    break
                _x = _y
            _out[_i] = (_x >> 32) & 0xFFFFFFFF
            _out[_i + 1] = _x & 0xFFFFFFFF
            _i += 2
del _root, _out, _count, _p, _i, _q, _n, _x, _y


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
