"""Poly1305 blocks on Python big integers: the same function as upet/native/poly1305.py.

After each multiply the value is only folded (2^130 = 5 mod p: low 130 bits
plus 5 times the rest), which keeps it below 2^131.
"""

import struct

_M130 = (1 << 130) - 1
_HIBIT = 1 << 128


def _int(limbs):
    x = 0
    for i in range(9, -1, -1):
        x = (x << 13) + limbs[i]
    return x


def blocks(st, data, off, n, hibit):
    """Absorb the n // 16 blocks of data[off:off+n], each with 2^128 added when `hibit` is 1.

    `st` holds 30 little-endian 32-bit words: h (10 limbs of 13 bits, not
    fully reduced), r (10 limbs), 5 r (10 limbs).
    """
    w = struct.unpack_from("<20I", st)
    h = _int(w[0:10])
    r = _int(w[10:20])
    top = _HIBIT if hibit else 0
    mv = memoryview(data)
    end = off + n - 16
    while off <= end:
        h = (h + int.from_bytes(mv[off:off + 16], "little") + top) * r
        h = (h & _M130) + 5 * (h >> 130)
        off += 16
    struct.pack_into("<10I", st, 0, *[(h >> (13 * i)) & 0x1FFF for i in range(9)] + [h >> 117])
