"""ChaCha20 and the MCU-profile masking loops in viper (same API as upet.fallback.chacha).

Viper integers are machine words: 64 bits on the Unix port, 32 on the boards.
Additions may leave garbage above bit 31 on the Unix port; it is masked off
before every right shift and comparison, and ptr32 stores keep the low 32
bits, so no result depends on the word size. Constants of 2^30 and more are
not small ints on the boards: the ChaCha constants come in the context and
all-ones is built from two halves. The context layout is upet.mask's.
"""

from micropython import const

_BLOCK = const(16)
_POS = const(32)
_SH = const(33)
_SL = const(34)
_ES = const(35)
_F = const(36)
_B = const(37)
_OFFL = const(38)
_OFFH = const(39)
_WIDE = const(40)


@micropython.viper
def block(ctx: ptr32):
    """The next 64-byte keystream block into ctx[16:32]; the 64-bit block counter advances."""
    m = uint(0xFFFF) | (uint(0xFFFF) << 16)
    x0 = uint(ctx[0]); x1 = uint(ctx[1]); x2 = uint(ctx[2]); x3 = uint(ctx[3])
    x4 = uint(ctx[4]); x5 = uint(ctx[5]); x6 = uint(ctx[6]); x7 = uint(ctx[7])
    x8 = uint(ctx[8]); x9 = uint(ctx[9]); x10 = uint(ctx[10]); x11 = uint(ctx[11])
    x12 = uint(ctx[12]); x13 = uint(ctx[13]); x14 = uint(ctx[14]); x15 = uint(ctx[15])
    i = 0
    while i < 10:
        x0 += x4; x12 ^= x0; x12 = (x12 << 16) | ((x12 & m) >> 16)
        x8 += x12; x4 ^= x8; x4 = (x4 << 12) | ((x4 & m) >> 20)
        x0 += x4; x12 ^= x0; x12 = (x12 << 8) | ((x12 & m) >> 24)
        x8 += x12; x4 ^= x8; x4 = (x4 << 7) | ((x4 & m) >> 25)
        x1 += x5; x13 ^= x1; x13 = (x13 << 16) | ((x13 & m) >> 16)
        x9 += x13; x5 ^= x9; x5 = (x5 << 12) | ((x5 & m) >> 20)
        x1 += x5; x13 ^= x1; x13 = (x13 << 8) | ((x13 & m) >> 24)
        x9 += x13; x5 ^= x9; x5 = (x5 << 7) | ((x5 & m) >> 25)
        x2 += x6; x14 ^= x2; x14 = (x14 << 16) | ((x14 & m) >> 16)
        x10 += x14; x6 ^= x10; x6 = (x6 << 12) | ((x6 & m) >> 20)
        x2 += x6; x14 ^= x2; x14 = (x14 << 8) | ((x14 & m) >> 24)
        x10 += x14; x6 ^= x10; x6 = (x6 << 7) | ((x6 & m) >> 25)
        x3 += x7; x15 ^= x3; x15 = (x15 << 16) | ((x15 & m) >> 16)
        x11 += x15; x7 ^= x11; x7 = (x7 << 12) | ((x7 & m) >> 20)
        x3 += x7; x15 ^= x3; x15 = (x15 << 8) | ((x15 & m) >> 24)
        x11 += x15; x7 ^= x11; x7 = (x7 << 7) | ((x7 & m) >> 25)
        x0 += x5; x15 ^= x0; x15 = (x15 << 16) | ((x15 & m) >> 16)
        x10 += x15; x5 ^= x10; x5 = (x5 << 12) | ((x5 & m) >> 20)
        x0 += x5; x15 ^= x0; x15 = (x15 << 8) | ((x15 & m) >> 24)
        x10 += x15; x5 ^= x10; x5 = (x5 << 7) | ((x5 & m) >> 25)
        x1 += x6; x12 ^= x1; x12 = (x12 << 16) | ((x12 & m) >> 16)
        x11 += x12; x6 ^= x11; x6 = (x6 << 12) | ((x6 & m) >> 20)
        x1 += x6; x12 ^= x1; x12 = (x12 << 8) | ((x12 & m) >> 24)
        x11 += x12; x6 ^= x11; x6 = (x6 << 7) | ((x6 & m) >> 25)
        x2 += x7; x13 ^= x2; x13 = (x13 << 16) | ((x13 & m) >> 16)
        x8 += x13; x7 ^= x8; x7 = (x7 << 12) | ((x7 & m) >> 20)
        x2 += x7; x13 ^= x2; x13 = (x13 << 8) | ((x13 & m) >> 24)
        x8 += x13; x7 ^= x8; x7 = (x7 << 7) | ((x7 & m) >> 25)
        x3 += x4; x14 ^= x3; x14 = (x14 << 16) | ((x14 & m) >> 16)
        x9 += x14; x4 ^= x9; x4 = (x4 << 12) | ((x4 & m) >> 20)
        x3 += x4; x14 ^= x3; x14 = (x14 << 8) | ((x14 & m) >> 24)
        x9 += x14; x4 ^= x9; x4 = (x4 << 7) | ((x4 & m) >> 25)
        i += 1
    ctx[16] = x0 + uint(ctx[0]); ctx[17] = x1 + uint(ctx[1])
    ctx[18] = x2 + uint(ctx[2]); ctx[19] = x3 + uint(ctx[3])
    ctx[20] = x4 + uint(ctx[4]); ctx[21] = x5 + uint(ctx[5])
    ctx[22] = x6 + uint(ctx[6]); ctx[23] = x7 + uint(ctx[7])
    ctx[24] = x8 + uint(ctx[8]); ctx[25] = x9 + uint(ctx[9])
    ctx[26] = x10 + uint(ctx[10]); ctx[27] = x11 + uint(ctx[11])
    ctx[28] = x12 + uint(ctx[12]); ctx[29] = x13 + uint(ctx[13])
    ctx[30] = x14 + uint(ctx[14]); ctx[31] = x15 + uint(ctx[15])
    low = (uint(ctx[12]) + 1) & m
    ctx[12] = low
    if not low:
        ctx[13] = uint(ctx[13]) + 1
    ctx[_POS] = 0


@micropython.viper
def words(ctx: ptr32, dst: ptr32, n: int):
    """The next n keystream words into dst."""
    pos = int(ctx[_POS])
    i = 0
    while i < n:
        if pos == 16:
            block(ctx)
            pos = 0
        dst[i] = ctx[_BLOCK + pos]
        pos += 1
        i += 1
    ctx[_POS] = pos


@micropython.viper
def add(ctx: ptr32, dst: ptr32, n: int):
    """Adds the next n mask elements to the n elements in dst (mod 2^32, or 2^64 if wide)."""
    wide = int(ctx[_WIDE])
    pos = int(ctx[_POS])
    i = 0
    while i < n:
        if pos == 16:
            block(ctx)
            pos = 0
        if wide:
            a = uint(dst[2 * i])
            k = uint(ctx[_BLOCK + pos])
            s = a + k
            dst[2 * i] = s
            carry = (((a & k) | ((a | k) & ~s)) >> 31) & 1
            pos += 1
            if pos == 16:
                block(ctx)
                pos = 0
            dst[2 * i + 1] = uint(dst[2 * i + 1]) + uint(ctx[_BLOCK + pos]) + carry
        else:
            dst[i] = uint(dst[i]) + uint(ctx[_BLOCK + pos])
        pos += 1
        i += 1
    ctx[_POS] = pos


@micropython.viper
def mask(ctx: ptr32, src: ptr32, dst: ptr32, n: int) -> int:
    """Masks n float32 weights (bits in src) into n words (2n if wide) in dst.

    Returns n, or the index of the first NaN or infinity (nothing stored for it).
    x = fl32(s * w) is formed from the two 24-bit mantissas in 12-bit limbs and
    rounded to nearest even; subnormal results count as zero, |x| >= 2^b clamps.
    """
    m = uint(0xFFFF) | (uint(0xFFFF) << 16)
    sh = uint(ctx[_SH]); sl = uint(ctx[_SL]); es = int(ctx[_ES]) - 1024
    f = int(ctx[_F]); b = int(ctx[_B]); wide = int(ctx[_WIDE])
    offl = uint(ctx[_OFFL]); offh = uint(ctx[_OFFH])
    pos = int(ctx[_POS])
    i = 0
    while i < n:
        u = uint(src[i])
        e = int((u >> 23) & 0xFF)
        if e == 255:
            break
        neg = (u >> 31) & 1
        mw = u & 0x7FFFFF
        vl = offl; vh = offh
        if e or mw:
            if e:
                mw |= 0x800000
                ex = e - 127 + es
            else:
                ex = -126 + es
                while not (mw & 0x800000):
                    mw <<= 1
                    ex -= 1
            wh = mw >> 12; wl = mw & 0xFFF
            mid = wl * sh + wh * sl
            lo = wl * sl + ((mid & 0xFFF) << 12)
            hi = wh * sh + (mid >> 12) + (lo >> 24)
            if hi & 0x800000:
                mant = hi; ex += 1; rnd = (lo >> 23) & 1; sticky = lo & 0x7FFFFF
            else:
                mant = (hi << 1) | ((lo >> 23) & 1); rnd = (lo >> 22) & 1; sticky = lo & 0x3FFFFF
            ml = uint(0); mh = uint(0)
            if ex < -126:
                # Below the normal range: zero, unless it rounds up to 2^-126.
                if neg and ex == -127 and mant == uint(0xFFFFFF):
                    ml = uint(1)
            else:
                if rnd and (sticky or (mant & 1)):
                    mant += 1
                    if mant & 0x1000000:
                        mant = uint(0x800000)
                        ex += 1
                k = ex + f - 23
                if ex >= b:
                    # Clamped to -B or B: the value is 0 or the cap, 2 * offset - 1.
                    ml = offl; mh = offh
                    if not neg:
                        if offl:
                            ml = offl - 1
                        else:
                            ml = m; mh = offh - 1
                elif k < 0:
                    if k > -25:
                        if neg:
                            ml = (mant + (uint(1) << (0 - k)) - 1) >> (0 - k)
                        else:
                            ml = mant >> (0 - k)
                    elif neg:
                        ml = uint(1)
                elif k == 0:
                    ml = mant
                elif k < 32:
                    ml = (mant << k) & m; mh = mant >> (32 - k)
                else:
                    mh = mant << (k - 32)
            # value = offset -+ magnitude, magnitude < offset = 2^(bits-1-m): the sum never
            # carries between the halves, the difference borrows; W32 needs the low word only.
            if neg:
                vl = offl - ml
                if wide:
                    vh = offh - mh - (((((~offl) & ml) | ((~(offl ^ ml)) & vl)) >> 31) & 1)
            else:
                vl = offl + ml
                vh = offh + mh
            vl &= m
        if pos == 16:
            block(ctx)
            pos = 0
        k0 = uint(ctx[_BLOCK + pos])
        pos += 1
        if wide:
            s = vl + k0
            dst[2 * i] = s
            if pos == 16:
                block(ctx)
                pos = 0
            dst[2 * i + 1] = vh + uint(ctx[_BLOCK + pos]) + ((((vl & k0) | ((vl | k0) & ~s)) >> 31) & 1)
            pos += 1
        else:
            dst[i] = vl + k0
        i += 1
    ctx[_POS] = pos
    return i


@micropython.viper
def aligned(buf) -> bool:
    """Whether buf starts on a 4-byte boundary: ptr32 access needs it on the boards."""
    return (uint(ptr8(buf)) & 3) == uint(0)
