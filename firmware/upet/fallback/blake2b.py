"""BLAKE2b compression in plain Python: the same function as upet/native/blake2b.py."""

import struct

_M = 0xFFFFFFFFFFFFFFFF
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


def compress(state, block, t, last):
    """Mix the 128-byte `block` into the chaining value; `t` = bytes hashed so far (< 2^30).

    `state` is 192 bytes: the chaining value h (8 words), then the work
    vector v (16 words), which the caller fills with h and the IV.
    """
    m = struct.unpack("<16Q", block)
    v = list(struct.unpack_from("<16Q", state, 64))
    v[12] ^= t
    if last:
        v[14] ^= _M
    for r in range(12):
        s = (r % 10) * 16
        for i in range(8):
            a, b, c, d = _G[4 * i], _G[4 * i + 1], _G[4 * i + 2], _G[4 * i + 3]
            va = (v[a] + v[b] + m[_SIGMA[s + 2 * i]]) & _M
            vd = v[d] ^ va
            vd = (vd >> 32) | ((vd << 32) & _M)
            vc = (v[c] + vd) & _M
            vb = v[b] ^ vc
            vb = (vb >> 24) | ((vb << 40) & _M)
            va = (va + vb + m[_SIGMA[s + 2 * i + 1]]) & _M
            vd ^= va
            vd = (vd >> 16) | ((vd << 48) & _M)
            vc = (vc + vd) & _M
            vb ^= vc
            vb = (vb >> 63) | ((vb << 1) & _M)
            v[a], v[b], v[c], v[d] = va, vb, vc, vd
    h = struct.unpack_from("<8Q", state, 0)
    struct.pack_into("<8Q", state, 0, *[h[i] ^ v[i] ^ v[i + 8] for i in range(8)])
