"""Ed25519's fixed-base table, and the curve constants and point programs that
only building it and verification need.

upet.ed25519 loads this module for the one call that builds its table
(`upet.transient`), so that a participant, which builds it once, does not keep
this code in its heap; upet.ed25519_verify imports it.
"""

from micropython import const

# Few globals (15): the module loads into a heap in small pieces, where a dict of
# more than 17 entries needs a larger one; the curve constants are in the functions.
from upet import ed25519 as _e
from upet import x25519 as _x

# Slots (see upet.ed25519): 9 2d, 10 d, 11 sqrt(-1), 12 one, 13 zero;
# 14-17 the point P, 18-21 the operand N, 22-29 temporaries TA-TH; from 30,
# in verification, 8 cached multiples of -A.
_PX = const(14)
_PY = const(15)
_PZ = const(16)
_TD = const(25)
_TE = const(26)
_TF = const(27)
AT = const(30)
# N = P in cached form
CACHE = (b"\x02\x12\x0f\x0e"  # ADD NP PY PX
         b"\x03\x13\x0f\x0e"  # SUB NM PY PX
         b"\x00\x14\x11\x09"  # MUL NT PT D2
         b"\x02\x15\x10\x10")  # ADD NZ PZ PZ
# P = P + N and P = P - N for a cached point N, with D = 2 Z1 Z2
CADD = _e.MADD[:20] + b"\x00\x19\x10\x15" + _e.MADD[24:]  # MUL TD PZ NZ
CSUB = _e.MSUB[:20] + b"\x00\x19\x10\x15" + _e.MSUB[24:]
SET_T = b"\x00\x11\x0e\x0f"  # MUL PT PX PY
# a table point (y + x, y - x, 2dxy) in TD, TE, TF
_NIELS = _e.AFFINE + (b"\x02\x19\x18\x17"  # ADD TD TC TB
                      b"\x03\x1a\x18\x17"  # SUB TE TC TB
                      b"\x00\x1b\x17\x18"  # MUL TF TB TC
                      b"\x00\x1b\x1b\x09",)  # MUL TF TF D2


def copy4(dst, src):
    """A program copying four slots from src on to dst on."""
    return bytes((6, dst, src, 0, 6, dst + 1, src + 1, 0, 6, dst + 2, src + 2, 0, 6, dst + 3, src + 3, 0))


def constants(nslots):
    """The shared workspace (upet.x25519.workspace), at least nslots large, with
    the curve constants in slots 9-13 (X25519 uses those slots too)."""
    f = _e.f
    ws = _x.workspace(nslots)
    f.put(ws, 10, b"\xa3\x78\x59\x13\xca\x4d\xeb\x75\xab\xd8\x41\x41\x4d\x0a\x70\x00"  # -121665 / 121666
          b"\x98\xe8\x79\x77\x79\x40\xc7\x8c\x73\xfe\x6f\x2b\xee\x6c\x03\x52")
    f.put(ws, 11, b"\xb0\xa0\x0e\x4a\x27\x1b\xee\xc4\x78\xe4\x2f\xad\x06\x18\x43\x2f"  # 2^((p-1)/4)
          b"\xa7\xd7\xfb\x3d\x99\x00\x4d\x2b\x0b\xdf\xc1\x4f\x80\x24\x83\x2b")
    f.put(ws, 12, _x.ONE)
    f.put(ws, 13, bytes(32))
    _e.run(ws, b"\x02\x09\x0a\x0a")  # ADD D2 DD DD
    return ws


def set_point(ws, x, y):
    """P = (x, y) in extended coordinates."""
    f = _e.f
    f.put(ws, _PX, x)
    f.put(ws, _PY, y)
    f.put(ws, _PZ, _x.ONE)
    _e.run(ws, SET_T)


def build(rows):
    """The fixed-base table of upet.ed25519 with `rows` rows. Row i: the
    identity, then m * 16^(64/rows * i) * B for m = 1..8, each as
    (y + x, y - x, 2dxy); rows are separate so no large block is needed."""
    if rows not in (1, 2, 4, 8, 16):
        raise ValueError("table rows must be 1, 2, 4, 8 or 16, not %r" % (rows,))
    f, run, one = _e.f, _e.run, _x.ONE
    table = []
    ws = constants(AT)
    set_point(ws, b"\x1a\xd5\x25\x8f\x60\x2d\x56\xc9\xb2\xa7\x25\x95\x60\xc7\x2c\x69"  # B = (x, 4/5)
              b"\x5c\xdc\xd6\xfd\x31\xe2\xa4\xc0\xfe\x53\x6e\xcd\xd3\x36\x69\x21", b"\x58" + b"\x66" * 31)
    # the first point of a row waits in slots 10-13: only 2d is needed here
    keep = copy4(10, _PX) + CACHE
    for i in range(rows):
        for _ in range(64 // rows if i else 0):
            run(ws, *_e.DBL4)
        run(ws, keep)
        row = bytearray(96 * 9)
        row[0:32] = row[32:64] = one
        for m in range(1, 9):
            if m > 1:
                run(ws, CADD)
            run(ws, *_NIELS)
            row[96 * m:96 * m + 32] = f.get(ws, _TD)
            row[96 * m + 32:96 * m + 64] = f.get(ws, _TE)
            row[96 * m + 64:96 * m + 96] = f.get(ws, _TF)
        run(ws, copy4(_PX, 10))
        table.append(row)
    return table
