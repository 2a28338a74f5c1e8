"""The kernels of X25519 and Ed25519 in viper: arithmetic mod p = 2^255 - 19,
run as a small register machine, and SHA-512's compression function.

A workspace (`new`) holds field elements in slots of 20 limbs of 13 bits,
one per 16-bit word; slots 0-2 are scratch. `run` executes a program of
4-byte ops (code, d, a, b) in a single call, so a ladder step or a point
formula pays for one Python call, not one per field operation:

  0 MUL   d = a * b          4 MULK  d = a * 121666
  1 SQR   d = a^2            5 SQRN  d = a^(2^b), b squarings
  2 ADD   d = a + b          6 COPY  d = a
  3 SUB   d = a - b

Every op leaves limbs 0-18 at most 2^13 and limb 19 below 2^8 (values below
about 2^255), so a column of 20 products of limbs stays below 2^31: every
intermediate is non-negative and fits 31 bits, and the results are the same
with the Unix port's 64-bit machine words and the boards' 32-bit ones.
Columns are unrolled because viper loads with constant indices are single
instructions.

`sha512_compress` keeps 64-bit words as pairs of 32-bit halves (high, low).
Every half is a uint masked to 32 bits after any shift left or addition, so
its result does not depend on the word size either.
"""

import array
import micropython


def new(nslots):
    return array.array("H", bytes(40 * nslots))


@micropython.viper
def put(ws: ptr16, slot: int, data: ptr8):
    """Load a 32-byte little-endian field element (bit 255 ignored) into slot."""
    d = ptr16(int(ws) + slot * 40)
    i = 0
    pos = 0
    while i < 19:
        k = pos >> 3
        d[i] = ((data[k] | (data[k + 1] << 8) | (data[k + 2] << 16)) >> (pos & 7)) & 0x1FFF
        pos += 13
        i += 1
    d[19] = ((data[30] | (data[31] << 8)) >> 7) & 0xFF


@micropython.viper
def load(ws: ptr16, slot: int, table: ptr8, index: int):
    """Load the three field elements at table[96 * index:] into slot, slot+1, slot+2."""
    d = ptr16(int(ws) + slot * 40)
    src = ptr8(int(table) + 96 * index)
    e = 0
    while e < 3:
        i = 0
        pos = 0
        while i < 19:
            k = pos >> 3
            d[i] = ((src[k] | (src[k + 1] << 8) | (src[k + 2] << 16)) >> (pos & 7)) & 0x1FFF
            pos += 13
            i += 1
        d[19] = ((src[30] | (src[31] << 8)) >> 7) & 0xFF
        d = ptr16(int(d) + 40)
        src = ptr8(int(src) + 32)
        e += 1


@micropython.viper
def get(ws: ptr16, slot: int):
    """The canonical 32-byte encoding of the element in slot (fully reduced mod p)."""
    buf = bytearray(32)
    out = ptr8(buf)
    s = ptr16(int(ws) + slot * 40)
    t = ws  # scratch slot 0
    i = 0
    while i < 20:
        t[i] = s[i]
        i += 1
    # two carry passes bring the value below 2^255
    r = 0
    while r < 2:
        c = 0
        i = 0
        while i < 19:
            v = t[i] + c
            t[i] = v & 0x1FFF
            c = v >> 13
            i += 1
        v = t[19] + c
        t[19] = v & 0xFF
        t[0] += 19 * (v >> 8)
        r += 1
    # subtract p when value + 19 reaches 2^255
    c = 19
    i = 0
    while i < 19:
        c = (t[i] + c) >> 13
        i += 1
    if (t[19] + c) >> 8:
        c = 19
        i = 0
        while i < 19:
            v = t[i] + c
            t[i] = v & 0x1FFF
            c = v >> 13
            i += 1
        t[19] = (t[19] + c) & 0xFF
    acc = 0
    bits = 0
    k = 0
    i = 0
    while i < 20:
        acc |= t[i] << bits
        bits += 13
        while bits >= 8 and k < 32:
            out[k] = acc & 0xFF
            acc >>= 8
            bits -= 8
            k += 1
        i += 1
    return bytes(buf)


@micropython.viper
def run(a: ptr16, b: ptr16, c: int):
    """Execute the c ops of program b (bytes) on workspace a.

    Viper keeps only its first few locals in registers, so the parameters
    are reused for the hottest values: operand pointers and the column sum."""
    base = int(a)
    pc = int(b)
    end = pc + (c << 2)
    t = ptr16(base)
    while pc < end:
        ins = ptr8(pc)
        pc += 4
        op = ins[0]
        d = ptr16(base + ins[1] * 40)
        a = ptr16(base + ins[2] * 40)
        b = ptr16(base + ins[3] * 40)
        if op <= 1 or op == 5:
            reps = 1
            if op == 5:
                reps = ins[3]
            while reps > 0:
                if op == 0:
                    c = (a[1] * b[19] + a[2] * b[18] + a[3] * b[17] + a[4] * b[16] + a[5] * b[15] +
                         a[6] * b[14] + a[7] * b[13] + a[8] * b[12] + a[9] * b[11] + a[10] * b[10] +
                         a[11] * b[9] + a[12] * b[8] + a[13] * b[7] + a[14] * b[6] + a[15] * b[5] +
                         a[16] * b[4] + a[17] * b[3] + a[18] * b[2] + a[19] * b[1])
                    t[20] = c & 0x1FFF
                    c = ((c >> 13) + a[2] * b[19] + a[3] * b[18] + a[4] * b[17] + a[5] * b[16] +
                         a[6] * b[15] + a[7] * b[14] + a[8] * b[13] + a[9] * b[12] + a[10] * b[11] +
                         a[11] * b[10] + a[12] * b[9] + a[13] * b[8] + a[14] * b[7] + a[15] * b[6] +
                         a[16] * b[5] + a[17] * b[4] + a[18] * b[3] + a[19] * b[2])
                    t[21] = c & 0x1FFF
                    c = ((c >> 13) + a[3] * b[19] + a[4] * b[18] + a[5] * b[17] + a[6] * b[16] +
                         a[7] * b[15] + a[8] * b[14] + a[9] * b[13] + a[10] * b[12] + a[11] * b[11] +
                         a[12] * b[10] + a[13] * b[9] + a[14] * b[8] + a[15] * b[7] + a[16] * b[6] +
                         a[17] * b[5] + a[18] * b[4] + a[19] * b[3])
                    t[22] = c & 0x1FFF
                    c = ((c >> 13) + a[4] * b[19] + a[5] * b[18] + a[6] * b[17] + a[7] * b[16] +
                         a[8] * b[15] + a[9] * b[14] + a[10] * b[13] + a[11] * b[12] + a[12] * b[11] +
                         a[13] * b[10] + a[14] * b[9] + a[15] * b[8] + a[16] * b[7] + a[17] * b[6] +
                         a[18] * b[5] + a[19] * b[4])
                    t[23] = c & 0x1FFF
                    c = ((c >> 13) + a[5] * b[19] + a[6] * b[18] + a[7] * b[17] + a[8] * b[16] +
                         a[9] * b[15] + a[10] * b[14] + a[11] * b[13] + a[12] * b[12] + a[13] * b[11] +
                         a[14] * b[10] + a[15] * b[9] + a[16] * b[8] + a[17] * b[7] + a[18] * b[6] +
                         a[19] * b[5])
                    t[24] = c & 0x1FFF
                    c = ((c >> 13) + a[6] * b[19] + a[7] * b[18] + a[8] * b[17] + a[9] * b[16] +
                         a[10] * b[15] + a[11] * b[14] + a[12] * b[13] + a[13] * b[12] + a[14] * b[11] +
                         a[15] * b[10] + a[16] * b[9] + a[17] * b[8] + a[18] * b[7] + a[19] * b[6])
                    t[25] = c & 0x1FFF
                    c = ((c >> 13) + a[7] * b[19] + a[8] * b[18] + a[9] * b[17] + a[10] * b[16] +
                         a[11] * b[15] + a[12] * b[14] + a[13] * b[13] + a[14] * b[12] + a[15] * b[11] +
                         a[16] * b[10] + a[17] * b[9] + a[18] * b[8] + a[19] * b[7])
                    t[26] = c & 0x1FFF
                    c = ((c >> 13) + a[8] * b[19] + a[9] * b[18] + a[10] * b[17] + a[11] * b[16] +
                         a[12] * b[15] + a[13] * b[14] + a[14] * b[13] + a[15] * b[12] + a[16] * b[11] +
                         a[17] * b[10] + a[18] * b[9] + a[19] * b[8])
                    t[27] = c & 0x1FFF
                    c = ((c >> 13) + a[9] * b[19] + a[10] * b[18] + a[11] * b[17] + a[12] * b[16] +
                         a[13] * b[15] + a[14] * b[14] + a[15] * b[13] + a[16] * b[12] + a[17] * b[11] +
                         a[18] * b[10] + a[19] * b[9])
                    t[28] = c & 0x1FFF
                    c = ((c >> 13) + a[10] * b[19] + a[11] * b[18] + a[12] * b[17] + a[13] * b[16] +
                         a[14] * b[15] + a[15] * b[14] + a[16] * b[13] + a[17] * b[12] + a[18] * b[11] +
                         a[19] * b[10])
                    t[29] = c & 0x1FFF
                    c = ((c >> 13) + a[11] * b[19] + a[12] * b[18] + a[13] * b[17] + a[14] * b[16] +
                         a[15] * b[15] + a[16] * b[14] + a[17] * b[13] + a[18] * b[12] + a[19] * b[11])
                    t[30] = c & 0x1FFF
                    c = ((c >> 13) + a[12] * b[19] + a[13] * b[18] + a[14] * b[17] + a[15] * b[16] +
                         a[16] * b[15] + a[17] * b[14] + a[18] * b[13] + a[19] * b[12])
                    t[31] = c & 0x1FFF
                    c = ((c >> 13) + a[13] * b[19] + a[14] * b[18] + a[15] * b[17] + a[16] * b[16] +
                         a[17] * b[15] + a[18] * b[14] + a[19] * b[13])
                    t[32] = c & 0x1FFF
                    c = ((c >> 13) + a[14] * b[19] + a[15] * b[18] + a[16] * b[17] + a[17] * b[16] +
                         a[18] * b[15] + a[19] * b[14])
                    t[33] = c & 0x1FFF
                    c = ((c >> 13) + a[15] * b[19] + a[16] * b[18] + a[17] * b[17] + a[18] * b[16] +
                         a[19] * b[15])
                    t[34] = c & 0x1FFF
                    c = (c >> 13) + a[16] * b[19] + a[17] * b[18] + a[18] * b[17] + a[19] * b[16]
                    t[35] = c & 0x1FFF
                    c = (c >> 13) + a[17] * b[19] + a[18] * b[18] + a[19] * b[17]
                    t[36] = c & 0x1FFF
                    c = (c >> 13) + a[18] * b[19] + a[19] * b[18]
                    t[37] = c & 0x1FFF
                    c = (c >> 13) + a[19] * b[19]
                    t[38] = c & 0x1FFF
                    t[39] = c >> 13
                    c = t[20] * 608 + a[0] * b[0]
                    t[0] = c & 0x1FFF
                    c = (c >> 13) + t[21] * 608 + a[0] * b[1] + a[1] * b[0]
                    t[1] = c & 0x1FFF
                    c = (c >> 13) + t[22] * 608 + a[0] * b[2] + a[1] * b[1] + a[2] * b[0]
                    t[2] = c & 0x1FFF
                    c = (c >> 13) + t[23] * 608 + a[0] * b[3] + a[1] * b[2] + a[2] * b[1] + a[3] * b[0]
                    t[3] = c & 0x1FFF
                    c = ((c >> 13) + t[24] * 608 + a[0] * b[4] + a[1] * b[3] + a[2] * b[2] + a[3] * b[1] +
                         a[4] * b[0])
                    t[4] = c & 0x1FFF
                    c = ((c >> 13) + t[25] * 608 + a[0] * b[5] + a[1] * b[4] + a[2] * b[3] + a[3] * b[2] +
                         a[4] * b[1] + a[5] * b[0])
                    t[5] = c & 0x1FFF
                    c = ((c >> 13) + t[26] * 608 + a[0] * b[6] + a[1] * b[5] + a[2] * b[4] + a[3] * b[3] +
                         a[4] * b[2] + a[5] * b[1] + a[6] * b[0])
                    t[6] = c & 0x1FFF
                    c = ((c >> 13) + t[27] * 608 + a[0] * b[7] + a[1] * b[6] + a[2] * b[5] + a[3] * b[4] +
                         a[4] * b[3] + a[5] * b[2] + a[6] * b[1] + a[7] * b[0])
                    t[7] = c & 0x1FFF
                    c = ((c >> 13) + t[28] * 608 + a[0] * b[8] + a[1] * b[7] + a[2] * b[6] + a[3] * b[5] +
                         a[4] * b[4] + a[5] * b[3] + a[6] * b[2] + a[7] * b[1] + a[8] * b[0])
                    t[8] = c & 0x1FFF
                    c = ((c >> 13) + t[29] * 608 + a[0] * b[9] + a[1] * b[8] + a[2] * b[7] + a[3] * b[6] +
                         a[4] * b[5] + a[5] * b[4] + a[6] * b[3] + a[7] * b[2] + a[8] * b[1] + a[9] * b[0])
                    t[9] = c & 0x1FFF
                    c = ((c >> 13) + t[30] * 608 + a[0] * b[10] + a[1] * b[9] + a[2] * b[8] + a[3] * b[7] +
                         a[4] * b[6] + a[5] * b[5] + a[6] * b[4] + a[7] * b[3] + a[8] * b[2] + a[9] * b[1] +
                         a[10] * b[0])
                    t[10] = c & 0x1FFF
                    c = ((c >> 13) + t[31] * 608 + a[0] * b[11] + a[1] * b[10] + a[2] * b[9] + a[3] * b[8] +
                         a[4] * b[7] + a[5] * b[6] + a[6] * b[5] + a[7] * b[4] + a[8] * b[3] + a[9] * b[2] +
                         a[10] * b[1] + a[11] * b[0])
                    t[11] = c & 0x1FFF
                    c = ((c >> 13) + t[32] * 608 + a[0] * b[12] + a[1] * b[11] + a[2] * b[10] + a[3] * b[9] +
                         a[4] * b[8] + a[5] * b[7] + a[6] * b[6] + a[7] * b[5] + a[8] * b[4] + a[9] * b[3] +
                         a[10] * b[2] + a[11] * b[1] + a[12] * b[0])
                    t[12] = c & 0x1FFF
                    c = ((c >> 13) + t[33] * 608 + a[0] * b[13] + a[1] * b[12] + a[2] * b[11] + a[3] * b[10] +
                         a[4] * b[9] + a[5] * b[8] + a[6] * b[7] + a[7] * b[6] + a[8] * b[5] + a[9] * b[4] +
                         a[10] * b[3] + a[11] * b[2] + a[12] * b[1] + a[13] * b[0])
                    t[13] = c & 0x1FFF
                    c = ((c >> 13) + t[34] * 608 + a[0] * b[14] + a[1] * b[13] + a[2] * b[12] + a[3] * b[11] +
                         a[4] * b[10] + a[5] * b[9] + a[6] * b[8] + a[7] * b[7] + a[8] * b[6] + a[9] * b[5] +
                         a[10] * b[4] + a[11] * b[3] + a[12] * b[2] + a[13] * b[1] + a[14] * b[0])
                    t[14] = c & 0x1FFF
                    c = ((c >> 13) + t[35] * 608 + a[0] * b[15] + a[1] * b[14] + a[2] * b[13] + a[3] * b[12] +
                         a[4] * b[11] + a[5] * b[10] + a[6] * b[9] + a[7] * b[8] + a[8] * b[7] + a[9] * b[6] +
                         a[10] * b[5] + a[11] * b[4] + a[12] * b[3] + a[13] * b[2] + a[14] * b[1] +
                         a[15] * b[0])
                    t[15] = c & 0x1FFF
                    c = ((c >> 13) + t[36] * 608 + a[0] * b[16] + a[1] * b[15] + a[2] * b[14] + a[3] * b[13] +
                         a[4] * b[12] + a[5] * b[11] + a[6] * b[10] + a[7] * b[9] + a[8] * b[8] +
                         a[9] * b[7] + a[10] * b[6] + a[11] * b[5] + a[12] * b[4] + a[13] * b[3] +
                         a[14] * b[2] + a[15] * b[1] + a[16] * b[0])
                    t[16] = c & 0x1FFF
                    c = ((c >> 13) + t[37] * 608 + a[0] * b[17] + a[1] * b[16] + a[2] * b[15] + a[3] * b[14] +
                         a[4] * b[13] + a[5] * b[12] + a[6] * b[11] + a[7] * b[10] + a[8] * b[9] +
                         a[9] * b[8] + a[10] * b[7] + a[11] * b[6] + a[12] * b[5] + a[13] * b[4] +
                         a[14] * b[3] + a[15] * b[2] + a[16] * b[1] + a[17] * b[0])
                    t[17] = c & 0x1FFF
                    c = ((c >> 13) + t[38] * 608 + a[0] * b[18] + a[1] * b[17] + a[2] * b[16] + a[3] * b[15] +
                         a[4] * b[14] + a[5] * b[13] + a[6] * b[12] + a[7] * b[11] + a[8] * b[10] +
                         a[9] * b[9] + a[10] * b[8] + a[11] * b[7] + a[12] * b[6] + a[13] * b[5] +
                         a[14] * b[4] + a[15] * b[3] + a[16] * b[2] + a[17] * b[1] + a[18] * b[0])
                    t[18] = c & 0x1FFF
                    c = ((c >> 13) + t[39] * 608 + a[0] * b[19] + a[1] * b[18] + a[2] * b[17] + a[3] * b[16] +
                         a[4] * b[15] + a[5] * b[14] + a[6] * b[13] + a[7] * b[12] + a[8] * b[11] +
                         a[9] * b[10] + a[10] * b[9] + a[11] * b[8] + a[12] * b[7] + a[13] * b[6] +
                         a[14] * b[5] + a[15] * b[4] + a[16] * b[3] + a[17] * b[2] + a[18] * b[1] +
                         a[19] * b[0])
                    t[19] = c & 0x1FFF
                    c >>= 13
                else:
                    c = (((a[1] * a[19] + a[2] * a[18] + a[3] * a[17] + a[4] * a[16] + a[5] * a[15] +
                         a[6] * a[14] + a[7] * a[13] + a[8] * a[12] + a[9] * a[11]) << 1) + a[10] * a[10])
                    t[20] = c & 0x1FFF
                    c = ((c >> 13) + ((a[2] * a[19] + a[3] * a[18] + a[4] * a[17] + a[5] * a[16] +
                         a[6] * a[15] + a[7] * a[14] + a[8] * a[13] + a[9] * a[12] + a[10] * a[11]) << 1))
                    t[21] = c & 0x1FFF
                    c = ((c >> 13) + ((a[3] * a[19] + a[4] * a[18] + a[5] * a[17] + a[6] * a[16] +
                         a[7] * a[15] + a[8] * a[14] + a[9] * a[13] + a[10] * a[12]) << 1) + a[11] * a[11])
                    t[22] = c & 0x1FFF
                    c = ((c >> 13) + ((a[4] * a[19] + a[5] * a[18] + a[6] * a[17] + a[7] * a[16] +
                         a[8] * a[15] + a[9] * a[14] + a[10] * a[13] + a[11] * a[12]) << 1))
                    t[23] = c & 0x1FFF
                    c = ((c >> 13) + ((a[5] * a[19] + a[6] * a[18] + a[7] * a[17] + a[8] * a[16] +
                         a[9] * a[15] + a[10] * a[14] + a[11] * a[13]) << 1) + a[12] * a[12])
                    t[24] = c & 0x1FFF
                    c = ((c >> 13) + ((a[6] * a[19] + a[7] * a[18] + a[8] * a[17] + a[9] * a[16] +
                         a[10] * a[15] + a[11] * a[14] + a[12] * a[13]) << 1))
                    t[25] = c & 0x1FFF
                    c = ((c >> 13) + ((a[7] * a[19] + a[8] * a[18] + a[9] * a[17] + a[10] * a[16] +
                         a[11] * a[15] + a[12] * a[14]) << 1) + a[13] * a[13])
                    t[26] = c & 0x1FFF
                    c = ((c >> 13) + ((a[8] * a[19] + a[9] * a[18] + a[10] * a[17] + a[11] * a[16] +
                         a[12] * a[15] + a[13] * a[14]) << 1))
                    t[27] = c & 0x1FFF
                    c = ((c >> 13) + ((a[9] * a[19] + a[10] * a[18] + a[11] * a[17] + a[12] * a[16] +
                         a[13] * a[15]) << 1) + a[14] * a[14])
                    t[28] = c & 0x1FFF
                    c = ((c >> 13) + ((a[10] * a[19] + a[11] * a[18] + a[12] * a[17] + a[13] * a[16] +
                         a[14] * a[15]) << 1))
                    t[29] = c & 0x1FFF
                    c = ((c >> 13) + ((a[11] * a[19] + a[12] * a[18] + a[13] * a[17] + a[14] * a[16]) << 1) +
                         a[15] * a[15])
                    t[30] = c & 0x1FFF
                    c = (c >> 13) + ((a[12] * a[19] + a[13] * a[18] + a[14] * a[17] + a[15] * a[16]) << 1)
                    t[31] = c & 0x1FFF
                    c = (c >> 13) + ((a[13] * a[19] + a[14] * a[18] + a[15] * a[17]) << 1) + a[16] * a[16]
                    t[32] = c & 0x1FFF
                    c = (c >> 13) + ((a[14] * a[19] + a[15] * a[18] + a[16] * a[17]) << 1)
                    t[33] = c & 0x1FFF
                    c = (c >> 13) + ((a[15] * a[19] + a[16] * a[18]) << 1) + a[17] * a[17]
                    t[34] = c & 0x1FFF
                    c = (c >> 13) + ((a[16] * a[19] + a[17] * a[18]) << 1)
                    t[35] = c & 0x1FFF
                    c = (c >> 13) + (a[17] * a[19] << 1) + a[18] * a[18]
                    t[36] = c & 0x1FFF
                    c = (c >> 13) + (a[18] * a[19] << 1)
                    t[37] = c & 0x1FFF
                    c = (c >> 13) + a[19] * a[19]
                    t[38] = c & 0x1FFF
                    t[39] = c >> 13
                    c = t[20] * 608 + a[0] * a[0]
                    t[0] = c & 0x1FFF
                    c = (c >> 13) + t[21] * 608 + (a[0] * a[1] << 1)
                    t[1] = c & 0x1FFF
                    c = (c >> 13) + t[22] * 608 + (a[0] * a[2] << 1) + a[1] * a[1]
                    t[2] = c & 0x1FFF
                    c = (c >> 13) + t[23] * 608 + ((a[0] * a[3] + a[1] * a[2]) << 1)
                    t[3] = c & 0x1FFF
                    c = (c >> 13) + t[24] * 608 + ((a[0] * a[4] + a[1] * a[3]) << 1) + a[2] * a[2]
                    t[4] = c & 0x1FFF
                    c = (c >> 13) + t[25] * 608 + ((a[0] * a[5] + a[1] * a[4] + a[2] * a[3]) << 1)
                    t[5] = c & 0x1FFF
                    c = ((c >> 13) + t[26] * 608 + ((a[0] * a[6] + a[1] * a[5] + a[2] * a[4]) << 1) +
                         a[3] * a[3])
                    t[6] = c & 0x1FFF
                    c = ((c >> 13) + t[27] * 608 + ((a[0] * a[7] + a[1] * a[6] + a[2] * a[5] +
                         a[3] * a[4]) << 1))
                    t[7] = c & 0x1FFF
                    c = ((c >> 13) + t[28] * 608 + ((a[0] * a[8] + a[1] * a[7] + a[2] * a[6] +
                         a[3] * a[5]) << 1) + a[4] * a[4])
                    t[8] = c & 0x1FFF
                    c = ((c >> 13) + t[29] * 608 + ((a[0] * a[9] + a[1] * a[8] + a[2] * a[7] + a[3] * a[6] +
                         a[4] * a[5]) << 1))
                    t[9] = c & 0x1FFF
                    c = ((c >> 13) + t[30] * 608 + ((a[0] * a[10] + a[1] * a[9] + a[2] * a[8] + a[3] * a[7] +
                         a[4] * a[6]) << 1) + a[5] * a[5])
                    t[10] = c & 0x1FFF
                    c = ((c >> 13) + t[31] * 608 + ((a[0] * a[11] + a[1] * a[10] + a[2] * a[9] + a[3] * a[8] +
                         a[4] * a[7] + a[5] * a[6]) << 1))
                    t[11] = c & 0x1FFF
                    c = ((c >> 13) + t[32] * 608 + ((a[0] * a[12] + a[1] * a[11] + a[2] * a[10] +
                         a[3] * a[9] + a[4] * a[8] + a[5] * a[7]) << 1) + a[6] * a[6])
                    t[12] = c & 0x1FFF
                    c = ((c >> 13) + t[33] * 608 + ((a[0] * a[13] + a[1] * a[12] + a[2] * a[11] +
                         a[3] * a[10] + a[4] * a[9] + a[5] * a[8] + a[6] * a[7]) << 1))
                    t[13] = c & 0x1FFF
                    c = ((c >> 13) + t[34] * 608 + ((a[0] * a[14] + a[1] * a[13] + a[2] * a[12] +
                         a[3] * a[11] + a[4] * a[10] + a[5] * a[9] + a[6] * a[8]) << 1) + a[7] * a[7])
                    t[14] = c & 0x1FFF
                    c = ((c >> 13) + t[35] * 608 + ((a[0] * a[15] + a[1] * a[14] + a[2] * a[13] +
                         a[3] * a[12] + a[4] * a[11] + a[5] * a[10] + a[6] * a[9] + a[7] * a[8]) << 1))
                    t[15] = c & 0x1FFF
                    c = ((c >> 13) + t[36] * 608 + ((a[0] * a[16] + a[1] * a[15] + a[2] * a[14] +
                         a[3] * a[13] + a[4] * a[12] + a[5] * a[11] + a[6] * a[10] + a[7] * a[9]) << 1) +
                         a[8] * a[8])
                    t[16] = c & 0x1FFF
                    c = ((c >> 13) + t[37] * 608 + ((a[0] * a[17] + a[1] * a[16] + a[2] * a[15] +
                         a[3] * a[14] + a[4] * a[13] + a[5] * a[12] + a[6] * a[11] + a[7] * a[10] +
                         a[8] * a[9]) << 1))
                    t[17] = c & 0x1FFF
                    c = ((c >> 13) + t[38] * 608 + ((a[0] * a[18] + a[1] * a[17] + a[2] * a[16] +
                         a[3] * a[15] + a[4] * a[14] + a[5] * a[13] + a[6] * a[12] + a[7] * a[11] +
                         a[8] * a[10]) << 1) + a[9] * a[9])
                    t[18] = c & 0x1FFF
                    c = ((c >> 13) + t[39] * 608 + ((a[0] * a[19] + a[1] * a[18] + a[2] * a[17] +
                         a[3] * a[16] + a[4] * a[15] + a[5] * a[14] + a[6] * a[13] + a[7] * a[12] +
                         a[8] * a[11] + a[9] * a[10]) << 1))
                    t[19] = c & 0x1FFF
                    c >>= 13
                # fold the bits from 2^255 up back in, as 2^255 = 19 (mod p)
                c = (t[19] >> 8) + (c << 5)
                c = t[0] + 19 * c
                d[0] = c & 0x1FFF
                c = t[1] + (c >> 13)
                d[1] = c & 0x1FFF
                c = t[2] + (c >> 13)
                d[2] = c & 0x1FFF
                d[3] = t[3] + (c >> 13)
                d[4] = t[4]
                d[5] = t[5]
                d[6] = t[6]
                d[7] = t[7]
                d[8] = t[8]
                d[9] = t[9]
                d[10] = t[10]
                d[11] = t[11]
                d[12] = t[12]
                d[13] = t[13]
                d[14] = t[14]
                d[15] = t[15]
                d[16] = t[16]
                d[17] = t[17]
                d[18] = t[18]
                d[19] = t[19] & 0xFF
                a = d
                reps -= 1
        elif op == 2:
            c = a[0] + b[0]
            d[0] = c & 0x1FFF
            c = (c >> 13) + a[1] + b[1]
            d[1] = c & 0x1FFF
            c = (c >> 13) + a[2] + b[2]
            d[2] = c & 0x1FFF
            c = (c >> 13) + a[3] + b[3]
            d[3] = c & 0x1FFF
            c = (c >> 13) + a[4] + b[4]
            d[4] = c & 0x1FFF
            c = (c >> 13) + a[5] + b[5]
            d[5] = c & 0x1FFF
            c = (c >> 13) + a[6] + b[6]
            d[6] = c & 0x1FFF
            c = (c >> 13) + a[7] + b[7]
            d[7] = c & 0x1FFF
            c = (c >> 13) + a[8] + b[8]
            d[8] = c & 0x1FFF
            c = (c >> 13) + a[9] + b[9]
            d[9] = c & 0x1FFF
            c = (c >> 13) + a[10] + b[10]
            d[10] = c & 0x1FFF
            c = (c >> 13) + a[11] + b[11]
            d[11] = c & 0x1FFF
            c = (c >> 13) + a[12] + b[12]
            d[12] = c & 0x1FFF
            c = (c >> 13) + a[13] + b[13]
            d[13] = c & 0x1FFF
            c = (c >> 13) + a[14] + b[14]
            d[14] = c & 0x1FFF
            c = (c >> 13) + a[15] + b[15]
            d[15] = c & 0x1FFF
            c = (c >> 13) + a[16] + b[16]
            d[16] = c & 0x1FFF
            c = (c >> 13) + a[17] + b[17]
            d[17] = c & 0x1FFF
            c = (c >> 13) + a[18] + b[18]
            d[18] = c & 0x1FFF
            c = (c >> 13) + a[19] + b[19]
            d[19] = c & 0xFF
            c = d[0] + 19 * (c >> 8)
            d[0] = c & 0x1FFF
            c = d[1] + (c >> 13)
            d[1] = c & 0x1FFF
            d[2] += c >> 13
        elif op == 3:
            # a + 2p - b, with 2p spread over the limbs so that none goes negative
            c = a[0] + 16346 - b[0]
            d[0] = c & 0x1FFF
            c = (c >> 13) + a[1] + 16382 - b[1]
            d[1] = c & 0x1FFF
            c = (c >> 13) + a[2] + 16382 - b[2]
            d[2] = c & 0x1FFF
            c = (c >> 13) + a[3] + 16382 - b[3]
            d[3] = c & 0x1FFF
            c = (c >> 13) + a[4] + 16382 - b[4]
            d[4] = c & 0x1FFF
            c = (c >> 13) + a[5] + 16382 - b[5]
            d[5] = c & 0x1FFF
            c = (c >> 13) + a[6] + 16382 - b[6]
            d[6] = c & 0x1FFF
            c = (c >> 13) + a[7] + 16382 - b[7]
            d[7] = c & 0x1FFF
            c = (c >> 13) + a[8] + 16382 - b[8]
            d[8] = c & 0x1FFF
            c = (c >> 13) + a[9] + 16382 - b[9]
            d[9] = c & 0x1FFF
            c = (c >> 13) + a[10] + 16382 - b[10]
            d[10] = c & 0x1FFF
            c = (c >> 13) + a[11] + 16382 - b[11]
            d[11] = c & 0x1FFF
            c = (c >> 13) + a[12] + 16382 - b[12]
            d[12] = c & 0x1FFF
            c = (c >> 13) + a[13] + 16382 - b[13]
            d[13] = c & 0x1FFF
            c = (c >> 13) + a[14] + 16382 - b[14]
            d[14] = c & 0x1FFF
            c = (c >> 13) + a[15] + 16382 - b[15]
            d[15] = c & 0x1FFF
            c = (c >> 13) + a[16] + 16382 - b[16]
            d[16] = c & 0x1FFF
            c = (c >> 13) + a[17] + 16382 - b[17]
            d[17] = c & 0x1FFF
            c = (c >> 13) + a[18] + 16382 - b[18]
            d[18] = c & 0x1FFF
            c = (c >> 13) + a[19] + 510 - b[19]
            d[19] = c & 0xFF
            c = d[0] + 19 * (c >> 8)
            d[0] = c & 0x1FFF
            c = d[1] + (c >> 13)
            d[1] = c & 0x1FFF
            d[2] += c >> 13
        elif op == 4:
            c = a[0] * 121666
            d[0] = c & 0x1FFF
            c = (c >> 13) + a[1] * 121666
            d[1] = c & 0x1FFF
            c = (c >> 13) + a[2] * 121666
            d[2] = c & 0x1FFF
            c = (c >> 13) + a[3] * 121666
            d[3] = c & 0x1FFF
            c = (c >> 13) + a[4] * 121666
            d[4] = c & 0x1FFF
            c = (c >> 13) + a[5] * 121666
            d[5] = c & 0x1FFF
            c = (c >> 13) + a[6] * 121666
            d[6] = c & 0x1FFF
            c = (c >> 13) + a[7] * 121666
            d[7] = c & 0x1FFF
            c = (c >> 13) + a[8] * 121666
            d[8] = c & 0x1FFF
            c = (c >> 13) + a[9] * 121666
            d[9] = c & 0x1FFF
            c = (c >> 13) + a[10] * 121666
            d[10] = c & 0x1FFF
            c = (c >> 13) + a[11] * 121666
            d[11] = c & 0x1FFF
            c = (c >> 13) + a[12] * 121666
            d[12] = c & 0x1FFF
            c = (c >> 13) + a[13] * 121666
            d[13] = c & 0x1FFF
            c = (c >> 13) + a[14] * 121666
            d[14] = c & 0x1FFF
            c = (c >> 13) + a[15] * 121666
            d[15] = c & 0x1FFF
            c = (c >> 13) + a[16] * 121666
            d[16] = c & 0x1FFF
            c = (c >> 13) + a[17] * 121666
            d[17] = c & 0x1FFF
            c = (c >> 13) + a[18] * 121666
            d[18] = c & 0x1FFF
            c = (c >> 13) + a[19] * 121666
            d[19] = c & 0xFF
            c = d[0] + 19 * (c >> 8)
            d[0] = c & 0x1FFF
            c = d[1] + (c >> 13)
            d[1] = c & 0x1FFF
            d[2] += c >> 13
        else:
            d[0] = a[0]
            d[1] = a[1]
            d[2] = a[2]
            d[3] = a[3]
            d[4] = a[4]
            d[5] = a[5]
            d[6] = a[6]
            d[7] = a[7]
            d[8] = a[8]
            d[9] = a[9]
            d[10] = a[10]
            d[11] = a[11]
            d[12] = a[12]
            d[13] = a[13]
            d[14] = a[14]
            d[15] = a[15]
            d[16] = a[16]
            d[17] = a[17]
            d[18] = a[18]
            d[19] = a[19]


@micropython.viper
def sha512_compress(hw: ptr32, k: ptr32, block: ptr8):
    """Fold one 128-byte block into the state hw[0:16] (32-bit halves, high
    first); hw[16:48] is scratch for the message schedule (the last 16 words,
    each round's word taking the place of the one 16 rounds back), k[0:160]
    holds the round constants."""
    M = uint(0xFFFF) << 16 | uint(0xFFFF)
    w = ptr32(int(hw) + 64)
    t = 0
    while t < 16:
        p = t << 3
        w[2 * t] = (uint(block[p]) << 24) | (uint(block[p + 1]) << 16) | (uint(block[p + 2]) << 8) | uint(block[p + 3])
        w[2 * t + 1] = (uint(block[p + 4]) << 24) | (uint(block[p + 5]) << 16) | (uint(block[p + 6]) << 8) | uint(block[p + 7])
        t += 1

    ah = uint(hw[0])
    al = uint(hw[1])
    bh = uint(hw[2])
    bl = uint(hw[3])
    ch = uint(hw[4])
    cl = uint(hw[5])
    dh = uint(hw[6])
    dl = uint(hw[7])
    eh = uint(hw[8])
    el = uint(hw[9])
    fh = uint(hw[10])
    fl = uint(hw[11])
    gh = uint(hw[12])
    gl = uint(hw[13])
    hh = uint(hw[14])
    hl = uint(hw[15])
    t = 0
    while t < 160:  # t: twice the round number
        j = t & 31  # the round's word in the schedule
        if t >= 32:
            # w = s0(w 15 rounds back) + s1(w 2 back) + w 7 back + w 16 back (in slot j)
            i = (t + 2) & 31
            xh = uint(w[i])
            xl = uint(w[i + 1])
            s0h = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
            s0l = ((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
            i = (t + 28) & 31
            xh = uint(w[i])
            xl = uint(w[i + 1])
            s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
            s1l = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
            x = s1l & M
            lo = (s0l & M) + x
            hi = (s0h & M) + (s1h & M)
            if (lo & M) < x:
                hi += 1
            lo &= M
            i = (t + 18) & 31
            x = uint(w[i + 1])
            lo += x
            hi += uint(w[i])
            if (lo & M) < x:
                hi += 1
            lo &= M
            x = uint(w[j + 1])
            lo += x
            hi += uint(w[j])
            if (lo & M) < x:
                hi += 1
            w[j] = hi & M
            w[j + 1] = lo & M
        # t1 = h + S1(e) + ch(e, f, g) + k[t] + w
        s1h = (((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))) & M
        s1l = (((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))) & M
        lo = hl + s1l
        hi = hh + s1h
        if (lo & M) < s1l:
            hi += 1
        lo &= M
        x = (el & fl) ^ ((el ^ M) & gl)
        lo += x
        hi += (eh & fh) ^ ((eh ^ M) & gh)
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(k[t + 1])
        lo += x
        hi += uint(k[t])
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(w[j + 1])
        lo += x
        hi += uint(w[j])
        if (lo & M) < x:
            hi += 1
        t1l = lo & M
        t1h = hi & M
        # t2 = S0(a) + maj(a, b, c)
        s0h = (((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))) & M
        s0l = (((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))) & M
        x = (al & bl) ^ (al & cl) ^ (bl & cl)
        lo = s0l + x
        hi = s0h + ((ah & bh) ^ (ah & ch) ^ (bh & ch))
        if (lo & M) < x:
            hi += 1
        t2l = lo & M
        t2h = hi & M
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        lo = dl + t1l
        hi = dh + t1h
        if (lo & M) < t1l:
            hi += 1
        eh = hi & M
        el = lo & M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        lo = t1l + t2l
        hi = t1h + t2h
        if (lo & M) < t2l:
            hi += 1
        ah = hi & M
        al = lo & M
        t += 2

    t = 0
    while t < 16:
        if t == 0:
            xh = ah
            xl = al
        elif t == 2:
            xh = bh
            xl = bl
        elif t == 4:
            xh = ch
            xl = cl
        elif t == 6:
            xh = dh
            xl = dl
        elif t == 8:
            xh = eh
            xl = el
        elif t == 10:
            xh = fh
            xl = fl
        elif t == 12:
            xh = gh
            xl = gl
        else:
            xh = hh
            xl = hl
        lo = uint(hw[t + 1]) + xl
        hi = uint(hw[t]) + xh
        if (lo & M) < xl:
            hi += 1
        hw[t] = hi & M
        hw[t + 1] = lo & M
        t += 2
