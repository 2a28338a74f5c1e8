"""BLAKE2b compression in viper, on 64-bit words held as (low, high) 32-bit halves.

Halves are masked to 32 bits before every right shift and stored through
ptr32, so the result does not depend on the machine word size.
"""

import micropython

# message word order of the 12 rounds (rounds 10, 11 repeat 0, 1)
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
# word indices a, b, c, d of the eight mixes of a round: columns, then diagonals
_G = (b"\x00\x04\x08\x0c\x01\x05\x09\x0d\x02\x06\x0a\x0e\x03\x07\x0b\x0f"
      b"\x00\x05\x0a\x0f\x01\x06\x0b\x0c\x02\x07\x08\x0d\x03\x04\x09\x0e")


@micropython.viper
def compress(state, block, t: int, last: int):
    """Mix the 128-byte `block` into the chaining value; `t` = bytes hashed so far (< 2^30).

    `state` is 192 bytes: the chaining value h (8 words), then the work
    vector v (16 words), which the caller fills with h and the IV.
    """
    h = ptr32(state)
    mw = ptr32(block)
    sg = ptr8(_SIGMA)
    gi = ptr8(_G)
    mask = uint(0xFFFFFFFF)
    v = 16  # v[i] is at h[v + 2i] (low half) and h[v + 2i + 1] (high half)
    h[v + 24] = uint(h[v + 24]) ^ uint(t)
    if last:
        h[v + 28] = uint(h[v + 28]) ^ mask
        h[v + 29] = uint(h[v + 29]) ^ mask
    for r in range(12):
        s = (r % 10) * 16
        for i in range(8):
            a = v + 2 * gi[4 * i]
            b = v + 2 * gi[4 * i + 1]
            c = v + 2 * gi[4 * i + 2]
            d = v + 2 * gi[4 * i + 3]
            x = 2 * sg[s + 2 * i]
            y = 2 * sg[s + 2 * i + 1]
            al = uint(h[a])
            ah = uint(h[a + 1])
            bl = uint(h[b])
            bh = uint(h[b + 1])
            cl = uint(h[c])
            ch = uint(h[c + 1])
            dl = uint(h[d])
            dh = uint(h[d + 1])
            # a += b + m[x]
            lo = (al + bl) & mask
            ah = ah + bh + uint(lo < al)
            al = (lo + uint(mw[x])) & mask
            ah = (ah + uint(mw[x + 1]) + uint(al < lo)) & mask
            # d = (d ^ a) >>> 32
            lo = dl ^ al
            dl = dh ^ ah
            dh = lo
            # c += d
            lo = (cl + dl) & mask
            ch = (ch + dh + uint(lo < cl)) & mask
            cl = lo
            # b = (b ^ c) >>> 24
            lo = bl ^ cl
            hi = bh ^ ch
            bl = ((lo >> 24) | (hi << 8)) & mask
            bh = ((hi >> 24) | (lo << 8)) & mask
            # a += b + m[y]
            lo = (al + bl) & mask
            ah = ah + bh + uint(lo < al)
            al = (lo + uint(mw[y])) & mask
            ah = (ah + uint(mw[y + 1]) + uint(al < lo)) & mask
            # d = (d ^ a) >>> 16
            lo = dl ^ al
            hi = dh ^ ah
            dl = ((lo >> 16) | (hi << 16)) & mask
            dh = ((hi >> 16) | (lo << 16)) & mask
            # c += d
            lo = (cl + dl) & mask
            ch = (ch + dh + uint(lo < cl)) & mask
            cl = lo
            # b = (b ^ c) >>> 63, i.e. <<< 1
            lo = bl ^ cl
            hi = bh ^ ch
            bl = ((lo << 1) | (hi >> 31)) & mask
            bh = ((hi << 1) | (lo >> 31)) & mask
            h[a] = al
            h[a + 1] = ah
            h[b] = bl
            h[b + 1] = bh
            h[c] = cl
            h[c + 1] = ch
            h[d] = dl
            h[d + 1] = dh
    for i in range(16):
        h[i] = uint(h[i]) ^ uint(h[v + i]) ^ uint(h[v + 16 + i])
