"""Ed25519 verification (RFC 8032 with libsodium's rules), apart from upet.ed25519
so that a participant, which only signs, does not hold this code."""

from micropython import const

from upet import ed25519 as _ed
from upet.ed25519 import (_CACHE, _CADD, _DBL4, _MADD, _MSUB, _ONE, _ZERO, L, _copy4,
                          _SET_T, _digits, _encode, _run, _set_point, _workspace, f)
from upet.sha512 import SHA512
from upet.x25519 import POW58

_P = const((1 << 255) - 19)
_PX = const(14)
_PY = const(15)
_PZ = const(16)
_NP = const(18)
_TA = const(22)
_TB = const(23)
_TG = const(28)
_AT = const(30)
_CSUB = _MSUB[:20] + b"\x00\x19\x10\x15" + _MSUB[24:]  # MUL TD PZ NZ
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
              + POW58 +
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
    _run(ws, _RECOVER_X)
    vx2 = f.get(ws, _TA)
    if vx2 != f.get(ws, _TB):
        if vx2 != f.get(ws, _TG):
            return False
        _run(ws, _TIMES_SQRTM1)
    x = f.get(ws, _PX)
    if x == _ZERO and x_sign:
        return False
    if x[0] & 1 == x_sign:
        _run(ws, _NEGATE_X)
    f.put(ws, _PZ, _ONE)
    _run(ws, _SET_T)
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
    ws = _workspace(_AT + 32)  # builds the fixed-base table first if need be
    if not _decode_neg(ws, pk):
        return False
    h = SHA512(sig[:32])
    h.update(pk)
    h.update(msg)
    ek = _digits((int.from_bytes(h.digest(), "little") % L).to_bytes(32, "little"))
    es = _digits(sig[32:])
    to_n = [_copy4(_NP, _AT + 4 * m) for m in range(8)]  # m(-A), m = 1..8, cached
    for m in range(8):
        _run(ws, (to_n[0] + _CADD if m else b"") + _CACHE + _copy4(_AT + 4 * m, _NP))
    table = _ed._table
    _set_point(ws, _ZERO, _ONE)
    for i in range(63, -1, -1):
        if i != 63:
            _run(ws, _DBL4)
        d = ek[i]
        if d:
            _run(ws, to_n[abs(d) - 1] + (_CADD if d > 0 else _CSUB))
        d = es[i]
        if d:
            f.load(ws, _NP, table[0], abs(d))
            _run(ws, _MADD if d > 0 else _MSUB)
    return _encode(ws) == bytes(sig[:32])
