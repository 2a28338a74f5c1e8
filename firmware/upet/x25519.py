"""X25519 (RFC 7748) on the f25519 register machine, which Ed25519 shares.

Programs are bytes of 4-byte ops (code, d, a, b), code 0 MUL, 1 SQR, 2 ADD,
3 SUB, 4 MULK (times 121666), 5 SQRN (b squarings), 6 COPY; see
upet/native/f25519.py. They are written out as literals, one op a line,
because program text and an assembler would stay in a board's RAM.

The Montgomery ladder runs one 18-op program per scalar bit. The conditional
swap is a choice between two copies of the program with the roles of
(x2, z2) and (x3, z3) exchanged, so no data moves.
"""

import sys
from micropython import const

from upet import transient

f = transient("kernels", "load", "f25519")  # the loader leaves the heap again

ONE = b"\x01" + bytes(31)

# Slots 0-2 are the machine's scratch; 3-8 belong to the exponentiations,
# which Ed25519 shares: z in 3, the result in 4, temporaries 5-8.
# INV: 4 = 1/3 = 3^(2^255 - 21), through 6 = 3^(2^250 - 1) and 5 = 3^11
# (upet.ed25519_verify replaces its last two ops to get 3^((p-5)/8)).
INV = (b"\x01\x05\x03\x00"  # SQR T0 Z
       b"\x05\x06\x05\x02"  # SQRN T1 T0 2
       b"\x00\x06\x06\x03"  # MUL T1 T1 Z         z^9
       b"\x00\x05\x05\x06"  # MUL T0 T0 T1        z^11
       b"\x01\x07\x05\x00"  # SQR T2 T0
       b"\x00\x06\x07\x06"  # MUL T1 T2 T1        z^(2^5 - 1)
       b"\x05\x07\x06\x05"  # SQRN T2 T1 5
       b"\x00\x06\x07\x06"  # MUL T1 T2 T1        z^(2^10 - 1)
       b"\x05\x07\x06\x0a"  # SQRN T2 T1 10
       b"\x00\x07\x07\x06"  # MUL T2 T2 T1        z^(2^20 - 1)
       b"\x05\x08\x07\x14"  # SQRN T3 T2 20
       b"\x00\x07\x08\x07"  # MUL T2 T3 T2        z^(2^40 - 1)
       b"\x05\x07\x07\x0a"  # SQRN T2 T2 10
       b"\x00\x06\x07\x06"  # MUL T1 T2 T1        z^(2^50 - 1)
       b"\x05\x07\x06\x32"  # SQRN T2 T1 50
       b"\x00\x07\x07\x06"  # MUL T2 T2 T1        z^(2^100 - 1)
       b"\x05\x08\x07\x64"  # SQRN T3 T2 100
       b"\x00\x07\x08\x07"  # MUL T2 T3 T2        z^(2^200 - 1)
       b"\x05\x07\x07\x32"  # SQRN T2 T2 50
       b"\x00\x06\x07\x06"  # MUL T1 T2 T1        z^(2^250 - 1)
       b"\x05\x06\x06\x05"  # SQRN T1 T1 5
       b"\x00\x04\x06\x05")  # MUL R T1 T0         R = Z^(2^255 - 21) = 1/Z

# Ladder slots: 9 u, 10 x2, 11 z2, 12 x3, 13 z3, then 14 A, 15 B, 16 C, 17 D,
# 18 AA, 19 BB, 20 E, 21 DA, 22 CB, 23 T.
_U = const(9)
_X2 = const(10)
_X3 = const(12)
_Z3 = const(13)
_NSLOTS = const(24)
_STEP = (b"\x02\x0e\x0a\x0b"  # ADD A X2 Z2
         b"\x03\x0f\x0a\x0b"  # SUB B X2 Z2
         b"\x02\x10\x0c\x0d"  # ADD C X3 Z3
         b"\x03\x11\x0c\x0d"  # SUB D X3 Z3
         b"\x01\x12\x0e\x00"  # SQR AA A
         b"\x01\x13\x0f\x00"  # SQR BB B
         b"\x00\x15\x11\x0e"  # MUL DA D A
         b"\x00\x16\x10\x0f"  # MUL CB C B
         b"\x03\x14\x12\x13"  # SUB E AA BB
         b"\x02\x17\x15\x16"  # ADD T DA CB
         b"\x01\x0c\x17\x00"  # SQR X3 T            x3 = (DA + CB)^2
         b"\x03\x17\x15\x16"  # SUB T DA CB
         b"\x01\x17\x17\x00"  # SQR T T
         b"\x00\x0d\x09\x17"  # MUL Z3 U T          z3 = u (DA - CB)^2
         b"\x00\x0a\x12\x13"  # MUL X2 AA BB        x2 = AA BB
         b"\x04\x17\x14\x00"  # MULK T E
         b"\x02\x17\x17\x13"  # ADD T T BB
         b"\x00\x0b\x14\x17")  # MUL Z2 E T         z2 = E (BB + 121666 E)
_STEPS = (_STEP, bytes(b ^ 6 if i & 3 and 10 <= b <= 13 else b  # x2 <-> x3, z2 <-> z3
                       for i, b in enumerate(_STEP)))
del _STEP


def run(ws, *progs):
    """Run the programs on the workspace, one after another."""
    for prog in progs:
        f.run(ws, prog, len(prog) >> 2)


# The one workspace X25519 and Ed25519 share, allocated when this module loads, while the
# heap is still in large pieces, and kept: fresh 1 KB blocks per operation would fragment
# a small heap. 30 slots is what Ed25519 signing and building its fixed-base table need;
# only verification asks for more.
_ws_slots = 30
_ws = f.new(_ws_slots)


def workspace(nslots):
    """The shared workspace, at least nslots large."""
    global _ws, _ws_slots
    if nslots > _ws_slots:
        _ws = None
        _ws, _ws_slots = f.new(nslots), nslots
    return _ws


def x25519(scalar, u):
    """RFC 7748 X25519: the u-coordinate of clamp(scalar) * u, 32 bytes."""
    if len(scalar) != 32 or len(u) != 32:
        raise ValueError("X25519 takes a 32-byte scalar and a 32-byte u-coordinate")
    k = bytearray(scalar)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    ws = workspace(_NSLOTS)
    f.put(ws, _U, u)
    f.put(ws, _X2, ONE)
    f.put(ws, _X2 + 1, bytes(32))  # z2; the workspace is shared, so nothing is zero to begin with
    f.put(ws, _X3, u)
    f.put(ws, _Z3, ONE)
    step0, step1 = _STEPS
    n = len(step0) >> 2
    fr = f.run
    for i in range(254, -1, -1):
        fr(ws, step1 if (k[i >> 3] >> (i & 7)) & 1 else step0, n)
    run(ws, b"\x06\x03\x0b\x00", INV, b"\x00\x0a\x0a\x04")  # COPY Z Z2, R = 1/Z, MUL X2 X2 R
    return f.get(ws, _X2)


def x25519_base(scalar):
    """The X25519 public key of scalar: clamp(scalar) * 9. Through Ed25519's
    fixed-base table when upet.ed25519 is loaded (about twice as fast), else
    by the ladder, so that sealing alone does not bring the Ed25519 code and
    table into the heap."""
    ed25519 = sys.modules.get("upet.ed25519")
    if ed25519 is not None:
        return ed25519.x25519_base(scalar)
    return x25519(scalar, b"\x09" + bytes(31))
