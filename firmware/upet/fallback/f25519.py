"""Arithmetic mod p = 2^255 - 19 on Python integers, the same register machine
as the viper kernel: a workspace of slots and programs of 4-byte ops
(code, d, a, b).

Products are brought back near 2^255 with two folds (2^255 = 19 mod p), a
shift, a mask and a small multiply each, which is cheaper than `%`.
"""

P = (1 << 255) - 19
_M = (1 << 255) - 1


def new(nslots):
    return [0] * nslots


def put(ws, slot, data):
    """Load a 32-byte little-endian field element (bit 255 ignored) into slot."""
    ws[slot] = int.from_bytes(bytes(data[:32]), "little") & _M


def load(ws, slot, table, index):
    """Load the three field elements at table[96 * index:] into slot, slot+1, slot+2."""
    off = 96 * index
    for i in range(3):
        ws[slot + i] = int.from_bytes(bytes(table[off + 32 * i:off + 32 * i + 32]), "little")


def get(ws, slot):
    """The canonical 32-byte encoding of the element in slot."""
    return (ws[slot] % P).to_bytes(32, "little")


def run(ws, prog, n):
    """Execute n ops of prog on the workspace."""
    m = _M
    for j in range(0, 4 * n, 4):
        op = prog[j]
        d = prog[j + 1]
        a = ws[prog[j + 2]]
        b = prog[j + 3]
        if op == 0 or op == 1 or op == 5:
            reps = b if op == 5 else 1
            if op == 0:
                b = ws[b]
            for _ in range(reps):
                x = a * (b if op == 0 else a)
                x = (x & m) + 19 * (x >> 255)
                a = (x & m) + 19 * (x >> 255)
            ws[d] = a
        elif op == 2:
            ws[d] = a + ws[b]
        elif op == 3:
            ws[d] = a - ws[b]
        elif op == 4:
            x = a * 121666
            ws[d] = (x & m) + 19 * (x >> 255)
        else:
            ws[d] = a
