"""Ed25519 verification (RFC 8032 with libsodium's rules), apart from upet.ed25519
so that a participant, which only signs, does not hold this code.

[k](-A) + [S]B is computed with 8 cached multiples of -A and the first row of
the fixed-base table (1B..8B), from upet.ed25519's table when it has one,
else built here."""

from micropython import const

from upet import ed25519 as _ed
from upet.ed25519 import DBL4, L, MADD, MSUB, digits, encode, f, run, sha512
from upet.ed25519_table import AT, CACHE, CADD, CSUB, SET_T, build, constants, copy4, set_point
from upet.x25519 import INV, ONE

_P = const((1 << 255) - 19)
_PX = const(14)
_PY = const(15)
_PZ = const(16)
_NP = const(18)
_TA = const(22)
_TB = const(23)
_TG = const(28)
_Y8 = (b"\x26\xe8\x95\x8f\xc2\xb2\x27\xb0\x45\xc3\xf4\x89\xf2\xef\x98\xf0"     # y of the points of order 8
       b"\xd5\xdf\xac\x05\xd3\xc6\x33\x39\xb1\x38\x02\x88\x6d\x53\xfc\x05")
# y (sign bit cleared) of the points of order 1, 2, 4 and 8, canonical or not:
# libsodium refuses them as R and as public keys
_SMALL_ORDER = [(y % (1 << 255)).to_bytes(32, "little") for y in (
    0, 1, _P - 1, _P, _P + 1, int.from_bytes(_Y8, "little"), _P - int.from_bytes(_Y8, "little"))]

# x from y: x = u v^3 (u v^7)^((p-5)/8) with u = y^2 - 1, v = d y^2 + 1;
# then TA = v x^2 and TG = -u to tell whether x or x sqrt(-1) is the root
_RECOVER_X = (b"\x01\x16\x0f\x00"  # SQR TA PY
              b"\x03\x17\x16\x0c"  # SUB TB TA ONE       u
              b"\x00\x18\x16\x0a"  # MUL TC TA DD
              b"\x02\x18\x18\x0c"  # ADD TC TC ONE       v
              b"\x01\x19\x18\x00"  # SQR TD TC
              b"\x00\x19\x19\x18"  # MUL TD TD TC        v^3
              b"\x01\x03\x19\x00"  # SQR Z TD
              b"\x00\x03\x03\x18"  # MUL Z Z TC
              b"\x00\x03\x03\x17"  # MUL Z Z TB          u v^7
              + INV[:-8] +  # R = Z^(2^252 - 3) = Z^((p-5)/8):
              b"\x05\x06\x06\x02"  # SQRN T1 T1 2
              b"\x00\x04\x06\x03"  # MUL R T1 Z
              b"\x00\x1b\x04\x19"  # MUL TF R TD
              b"\x00\x0e\x1b\x17"  # MUL PX TF TB
              b"\x01\x16\x0e\x00"  # SQR TA PX
              b"\x00\x16\x16\x18"  # MUL TA TA TC
              b"\x03\x1c\x0d\x17")  # SUB TG ZERO TB
_TIMES_SQRTM1 = b"\x00\x0e\x0e\x0b"  # MUL PX PX SQRTM1
_NEGATE_X = b"\x03\x0e\x0d\x0e"  # SUB PX ZERO PX


def _decode_neg(ws, s):
    """P = -A for the encoding s of A; False if s encodes no point canonically."""
    y = bytearray(s)
    x_sign = y[31] >> 7
    y[31] &= 127
    if int.from_bytes(y, "little") >= _P:
        return False
    f.put(ws, _PY, y)
    run(ws, _RECOVER_X)
    vx2 = f.get(ws, _TA)
    if vx2 != f.get(ws, _TB):
        if vx2 != f.get(ws, _TG):
            return False
        run(ws, _TIMES_SQRTM1)
    x = f.get(ws, _PX)
    if x == bytes(32) and x_sign:
        return False
    if x[0] & 1 == x_sign:
        run(ws, _NEGATE_X)
    f.put(ws, _PZ, ONE)
    run(ws, SET_T)
    return True


def verify(pk, msg, sig):
    """True when sig is a valid signature of msg under the public key pk."""
    if len(pk) != 32 or len(sig) != 64 or int.from_bytes(sig[32:], "little") >= L:
        return False
    for enc in (sig[:32], pk):
        y = bytearray(enc)
        y[31] &= 127
        if y in _SMALL_ORDER:
            return False
    row = _ed._table[0] if _ed._table else build(1)[0]  # 1B..8B: the same in every table
    ws = constants(AT + 32)
    if not _decode_neg(ws, pk):
        return False
    ek = digits((int.from_bytes(sha512(sig[:32], pk, msg), "little") % L).to_bytes(32, "little"))
    es = digits(sig[32:])
    to_n = [copy4(_NP, AT + 4 * m) for m in range(8)]  # m(-A), m = 1..8, cached
    for m in range(8):
        run(ws, (to_n[0] + CADD if m else b"") + CACHE + copy4(AT + 4 * m, _NP))
    set_point(ws, bytes(32), ONE)
    for i in range(63, -1, -1):
        if i != 63:
            run(ws, *DBL4)
        d = ek[i]
        if d:
            run(ws, to_n[abs(d) - 1] + (CADD if d > 0 else CSUB))
        d = es[i]
        if d:
            f.load(ws, _NP, row, abs(d))
            run(ws, MADD if d > 0 else MSUB)
    return encode(ws) == bytes(sig[:32])
