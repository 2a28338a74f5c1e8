"""Ed25519 signatures (RFC 8032, byte for byte as libsodium) on the f25519
register machine.

Points are extended twisted Edwards coordinates (X:Y:Z:T) in workspace slots.
A fixed-base product [k]B adds one precomputed multiple of B per signed
radix-16 digit of k. The 64 digits are split into `rows` interleaved groups,
row i holding 1B..8B times 16^(64/rows * i), so only 4 (64/rows - 1)
doublings remain. The table (9 points of 96 bytes a row, with the identity:
3.5 KB for the default 4 rows) is built on first use; `set_table_rows(1)`
makes it under 1 KB and signing about twice as slow.
"""

from array import array

from micropython import const

from upet import x25519 as _x
from upet.sha512 import SHA512, sha512

f = _x.f
_run = _x.run

L = (1 << 252) + 27742317777372353535851937790883648493  # order of B
_ONE = _x.ONE
_ZERO = bytes(32)
_D = (b"\xa3\x78\x59\x13\xca\x4d\xeb\x75\xab\xd8\x41\x41\x4d\x0a\x70\x00"   # -121665 / 121666
      b"\x98\xe8\x79\x77\x79\x40\xc7\x8c\x73\xfe\x6f\x2b\xee\x6c\x03\x52")
_SQRTM1 = (b"\xb0\xa0\x0e\x4a\x27\x1b\xee\xc4\x78\xe4\x2f\xad\x06\x18\x43\x2f"  # 2^((p-1)/4)
           b"\xa7\xd7\xfb\x3d\x99\x00\x4d\x2b\x0b\xdf\xc1\x4f\x80\x24\x83\x2b")
_BX = (b"\x1a\xd5\x25\x8f\x60\x2d\x56\xc9\xb2\xa7\x25\x95\x60\xc7\x2c\x69"     # B = (x, 4/5)
       b"\x5c\xdc\xd6\xfd\x31\xe2\xa4\xc0\xfe\x53\x6e\xcd\xd3\x36\x69\x21")
_BY = b"\x58" + b"\x66" * 31

# Slots (3-8 are the exponentiations', see upet.x25519): 9 2d, 10 d, 11 sqrt(-1),
# 12 one, 13 zero; 14-17 the point P = (X, Y, Z, T); 18-21 an operand N in
# cached form (Y+X, Y-X, 2dT, 2Z; table points, with Z = 1, fill the first
# three); 22-29 temporaries TA-TH; from 30, in verify, 8 cached multiples of -A.
_DD = const(10)
_SQRTM1_S = const(11)
_ONE_S = const(12)
_PX = const(14)
_PY = const(15)
_PZ = const(16)
_NP = const(18)
_TA = const(22)
_TB = const(23)
_TC = const(24)
_TD = const(25)
_TE = const(26)
_TF = const(27)
_TG = const(28)
_AT = const(30)
# P = P + N for a table point: A = (Y1-X1)(y2-x2), B = (Y1+X1)(y2+x2),
# C = T1 2dx2y2, D = 2 Z1, E = B - A, F = D - C, G = D + C, H = B + A,
# X3 = EF, Y3 = GH, T3 = EH, Z3 = FG
_MADD = (b"\x03\x16\x0f\x0e"  # SUB TA PY PX
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
_MSUB = (_MADD[:4] + b"\x00\x16\x16\x12"  # MUL TA TA NP
         + _MADD[8:12] + b"\x00\x17\x17\x13"  # MUL TB TB NM
         + _MADD[16:28] + b"\x02\x1b\x19\x18"  # ADD TF TD TC
         b"\x03\x1c\x19\x18"  # SUB TG TD TC
         + _MADD[36:])
# the same for a cached point, with D = 2 Z1 Z2
_CADD = _MADD[:20] + b"\x00\x19\x10\x15" + _MADD[24:]  # MUL TD PZ NZ
# P = 2P: A = X^2, B = Y^2, C = 2 Z^2, and the negated -H = A + B,
# -E = A + B - (X + Y)^2, -G = A - B, -F = C - G give X = EF, Y = GH, Z = FG
_DBL = (b"\x01\x16\x0e\x00"  # SQR TA PX
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
        b"\x00\x10\x1b\x1c")  # MUL PZ TF TG
_DBL4 = _DBL + _DBL + _DBL + _DBL + b"\x00\x11\x1a\x1d"  # 16P, then MUL PT TE TH for an addition
del _DBL
_CACHE = (b"\x02\x12\x0f\x0e"  # ADD NP PY PX
          b"\x03\x13\x0f\x0e"  # SUB NM PY PX
          b"\x00\x14\x11\x09"  # MUL NT PT D2
          b"\x02\x15\x10\x10")  # ADD NZ PZ PZ
# x = X/Z in TB, y = Y/Z in TC
_AFFINE = (b"\x06\x03\x10\x00"  # COPY Z PZ
           + _x.INV +
           b"\x00\x17\x0e\x04"  # MUL TB PX R
           b"\x00\x18\x0f\x04")  # MUL TC PY R
# a table point (y + x, y - x, 2dxy) in TD, TE, TF
_NIELS = _AFFINE + (b"\x02\x19\x18\x17"  # ADD TD TC TB
                    b"\x03\x1a\x18\x17"  # SUB TE TC TB
                    b"\x00\x1b\x17\x18"  # MUL TF TB TC
                    b"\x00\x1b\x1b\x09")  # MUL TF TF D2
# the Montgomery u = (Z + Y) / (Z - Y) in TB
_TO_U = (b"\x03\x03\x10\x0f"  # SUB Z PZ PY
         + _x.INV +
         b"\x02\x17\x10\x0f"  # ADD TB PZ PY
         b"\x00\x17\x17\x04")  # MUL TB TB R
_SET_T = b"\x00\x11\x0e\x0f"  # MUL PT PX PY
_SET_D2 = b"\x02\x09\x0a\x0a"  # ADD D2 DD DD


def _copy4(dst, src):
    """A program copying four slots from src on to dst on."""
    return bytes((6, dst, src, 0, 6, dst + 1, src + 1, 0, 6, dst + 2, src + 2, 0, 6, dst + 3, src + 3, 0))


def _constants(nslots):
    """The shared workspace (upet.x25519.workspace) with the curve constants in place."""
    ws = _x.workspace(nslots)
    f.put(ws, _DD, _D)
    f.put(ws, _SQRTM1_S, _SQRTM1)
    f.put(ws, _ONE_S, _ONE)
    _run(ws, _SET_D2)
    return ws


def _workspace(nslots):
    """The workspace for an operation; the fixed-base table is built first, as
    building it uses the same workspace."""
    if _table is None:
        _build_table()
    return _constants(nslots)


def _set_point(ws, x, y):
    """P = (x, y) in extended coordinates."""
    f.put(ws, _PX, x)
    f.put(ws, _PY, y)
    f.put(ws, _PZ, _ONE)
    _run(ws, _SET_T)


_rows = 4
_table = None


def set_table_rows(rows):
    """Rows of the fixed-base table: 1, 2, 4 (default), 8 or 16, at 864 bytes
    a row; the table is rebuilt on next use."""
    global _rows, _table
    if rows not in (1, 2, 4, 8, 16):
        raise ValueError("table rows must be 1, 2, 4, 8 or 16")
    _rows = rows
    _table = None


def _build_table():
    """Row i: the identity, then m * 16^(64/rows * i) * B for m = 1..8, each as
    (y + x, y - x, 2dxy); rows are separate so no large block is needed."""
    global _table
    table = []
    ws = _constants(_AT + 4)
    _set_point(ws, _BX, _BY)
    keep = _copy4(_AT, _PX) + _CACHE
    for i in range(_rows):
        for _ in range(64 // _rows if i else 0):
            _run(ws, _DBL4)
        _run(ws, keep)
        row = bytearray(96 * 9)
        row[0:32] = row[32:64] = _ONE
        for m in range(1, 9):
            if m > 1:
                _run(ws, _CADD)
            _run(ws, _NIELS)
            row[96 * m:96 * m + 32] = f.get(ws, _TD)
            row[96 * m + 32:96 * m + 64] = f.get(ws, _TE)
            row[96 * m + 64:96 * m + 96] = f.get(ws, _TF)
        _run(ws, _copy4(_PX, _AT))
        table.append(row)
    _table = table


def _digits(k):
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


def _base_mul(ws, k):
    """P = [k]B with the same sequence of operations for every k (ws from _workspace)."""
    table = _table
    rows = _rows
    span = 64 // rows
    e = _digits(k)
    _set_point(ws, _ZERO, _ONE)
    load = f.load
    fr = f.run
    n = len(_MADD) >> 2
    for r in range(span - 1, -1, -1):
        if r != span - 1:
            _run(ws, _DBL4)
        for i in range(rows):
            d = e[span * i + r]
            load(ws, _NP, table[i], d if d >= 0 else -d)
            fr(ws, _MADD if d >= 0 else _MSUB, n)


def _encode(ws):
    """The 32-byte encoding of P: y with the parity of x in bit 255."""
    _run(ws, _AFFINE)
    y = bytearray(f.get(ws, _TC))
    y[31] |= (f.get(ws, _TB)[0] & 1) << 7
    return bytes(y)


def _clamp(k):
    k = bytearray(k[:32])
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return k


def _expand(seed):
    """SHA-512 of the seed: the secret scalar (clamped) is its first half, the
    nonce prefix its second."""
    if len(seed) != 32:
        raise ValueError("Ed25519 seeds are 32 bytes")
    return sha512(seed)


def _public(h):
    ws = _workspace(_AT)
    _base_mul(ws, _clamp(h))
    return _encode(ws)


def public_key(seed):
    """The Ed25519 public key of a 32-byte seed."""
    return _public(_expand(seed))


def x25519_base(scalar):
    """clamp(scalar) * 9 on Curve25519, via [k]B and u = (1 + y) / (1 - y)."""
    if len(scalar) != 32:
        raise ValueError("X25519 takes a 32-byte scalar")
    ws = _workspace(_AT)
    _base_mul(ws, _clamp(scalar))
    _run(ws, _TO_U)
    return f.get(ws, _TB)


def _sign(h, pk, msg):
    hr = SHA512(h[32:])
    hr.update(msg)
    r = int.from_bytes(hr.digest(), "little") % L
    ws = _workspace(_AT)
    _base_mul(ws, r.to_bytes(32, "little"))
    R = _encode(ws)
    hk = SHA512(R)
    hk.update(pk)
    hk.update(msg)
    k = int.from_bytes(hk.digest(), "little") % L
    return R + ((r + k * int.from_bytes(_clamp(h), "little")) % L).to_bytes(32, "little")


def sign_with_pk(seed, pk, msg):
    """sign(), given the public key of seed, as libsodium's 64-byte secret keys carry it."""
    if len(pk) != 32:
        raise ValueError("Ed25519 public keys are 32 bytes")
    return _sign(_expand(seed), pk, msg)


_last = None  # (SHA-512 of a seed, its public key): the key sign() used last


def sign(seed, msg):
    """The 64-byte RFC 8032 signature R || S of msg by the key of a 32-byte seed.

    The public key of the last seed is remembered (as libsodium's secret key
    carries it), since a participant signs all its messages with one key."""
    global _last
    h = _expand(seed)
    if _last is None or _last[0] != h:
        _last = (h, _public(h))
    return _sign(h, _last[1], msg)


def verify(pk, msg, sig):
    """True when sig is a valid signature of msg under the public key pk."""
    from upet.ed25519_verify import verify as v  # loaded on first use: a participant only signs
    return v(pk, msg, sig)
