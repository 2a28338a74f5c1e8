"""Salsa20/20 keystream in plain Python: the same function as upet/native/salsa.py."""

import struct

M = 0xFFFFFFFF


def _block(j):
    """The 20 rounds of Salsa20 on the 16 input words `j`, before the final addition."""
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = j
    for _ in range(10):
        t = (x0 + x12) & M
        x4 ^= ((t << 7) & M) | (t >> 25)
        t = (x4 + x0) & M
        x8 ^= ((t << 9) & M) | (t >> 23)
        t = (x8 + x4) & M
        x12 ^= ((t << 13) & M) | (t >> 19)
        t = (x12 + x8) & M
        x0 ^= ((t << 18) & M) | (t >> 14)
        t = (x5 + x1) & M
        x9 ^= ((t << 7) & M) | (t >> 25)
        t = (x9 + x5) & M
        x13 ^= ((t << 9) & M) | (t >> 23)
        t = (x13 + x9) & M
        x1 ^= ((t << 13) & M) | (t >> 19)
        t = (x1 + x13) & M
        x5 ^= ((t << 18) & M) | (t >> 14)
        t = (x10 + x6) & M
        x14 ^= ((t << 7) & M) | (t >> 25)
        t = (x14 + x10) & M
        x2 ^= ((t << 9) & M) | (t >> 23)
        t = (x2 + x14) & M
        x6 ^= ((t << 13) & M) | (t >> 19)
        t = (x6 + x2) & M
        x10 ^= ((t << 18) & M) | (t >> 14)
        t = (x15 + x11) & M
        x3 ^= ((t << 7) & M) | (t >> 25)
        t = (x3 + x15) & M
        x7 ^= ((t << 9) & M) | (t >> 23)
        t = (x7 + x3) & M
        x11 ^= ((t << 13) & M) | (t >> 19)
        t = (x11 + x7) & M
        x15 ^= ((t << 18) & M) | (t >> 14)
        t = (x0 + x3) & M
        x1 ^= ((t << 7) & M) | (t >> 25)
        t = (x1 + x0) & M
        x2 ^= ((t << 9) & M) | (t >> 23)
        t = (x2 + x1) & M
        x3 ^= ((t << 13) & M) | (t >> 19)
        t = (x3 + x2) & M
        x0 ^= ((t << 18) & M) | (t >> 14)
        t = (x5 + x4) & M
        x6 ^= ((t << 7) & M) | (t >> 25)
        t = (x6 + x5) & M
        x7 ^= ((t << 9) & M) | (t >> 23)
        t = (x7 + x6) & M
        x4 ^= ((t << 13) & M) | (t >> 19)
        t = (x4 + x7) & M
        x5 ^= ((t << 18) & M) | (t >> 14)
        t = (x10 + x9) & M
        x11 ^= ((t << 7) & M) | (t >> 25)
        t = (x11 + x10) & M
        x8 ^= ((t << 9) & M) | (t >> 23)
        t = (x8 + x11) & M
        x9 ^= ((t << 13) & M) | (t >> 19)
        t = (x9 + x8) & M
        x10 ^= ((t << 18) & M) | (t >> 14)
        t = (x15 + x14) & M
        x12 ^= ((t << 7) & M) | (t >> 25)
        t = (x12 + x15) & M
        x13 ^= ((t << 9) & M) | (t >> 23)
        t = (x13 + x12) & M
        x14 ^= ((t << 13) & M) | (t >> 19)
        t = (x14 + x13) & M
        x15 ^= ((t << 18) & M) | (t >> 14)
    return (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)


def xor(state, buf, off, n, pos):
    """XOR buf[off:off+n] with the keystream, starting at byte `pos` of the current block.

    `state` is 128 bytes: the 16-word Salsa20 input, then room for one block
    of keystream. The block counter (words 8, 9) is left at the block that
    holds the next keystream byte.
    """
    end = off + n
    while off < end:
        j = struct.unpack_from("<16I", state, 0)
        x = _block(j)
        struct.pack_into("<16I", state, 64, *[(x[i] + j[i]) & M for i in range(16)])
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
