"""ChaCha20 and the MCU-profile masking loops in plain Python (same API as upet.native.chacha).

Slow but exact on any port; buffers are read and written as little-endian
32-bit words through struct, so they need no alignment. The context layout is
upet.mask's.
"""

import struct

_M = 0xFFFFFFFF
_BLOCK = 16
_POS = 32
_SH = 33
_SL = 34
_ES = 35
_F = 36
_B = 37
_OFFL = 38
_OFFH = 39
_WIDE = 40


def _quarter(x, a, b, c, d):
    x[a] = (x[a] + x[b]) & _M; t = x[d] ^ x[a]; x[d] = ((t << 16) | (t >> 16)) & _M
    x[c] = (x[c] + x[d]) & _M; t = x[b] ^ x[c]; x[b] = ((t << 12) | (t >> 20)) & _M
    x[a] = (x[a] + x[b]) & _M; t = x[d] ^ x[a]; x[d] = ((t << 8) | (t >> 24)) & _M
    x[c] = (x[c] + x[d]) & _M; t = x[b] ^ x[c]; x[b] = ((t << 7) | (t >> 25)) & _M


def block(ctx):
    x = list(ctx[:16])
    for _ in range(10):
        _quarter(x, 0, 4, 8, 12)
        _quarter(x, 1, 5, 9, 13)
        _quarter(x, 2, 6, 10, 14)
        _quarter(x, 3, 7, 11, 15)
        _quarter(x, 0, 5, 10, 15)
        _quarter(x, 1, 6, 11, 12)
        _quarter(x, 2, 7, 8, 13)
        _quarter(x, 3, 4, 9, 14)
    for i in range(16):
        ctx[_BLOCK + i] = (x[i] + ctx[i]) & _M
    ctx[12] = (ctx[12] + 1) & _M
    if not ctx[12]:
        ctx[13] = (ctx[13] + 1) & _M
    ctx[_POS] = 0


def _word(ctx):
    if ctx[_POS] == 16:
        block(ctx)
    pos = ctx[_POS]
    ctx[_POS] = pos + 1
    return ctx[_BLOCK + pos]


def _element(ctx):
    if ctx[_WIDE]:
        low = _word(ctx)
        return low | (_word(ctx) << 32)
    return _word(ctx)


def words(ctx, dst, n):
    for i in range(n):
        struct.pack_into("<I", dst, 4 * i, _word(ctx))


def add(ctx, dst, n):
    if ctx[_WIDE]:
        for i in range(n):
            v = struct.unpack_from("<Q", dst, 8 * i)[0]
            struct.pack_into("<Q", dst, 8 * i, (v + _element(ctx)) & 0xFFFFFFFFFFFFFFFF)
    else:
        for i in range(n):
            v = struct.unpack_from("<I", dst, 4 * i)[0]
            struct.pack_into("<I", dst, 4 * i, (v + _word(ctx)) & _M)


def _fixed(ctx, u):
    """The fixed-point value of fl32(s * w) for the float32 bits u of w."""
    offset = ctx[_OFFL] | (ctx[_OFFH] << 32)
    neg = u >> 31
    e = (u >> 23) & 0xFF
    mw = u & 0x7FFFFF
    if not (e or mw):
        return offset
    if e:
        mw |= 0x800000
        ex = e - 127
    else:
        ex = -126
        while not mw & 0x800000:
            mw <<= 1
            ex -= 1
    ex += ctx[_ES] - 1024
    p = mw * ((ctx[_SH] << 12) | ctx[_SL])  # 47 or 48 bits
    if p >> 47:
        ex += 1
        mant, rest, half = p >> 24, p & 0xFFFFFF, 0x800000
    else:
        mant, rest, half = p >> 23, p & 0x7FFFFF, 0x400000
    if ex < -126:
        # Below the normal range: zero, unless it rounds up to 2^-126.
        tiny = ex == -127 and mant == 0xFFFFFF
        return offset - 1 if neg and tiny else offset
    if rest > half or (rest == half and mant & 1):
        mant += 1
        if mant >> 24:
            mant >>= 1
            ex += 1
    if ex >= ctx[_B]:
        return 0 if neg else 2 * offset - 1
    k = ex + ctx[_F] - 23
    if k >= 0:
        mag = mant << k
    elif neg:
        mag = (mant + (1 << -k) - 1) >> -k
    else:
        mag = mant >> -k
    return offset - mag if neg else offset + mag


def mask(ctx, src, dst, n):
    wide = ctx[_WIDE]
    for i in range(n):
        u = struct.unpack_from("<I", src, 4 * i)[0]
        if (u >> 23) & 0xFF == 255:
            return i
        v = _fixed(ctx, u)
        if wide:
            struct.pack_into("<Q", dst, 8 * i, (v + _element(ctx)) & 0xFFFFFFFFFFFFFFFF)
        else:
            struct.pack_into("<I", dst, 4 * i, (v + _word(ctx)) & _M)
    return n


def aligned(buf):
    return True
