"""Ed25519 signatures (RFC 8032, byte for byte as libsodium) on the f25519
register machine: what a participant needs, key pairs and signing.

Points are extended twisted Edwards coordinates (X:Y:Z:T) in workspace slots.
A fixed-base product [k]B adds one precomputed multiple of B per signed
radix-16 digit of k. The 64 digits are split into `rows` interleaved groups,
row i holding 1B..8B times 16^(64/rows * i), so only 4 (64/rows - 1)
doublings remain. The table (9 points of 96 bytes a row, with the identity:
3.5 KB for the default 4 rows) is built on first use by upet.ed25519_table,
which is loaded for that call only; `table_rows = 1` makes it under 1 KB and
signing about twice as slow. Verification is upet.ed25519_verify.

`sha512(*parts)` is Ed25519's hash, SHA-512 (FIPS 180-4), here as the boards'
hashlib has none. It hashes the concatenation of its arguments without joining
them, so a prefix and a message are hashed in place. The compression function
is the kernel `sha512_compress` of the f25519 set: viper with 64-bit words
kept as pairs of 32-bit halves, or plain Python integers.
"""

import struct
from array import array

from micropython import const

from upet import transient
from upet import x25519 as _x

f = _x.f
run = _x.run


def _roots(root, count, words):
    """The first 64 bits of the fractional parts of the root-th roots of the
    first `count` primes (SHA-512's round constants and initial hash value),
    as 32-bit halves, high half first, at the start of `words` zero words.
    Computed, so no table sits in the code; run as the module loads and then
    dropped, so neither does this code."""
    out = array("I", bytes(4 * words))
    p = 1
    i = 0
    while i < 2 * count:
        p += 1
        q = 2
        while q * q <= p and p % q:
            q += 1
        if q * q > p:  # a prime
            n = p << (64 * root)
            x = 1 << 67  # above the root for every prime up to 512
            while True:  # Newton's method from above ends on the integer root
                y = ((root - 1) * x + n // x ** (root - 1)) // root
                if y >= x:
                    break
                x = y
            out[i] = (x >> 32) & 0xFFFFFFFF
            out[i + 1] = x & 0xFFFFFFFF
            i += 2
    return out


_KW = _roots(3, 80, 160)
_IV = _roots(2, 8, 16)
del _roots


# One hash at a time, in buffers allocated once (fresh ones per hash would need pieces
# of a heap that is in small pieces mid-round): the state, 8 words as 16 halves, high half
# first, then the kernel's scratch for the message schedule (16 words); a block being
# filled, then the padding.
_H = array("I", bytes(192))
_BLOCK = bytearray(128)


def sha512(*parts):
    """The SHA-512 digest of the concatenation of parts (bytes, bytearrays or memoryviews)."""
    return _sha512(parts)


def _sha512(parts):
    """sha512 of an iterable of parts, each taken in before the next is asked for."""
    h, block = _H, _BLOCK
    h[0:16] = _IV
    fill = 0
    length = 0
    for data in parts:
        mv = memoryview(data)
        n = len(mv)
        length += n
        i = 0
        while i < n:
            if not fill and n - i >= 128:  # whole blocks straight from the data
                f.sha512_compress(h, _KW, mv[i:i + 128])
                i += 128
                continue
            take = min(128 - fill, n - i)
            block[fill:fill + take] = mv[i:i + take]
            fill += take
            i += take
            if fill == 128:
                f.sha512_compress(h, _KW, block)
                fill = 0
    block[fill] = 0x80
    for i in range(fill + 1, 128):
        block[i] = 0
    if fill >= 112:  # no room for the length: it goes in a block of its own
        f.sha512_compress(h, _KW, block)
        for i in range(112):
            block[i] = 0
    block[112:128] = (length * 8).to_bytes(16, "big")
    f.sha512_compress(h, _KW, block)
    return struct.pack(">16I", *h[0:16])

# the order of B, 2^252 + 27742317777372353535851937790883648493, as one constant
L = 7237005577332262213973186563042994240857116359379907606001950938285454250989

# Slots (3-8 are the exponentiations', see upet.x25519; 9-13 hold the curve
# constants that upet.ed25519_table puts there): 14-17 the point
# P = (X, Y, Z, T); 18-21 an operand N in cached form (Y+X, Y-X, 2dT, 2Z;
# table points, with Z = 1, fill the first three); 22-29 temporaries TA-TH.
_PX = const(14)
_PY = const(15)
_PZ = const(16)
_PT = const(17)
_NP = const(18)
_TB = const(23)
_TC = const(24)
_NSLOTS = const(30)
# P = P + N for a table point: A = (Y1-X1)(y2-x2), B = (Y1+X1)(y2+x2),
# C = T1 2dx2y2, D = 2 Z1, E = B - A, F = D - C, G = D + C, H = B + A,
# X3 = EF, Y3 = GH, T3 = EH, Z3 = FG
MADD = (b"\x03\x16\x0f\x0e"  # SUB TA PY PX
        b"\x00\x16\x16\x13"  # MUL TA TA NM
        b"\x02\x17\x0f\x0e"  # ADD TB PY PX
        b"\x00\x17\x17\x12"  # MUL TB TB NP
        b"\x00\x18\x11\x14"  # MUL TC PT NT
        b"\x02\x19\x10\x10"  # ADD TD PZ PZ
        b"\x03\x1a\x17\x16"  # SUB TE TB TA
        b"\x03\x1b\x19\x18"  # SUB TF TD TC
        b"\x02\x1c\x19\x18"  # ADD TG TD TC
        b"\x02\x1d\x17\x16"  # ADD TH TB TA
        b"\x00\x0e\x1a\x1b"  # MUL PX TE TF
        b"\x00\x0f\x1c\x1d"  # MUL PY TG TH
        b"\x00\x11\x1a\x1d"  # MUL PT TE TH
        b"\x00\x10\x1b\x1c")  # MUL PZ TF TG
# P = P - N: -N swaps Y+X and Y-X and negates 2dT, so F and G swap
MSUB = (MADD[:4] + b"\x00\x16\x16\x12"  # MUL TA TA NP
        + MADD[8:12] + b"\x00\x17\x17\x13"  # MUL TB TB NM
        + MADD[16:28] + b"\x02\x1b\x19\x18"  # ADD TF TD TC
        b"\x03\x1c\x19\x18"  # SUB TG TD TC
        + MADD[36:])
# P = 16P, then T for an addition: programs to run one after another.
# 2P: A = X^2, B = Y^2, C = 2 Z^2, and the negated -H = A + B,
# -E = A + B - (X + Y)^2, -G = A - B, -F = C - G give X = EF, Y = GH, Z = FG
DBL4 = (b"\x01\x16\x0e\x00"  # SQR TA PX
        b"\x01\x17\x0f\x00"  # SQR TB PY
        b"\x01\x18\x10\x00"  # SQR TC PZ
        b"\x02\x18\x18\x18"  # ADD TC TC TC
        b"\x02\x1d\x16\x17"  # ADD TH TA TB
        b"\x02\x1a\x0e\x0f"  # ADD TE PX PY
        b"\x01\x1a\x1a\x00"  # SQR TE TE
        b"\x03\x1a\x1d\x1a"  # SUB TE TH TE
        b"\x03\x1c\x16\x17"  # SUB TG TA TB
        b"\x02\x1b\x18\x1c"  # ADD TF TC TG
        b"\x00\x0e\x1a\x1b"  # MUL PX TE TF
        b"\x00\x0f\x1c\x1d"  # MUL PY TG TH
        b"\x00\x10\x1b\x1c",) * 4 + (b"\x00\x11\x1a\x1d",)  # MUL PT TE TH
# x = X/Z in TB, y = Y/Z in TC: programs to run one after another (INV is
# not copied into each program that needs it)
AFFINE = (b"\x06\x03\x10\x00",  # COPY Z PZ
          _x.INV,  # R = 1/Z
          b"\x00\x17\x0e\x04"  # MUL TB PX R
          b"\x00\x18\x0f\x04")  # MUL TC PY R

table_rows = 4  # rows of the fixed-base table: 1, 2, 4, 8 or 16; a change rebuilds it on next use
_table = None
_last = None  # (SHA-512 of a seed, its public key): the key pair of the last seed


def digits(k):
    """Signed radix-16 digits in [-8, 8] of a 32-byte little-endian k < 2^255 (one allocation)."""
    e = array("b", bytes(64))
    for i in range(32):
        e[2 * i] = k[i] & 15
        e[2 * i + 1] = k[i] >> 4
    carry = 0
    for i in range(63):
        v = e[i] + carry
        carry = (v + 8) >> 4
        e[i] = v - (carry << 4)
    e[63] += carry
    return e


def _base_mul(k):
    """P = [k]B with the same sequence of operations for every k; the workspace.

    The table is built first when there is none, as building it uses the
    workspace too."""
    global _table
    rows = table_rows
    if _table is None or len(_table) != rows:
        _table = None
        _table = transient("ed25519_table", "build", rows)
    table = _table
    span = 64 // rows
    e = digits(k)
    ws = _x.workspace(_NSLOTS)
    f.put(ws, _PX, bytes(32))  # the identity (0, 1, 1, 0)
    f.put(ws, _PY, _x.ONE)
    f.put(ws, _PZ, _x.ONE)
    f.put(ws, _PT, bytes(32))
    load = f.load
    fr = f.run
    n = len(MADD) >> 2
    for r in range(span - 1, -1, -1):
        if r != span - 1:
            run(ws, *DBL4)
        for i in range(rows):
            d = e[span * i + r]
            load(ws, _NP, table[i], d if d >= 0 else -d)
            fr(ws, MADD if d >= 0 else MSUB, n)
    return ws


def encode(ws):
    """The 32-byte encoding of P: y with the parity of x in bit 255."""
    run(ws, *AFFINE)
    y = bytearray(f.get(ws, _TC))
    y[31] |= (f.get(ws, _TB)[0] & 1) << 7
    return bytes(y)


def _clamp(k):
    k = bytearray(k[:32])
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return k


def public_key(seed):
    """The Ed25519 public key of a 32-byte seed.

    It is remembered with the seed's SHA-512 (the secret scalar is the clamped
    first half of the hash, the nonce prefix its second), since a participant
    signs all its messages with one key."""
    global _last
    if len(seed) != 32:
        raise ValueError("Ed25519 seeds are 32 bytes")
    h = sha512(seed)
    if _last is None or _last[0] != h:
        _last = (h, encode(_base_mul(_clamp(h))))
    return _last[1]


def x25519_base(scalar):
    """clamp(scalar) * 9 on Curve25519, via [k]B and u = (1 + y) / (1 - y)."""
    if len(scalar) != 32:
        raise ValueError("X25519 takes a 32-byte scalar and a 32-byte u-coordinate")
    ws = _base_mul(_clamp(scalar))
    run(ws, b"\x03\x03\x10\x0f", _x.INV,  # SUB Z PZ PY, R = 1/Z,
        b"\x02\x17\x10\x0f"  # ADD TB PZ PY
        b"\x00\x17\x17\x04")  # MUL TB TB R: the Montgomery u = (Z + Y) / (Z - Y)
    return f.get(ws, _TB)


def _then(head, msg):
    yield from head
    yield from msg() if callable(msg) else (msg,)


def sign(seed, msg):
    """The 64-byte RFC 8032 signature R || S of msg by the key of a 32-byte seed.

    msg is the message, or a function returning an iterable of its pieces, so that
    a message too large for the heap is signed from where it is (a file): it is
    called twice, as Ed25519 hashes the message twice."""
    pk = public_key(seed)
    h = _last[0]
    r = int.from_bytes(_sha512(_then((h[32:],), msg)), "little") % L
    R = encode(_base_mul(r.to_bytes(32, "little")))
    k = int.from_bytes(_sha512(_then((R, pk), msg)), "little") % L
    return R + ((r + k * int.from_bytes(_clamp(h), "little")) % L).to_bytes(32, "little")
