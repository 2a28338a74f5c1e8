"""Poly1305 blocks in viper: ten 13-bit limbs, so every product and sum fits 32 bits.

Bounds: limbs h <= 2^13 after the first carry, r < 2^13, s = 5 r < 2^15.4
(and r9 < 2^7 from the clamp), so each column of the product is below
2^13 * (2^13 + 8 * 5 * 2^13 + 5 * 2^7) < 2^31.4, and carries add under 2^19:
no sum reaches 2^32 on a 32-bit board, and the same bytes come out on 64 bits.
"""

import micropython


@micropython.viper
def blocks(st, data, off: int, n: int, hibit: int):
    """Absorb the n // 16 blocks of data[off:off+n], each with 2^128 added when `hibit` is 1.

    `st` holds 30 little-endian 32-bit words: h (10 limbs of 13 bits, not
    fully reduced), r (10 limbs), 5 r (10 limbs).
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
