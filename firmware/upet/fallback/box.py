"""The kernels of upet.box in plain Python: the same functions as upet/native/box.py.

Poly1305 runs on big integers: after each multiply the value is only folded
(2^130 = 5 mod p: low 130 bits plus 5 times the rest), which keeps it below 2^131.
"""

import struct

_M32 = 0xFFFFFFFF


def _salsa20(j):
    """The 20 rounds of Salsa20 on the 16 input words `j`, before the final addition."""
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = j
    for _ in range(10):
        t = (x0 + x12) & _M32
        x4 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x4 + x0) & _M32
        x8 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x8 + x4) & _M32
        x12 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x12 + x8) & _M32
        x0 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x5 + x1) & _M32
        x9 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x9 + x5) & _M32
        x13 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x13 + x9) & _M32
        x1 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x1 + x13) & _M32
        x5 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x10 + x6) & _M32
        x14 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x14 + x10) & _M32
        x2 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x2 + x14) & _M32
        x6 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x6 + x2) & _M32
        x10 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x15 + x11) & _M32
        x3 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x3 + x15) & _M32
        x7 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x7 + x3) & _M32
        x11 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x11 + x7) & _M32
        x15 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x0 + x3) & _M32
        x1 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x1 + x0) & _M32
        x2 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x2 + x1) & _M32
        x3 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x3 + x2) & _M32
        x0 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x5 + x4) & _M32
        x6 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x6 + x5) & _M32
        x7 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x7 + x6) & _M32
        x4 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x4 + x7) & _M32
        x5 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x10 + x9) & _M32
        x11 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x11 + x10) & _M32
        x8 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x8 + x11) & _M32
        x9 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x9 + x8) & _M32
        x10 ^= ((t << 18) & _M32) | (t >> 14)
        t = (x15 + x14) & _M32
        x12 ^= ((t << 7) & _M32) | (t >> 25)
        t = (x12 + x15) & _M32
        x13 ^= ((t << 9) & _M32) | (t >> 23)
        t = (x13 + x12) & _M32
        x14 ^= ((t << 13) & _M32) | (t >> 19)
        t = (x14 + x13) & _M32
        x15 ^= ((t << 18) & _M32) | (t >> 14)
    return (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)


def salsa20_xor(state, buf, off, n, pos):
    """XOR buf[off:off+n] with the keystream, starting at byte `pos` of the current block.

    `state` is 128 bytes: the 16-word Salsa20 input, then room for one block
    of keystream. The block counter (words 8, 9) is left at the block that
    holds the next keystream byte.
    """
    end = off + n
    while off < end:
        j = struct.unpack_from("<16I", state, 0)
        x = _salsa20(j)
        struct.pack_into("<16I", state, 64, *[(x[i] + j[i]) & _M32 for i in range(16)])
        k = 64 + pos
        stop = min(128, k + end - off)
        while k < stop:
            buf[off] ^= state[k]
            off += 1
            k += 1
        if stop == 128:
            pos = 0
            c = (j[8] | j[9] << 32) + 1
            struct.pack_into("<Q", state, 32, c & 0xFFFFFFFFFFFFFFFF)


_M130 = (1 << 130) - 1
_HIBIT = 1 << 128


def _int(limbs):
    x = 0
    for i in range(9, -1, -1):
        x = (x << 13) + limbs[i]
    return x


def poly1305_blocks(st, data, off, n, hibit):
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


_M64 = 0xFFFFFFFFFFFFFFFF
# BLAKE2b's message word order and mixes, as in upet/native/box.py
_SIGMA = (b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
          b"\x0e\x0a\x04\x08\x09\x0f\x0d\x06\x01\x0c\x00\x02\x0b\x07\x05\x03"
          b"\x0b\x08\x0c\x00\x05\x02\x0f\x0d\x0a\x0e\x03\x06\x07\x01\x09\x04"
          b"\x07\x09\x03\x01\x0d\x0c\x0b\x0e\x02\x06\x05\x0a\x04\x00\x0f\x08"
          b"\x09\x00\x05\x07\x02\x04\x0a\x0f\x0e\x01\x0b\x0c\x06\x08\x03\x0d"
          b"\x02\x0c\x06\x0a\x00\x0b\x08\x03\x04\x0d\x07\x05\x0f\x0e\x01\x09"
          b"\x0c\x05\x01\x0f\x0e\x0d\x04\x0a\x00\x07\x06\x03\x09\x02\x08\x0b"
          b"\x0d\x0b\x07\x0e\x0c\x01\x03\x09\x05\x00\x0f\x04\x08\x06\x02\x0a"
          b"\x06\x0f\x0e\x09\x0b\x03\x00\x08\x0c\x02\x0d\x07\x01\x04\x0a\x05"
          b"\x0a\x02\x08\x04\x07\x06\x01\x05\x0f\x0b\x09\x0e\x03\x0c\x0d\x00")
_G = (b"\x00\x04\x08\x0c\x01\x05\x09\x0d\x02\x06\x0a\x0e\x03\x07\x0b\x0f"
      b"\x00\x05\x0a\x0f\x01\x06\x0b\x0c\x02\x07\x08\x0d\x03\x04\x09\x0e")


def blake2b_compress(state, block, t, last):
    """Mix the 128-byte `block` into the chaining value; `t` = bytes hashed so far (< 2^30).

    `state` is 192 bytes: the chaining value h (8 words), then the work
    vector v (16 words), which the caller fills with h and the IV.
    """
    m = struct.unpack("<16Q", block)
    v = list(struct.unpack_from("<16Q", state, 64))
    v[12] ^= t
    if last:
        v[14] ^= _M64
    for r in range(12):
        s = (r % 10) * 16
        for i in range(8):
            a, b, c, d = _G[4 * i], _G[4 * i + 1], _G[4 * i + 2], _G[4 * i + 3]
            va = (v[a] + v[b] + m[_SIGMA[s + 2 * i]]) & _M64
            vd = v[d] ^ va
            vd = (vd >> 32) | ((vd << 32) & _M64)
            vc = (v[c] + vd) & _M64
            vb = v[b] ^ vc
            vb = (vb >> 24) | ((vb << 40) & _M64)
            va = (va + vb + m[_SIGMA[s + 2 * i + 1]]) & _M64
            vd ^= va
            vd = (vd >> 16) | ((vd << 48) & _M64)
            vc = (vc + vd) & _M64
            vb ^= vc
            vb = (vb >> 63) | ((vb << 1) & _M64)
            v[a], v[b], v[c], v[d] = va, vb, vc, vd
    h = struct.unpack_from("<8Q", state, 0)
    struct.pack_into("<8Q", state, 0, *[h[i] ^ v[i] ^ v[i + 8] for i in range(8)])
