"""Salsa20/20 keystream in viper; the state layout is described in upet/salsa.py.

Sums are masked to 32 bits before every rotation and results are stored
through ptr32, so 64-bit words (the Unix port) and 32-bit words (the boards)
give the same bytes. High bits left over in the x registers on 64-bit words
never reach a masked sum's low 32 bits.
"""

import micropython


@micropython.viper
def xor(state, buf, off: int, n: int, pos: int):
    """XOR buf[off:off+n] with the keystream, starting at byte `pos` of the current block.

    `state` is 128 bytes: the 16-word Salsa20 input, then room for one block
    of keystream. The block counter (words 8, 9) is left at the block that
    holds the next keystream byte.
    """
    s = ptr32(state)
    ks = ptr8(state)
    b = ptr8(buf)
    m = uint(0xFFFFFFFF)
    end = off + n
    while off < end:
        x0 = uint(s[0])
        x1 = uint(s[1])
        x2 = uint(s[2])
        x3 = uint(s[3])
        x4 = uint(s[4])
        x5 = uint(s[5])
        x6 = uint(s[6])
        x7 = uint(s[7])
        x8 = uint(s[8])
        x9 = uint(s[9])
        x10 = uint(s[10])
        x11 = uint(s[11])
        x12 = uint(s[12])
        x13 = uint(s[13])
        x14 = uint(s[14])
        x15 = uint(s[15])
        for _ in range(10):
            t = (x0 + x12) & m
            x4 ^= (t << 7) | (t >> 25)
            t = (x4 + x0) & m
            x8 ^= (t << 9) | (t >> 23)
            t = (x8 + x4) & m
            x12 ^= (t << 13) | (t >> 19)
            t = (x12 + x8) & m
            x0 ^= (t << 18) | (t >> 14)
            t = (x5 + x1) & m
            x9 ^= (t << 7) | (t >> 25)
            t = (x9 + x5) & m
            x13 ^= (t << 9) | (t >> 23)
            t = (x13 + x9) & m
            x1 ^= (t << 13) | (t >> 19)
            t = (x1 + x13) & m
            x5 ^= (t << 18) | (t >> 14)
            t = (x10 + x6) & m
            x14 ^= (t << 7) | (t >> 25)
            t = (x14 + x10) & m
            x2 ^= (t << 9) | (t >> 23)
            t = (x2 + x14) & m
            x6 ^= (t << 13) | (t >> 19)
            t = (x6 + x2) & m
            x10 ^= (t << 18) | (t >> 14)
            t = (x15 + x11) & m
            x3 ^= (t << 7) | (t >> 25)
            t = (x3 + x15) & m
            x7 ^= (t << 9) | (t >> 23)
            t = (x7 + x3) & m
            x11 ^= (t << 13) | (t >> 19)
            t = (x11 + x7) & m
            x15 ^= (t << 18) | (t >> 14)
            t = (x0 + x3) & m
            x1 ^= (t << 7) | (t >> 25)
            t = (x1 + x0) & m
            x2 ^= (t << 9) | (t >> 23)
            t = (x2 + x1) & m
            x3 ^= (t << 13) | (t >> 19)
            t = (x3 + x2) & m
            x0 ^= (t << 18) | (t >> 14)
            t = (x5 + x4) & m
            x6 ^= (t << 7) | (t >> 25)
            t = (x6 + x5) & m
            x7 ^= (t << 9) | (t >> 23)
            t = (x7 + x6) & m
            x4 ^= (t << 13) | (t >> 19)
            t = (x4 + x7) & m
            x5 ^= (t << 18) | (t >> 14)
            t = (x10 + x9) & m
            x11 ^= (t << 7) | (t >> 25)
            t = (x11 + x10) & m
            x8 ^= (t << 9) | (t >> 23)
            t = (x8 + x11) & m
            x9 ^= (t << 13) | (t >> 19)
            t = (x9 + x8) & m
            x10 ^= (t << 18) | (t >> 14)
            t = (x15 + x14) & m
            x12 ^= (t << 7) | (t >> 25)
            t = (x12 + x15) & m
            x13 ^= (t << 9) | (t >> 23)
            t = (x13 + x12) & m
            x14 ^= (t << 13) | (t >> 19)
            t = (x14 + x13) & m
            x15 ^= (t << 18) | (t >> 14)
        s[16] = x0 + uint(s[0])
        s[17] = x1 + uint(s[1])
        s[18] = x2 + uint(s[2])
        s[19] = x3 + uint(s[3])
        s[20] = x4 + uint(s[4])
        s[21] = x5 + uint(s[5])
        s[22] = x6 + uint(s[6])
        s[23] = x7 + uint(s[7])
        s[24] = x8 + uint(s[8])
        s[25] = x9 + uint(s[9])
        s[26] = x10 + uint(s[10])
        s[27] = x11 + uint(s[11])
        s[28] = x12 + uint(s[12])
        s[29] = x13 + uint(s[13])
        s[30] = x14 + uint(s[14])
        s[31] = x15 + uint(s[15])
        k = 64 + pos
        stop = 128
        if end - off < 64 - pos:
            stop = k + end - off
        while k < stop:
            b[off] = b[off] ^ ks[k]
            off += 1
            k += 1
        if stop == 128:
            pos = 0
            c = (uint(s[8]) + 1) & m
            s[8] = c
            if c == uint(0):
                s[9] = uint(s[9]) + 1
