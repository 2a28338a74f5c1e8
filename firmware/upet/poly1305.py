"""Poly1305 one-time authenticator (the MAC of libsodium's secretbox).

The block function is a kernel (upet/native/poly1305.py, or its Python
fallback) over a shared state: the accumulator h and the key half r as ten
13-bit limbs, and 5 r. Here: key setup, partial blocks, the final reduction.
"""

import struct

from upet import kernels

_k = kernels.load("poly1305")
_P = (1 << 130) - 5
_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF


class Poly1305:
    """The tag of a message fed in pieces of any size; a key must authenticate one message only."""

    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("Poly1305 needs a 32-byte key")
        r = int.from_bytes(key[0:16], "little") & _CLAMP
        limbs = [(r >> (13 * i)) & 0x1FFF for i in range(10)]
        self._st = bytearray(120)
        struct.pack_into("<20I", self._st, 40, *(limbs + [5 * x for x in limbs]))
        self._s = int.from_bytes(key[16:32], "little")
        self._buf = bytearray(16)  # a partial block waiting for more bytes
        self._n = 0

    def update(self, data, off=0, n=-1):
        """Absorb data[off:off+n] (default: to the end)."""
        end = len(data) if n < 0 else off + n
        if self._n:
            take = min(16 - self._n, end - off)
            self._buf[self._n:self._n + take] = memoryview(data)[off:off + take]
            self._n += take
            off += take
            if self._n < 16:
                return
            _k.blocks(self._st, self._buf, 0, 16, 1)
            self._n = 0
        full = (end - off) & ~15
        _k.blocks(self._st, data, off, full, 1)
        off += full
        if off < end:
            self._buf[0:end - off] = memoryview(data)[off:end]
            self._n = end - off

    def digest(self):
        """The 16-byte tag: a short last block padded with 1 then zeros, h mod p, plus s mod 2^128."""
        if self._n:
            b = self._buf
            b[self._n] = 1
            for i in range(self._n + 1, 16):
                b[i] = 0
            _k.blocks(self._st, b, 0, 16, 0)
            self._n = 0
        w = struct.unpack_from("<10I", self._st)
        h = 0
        for i in range(9, -1, -1):
            h = (h << 13) + w[i]
        return (((h % _P) + self._s) & ((1 << 128) - 1)).to_bytes(16, "little")


def poly1305(key, data):
    """The Poly1305 tag of `data` under the one-time `key`."""
    p = Poly1305(key)
    p.update(data)
    return p.digest()


def equal(a, b):
    """Compare two tags without an early exit, so timing does not reveal where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
