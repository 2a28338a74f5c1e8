"""SHA-512 (FIPS 180-4), needed by Ed25519: the boards' hashlib has no SHA-512.

The compression function is a kernel (`upet.kernels.load("sha512")`): viper
with 64-bit words kept as pairs of 32-bit halves, or plain Python integers.
"""

import array
import struct
from upet import kernels

_k = kernels.load("sha512")


def _roots(root, count):
    """The first 64 bits of the fractional parts of the root-th roots of the
    first `count` primes (the round constants and initial hash value), as
    32-bit halves, high half first. Computed, so no table sits in the code."""
    out = array.array("I")
    p = 1
    while len(out) < 2 * count:
        p += 1
        q = 2
        while q * q <= p and p % q:
            q += 1
        if q * q > p:
            n = p << (64 * root)
            x = 1 << 67  # above the root for every prime up to 512
            while True:  # Newton's method from above ends on the integer root
                y = ((root - 1) * x + n // x ** (root - 1)) // root
                if y >= x:
                    break
                x = y
            out.append((x >> 32) & 0xFFFFFFFF)
            out.append(x & 0xFFFFFFFF)
    return out


# The kernels read the round constants from [0:160] and keep the message
# schedule in [160:320]: one shared scratch, as hashing never interleaves.
_KW = _roots(3, 80)
_KW.extend(array.array("I", bytes(640)))
_IV = _roots(2, 8)


class SHA512:
    """Streaming SHA-512: update() any number of times, then digest() once or more."""

    def __init__(self, data=b""):
        self._h = array.array("I", _IV)  # 8 words as 16 halves, high half first
        self._buf = bytearray(128)
        self._fill = 0
        self._length = 0
        if data:
            self.update(data)

    def update(self, data):
        mv = memoryview(data)
        n = len(mv)
        self._length += n
        i = 0
        if self._fill:
            take = min(128 - self._fill, n)
            self._buf[self._fill:self._fill + take] = mv[:take]
            self._fill += take
            i = take
            if self._fill < 128:
                return
            _k.compress(self._h, _KW, self._buf)
            self._fill = 0
        while n - i >= 128:
            _k.compress(self._h, _KW, mv[i:i + 128])
            i += 128
        if i < n:
            self._buf[:n - i] = mv[i:]
            self._fill = n - i

    def digest(self):
        h = array.array("I", self._h)
        fill = self._fill
        pad = bytearray(256 if fill >= 112 else 128)
        pad[:fill] = self._buf[:fill]
        pad[fill] = 0x80
        pad[-16:] = (self._length * 8).to_bytes(16, "big")
        _k.compress(h, _KW, pad)
        if len(pad) == 256:
            _k.compress(h, _KW, memoryview(pad)[128:])
        return struct.pack(">16I", *h)


def sha512(data):
    return SHA512(data).digest()
