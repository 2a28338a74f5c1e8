"""The kernels of upet.box in viper: the Salsa20/20 keystream, Poly1305 blocks
and BLAKE2b compression. The layouts of their states are described in upet.box.

No result depends on the machine word size (64 bits on the Unix port, 32 on
the boards). Salsa20 masks sums to 32 bits before every rotation and stores
through ptr32; high bits left over in its x registers on 64-bit words never
reach a masked sum's low 32 bits. Poly1305 works on ten 13-bit limbs, so every
product and sum fits 32 bits (bounds at `poly1305_blocks`). BLAKE2b holds
64-bit words as (low, high) 32-bit halves, masked to 32 bits before every
right shift and stored through ptr32.
"""

import micropython


@micropython.viper
def salsa20_xor(state, buf, off: int, n: int, pos: int):
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


@micropython.viper
def poly1305_blocks(st, data, off: int, n: int, hibit: int):
    """Absorb the n // 16 blocks of data[off:off+n], each with 2^128 added when `hibit` is 1.

    `st` holds 30 little-endian 32-bit words: h (10 limbs of 13 bits, not
    fully reduced), r (10 limbs), 5 r (10 limbs).

    Bounds: limbs h <= 2^13 after the first carry, r < 2^13, s = 5 r < 2^15.4
    (and r9 < 2^7 from the clamp), so each column of the product is below
    2^13 * (2^13 + 8 * 5 * 2^13 + 5 * 2^7) < 2^31.4, and carries add under 2^19:
    no sum reaches 2^32 on a 32-bit board, and the same bytes come out on 64 bits.
    """
    p = ptr32(st)
    b = ptr8(data)
    mk = uint(0x1FFF)
    top = uint(hibit) << 11
    h0 = uint(p[0])
    h1 = uint(p[1])
    h2 = uint(p[2])
    h3 = uint(p[3])
    h4 = uint(p[4])
    h5 = uint(p[5])
    h6 = uint(p[6])
    h7 = uint(p[7])
    h8 = uint(p[8])
    h9 = uint(p[9])
    r0 = uint(p[10])
    r1 = uint(p[11])
    r2 = uint(p[12])
    r3 = uint(p[13])
    r4 = uint(p[14])
    r5 = uint(p[15])
    r6 = uint(p[16])
    r7 = uint(p[17])
    r8 = uint(p[18])
    r9 = uint(p[19])
    s1 = uint(p[21])
    s2 = uint(p[22])
    s3 = uint(p[23])
    s4 = uint(p[24])
    s5 = uint(p[25])
    s6 = uint(p[26])
    s7 = uint(p[27])
    s8 = uint(p[28])
    s9 = uint(p[29])
    end = off + n - 16
    while off <= end:
        w0 = uint(b[off + 0]) | (uint(b[off + 1]) << 8) | (uint(b[off + 2]) << 16) | (uint(b[off + 3]) << 24)
        w1 = uint(b[off + 4]) | (uint(b[off + 5]) << 8) | (uint(b[off + 6]) << 16) | (uint(b[off + 7]) << 24)
        w2 = uint(b[off + 8]) | (uint(b[off + 9]) << 8) | (uint(b[off + 10]) << 16) | (uint(b[off + 11]) << 24)
        w3 = uint(b[off + 12]) | (uint(b[off + 13]) << 8) | (uint(b[off + 14]) << 16) | (uint(b[off + 15]) << 24)
        h0 += w0 & mk
        h1 += (w0 >> 13) & mk
        h2 += ((w0 >> 26) | (w1 << 6)) & mk
        h3 += (w1 >> 7) & mk
        h4 += ((w1 >> 20) | (w2 << 12)) & mk
        h5 += (w2 >> 1) & mk
        h6 += (w2 >> 14) & mk
        h7 += ((w2 >> 27) | (w3 << 5)) & mk
        h8 += (w3 >> 8) & mk
        h9 += (w3 >> 21) | top
        # carry, so every limb is at most 2^13 before the products
        h1 += h0 >> 13
        h0 &= mk
        h2 += h1 >> 13
        h1 &= mk
        h3 += h2 >> 13
        h2 &= mk
        h4 += h3 >> 13
        h3 &= mk
        h5 += h4 >> 13
        h4 &= mk
        h6 += h5 >> 13
        h5 &= mk
        h7 += h6 >> 13
        h6 &= mk
        h8 += h7 >> 13
        h7 &= mk
        h9 += h8 >> 13
        h8 &= mk
        h0 += 5 * (h9 >> 13)
        h9 &= mk
        h1 += h0 >> 13
        h0 &= mk
        # h * r; 2^130 = 5 (mod p) folds the limbs beyond the tenth back with s = 5 r
        d0 = h0 * r0 + h1 * s9 + h2 * s8 + h3 * s7 + h4 * s6 + h5 * s5 + h6 * s4 + h7 * s3 + h8 * s2 + h9 * s1
        d1 = h0 * r1 + h1 * r0 + h2 * s9 + h3 * s8 + h4 * s7 + h5 * s6 + h6 * s5 + h7 * s4 + h8 * s3 + h9 * s2
        d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s9 + h4 * s8 + h5 * s7 + h6 * s6 + h7 * s5 + h8 * s4 + h9 * s3
        d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s9 + h5 * s8 + h6 * s7 + h7 * s6 + h8 * s5 + h9 * s4
        d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0 + h5 * s9 + h6 * s8 + h7 * s7 + h8 * s6 + h9 * s5
        d5 = h0 * r5 + h1 * r4 + h2 * r3 + h3 * r2 + h4 * r1 + h5 * r0 + h6 * s9 + h7 * s8 + h8 * s7 + h9 * s6
        d6 = h0 * r6 + h1 * r5 + h2 * r4 + h3 * r3 + h4 * r2 + h5 * r1 + h6 * r0 + h7 * s9 + h8 * s8 + h9 * s7
        d7 = h0 * r7 + h1 * r6 + h2 * r5 + h3 * r4 + h4 * r3 + h5 * r2 + h6 * r1 + h7 * r0 + h8 * s9 + h9 * s8
        d8 = h0 * r8 + h1 * r7 + h2 * r6 + h3 * r5 + h4 * r4 + h5 * r3 + h6 * r2 + h7 * r1 + h8 * r0 + h9 * s9
        d9 = h0 * r9 + h1 * r8 + h2 * r7 + h3 * r6 + h4 * r5 + h5 * r4 + h6 * r3 + h7 * r2 + h8 * r1 + h9 * r0
        # carry back to 13-bit limbs
        h0 = d0 & mk
        d1 += d0 >> 13
        h1 = d1 & mk
        d2 += d1 >> 13
        h2 = d2 & mk
        d3 += d2 >> 13
        h3 = d3 & mk
        d4 += d3 >> 13
        h4 = d4 & mk
        d5 += d4 >> 13
        h5 = d5 & mk
        d6 += d5 >> 13
        h6 = d6 & mk
        d7 += d6 >> 13
        h7 = d7 & mk
        d8 += d7 >> 13
        h8 = d8 & mk
        d9 += d8 >> 13
        h9 = d9 & mk
        h0 += 5 * (d9 >> 13)
        h1 += h0 >> 13
        h0 &= mk
        off += 16
    p[0] = h0
    p[1] = h1
    p[2] = h2
    p[3] = h3
    p[4] = h4
    p[5] = h5
    p[6] = h6
    p[7] = h7
    p[8] = h8
    p[9] = h9


# BLAKE2b's message word order of the 12 rounds (rounds 10, 11 repeat 0, 1)
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
def blake2b_compress(state, block, t: int, last: int):
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
