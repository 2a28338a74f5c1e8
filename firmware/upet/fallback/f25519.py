"""The kernels of X25519 and Ed25519 on Python integers: arithmetic mod
p = 2^255 - 19, the same register machine as the viper kernel (a workspace
of slots and programs of 4-byte ops (code, d, a, b)), and SHA-512's
compression function.

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


_M64 = 0xFFFFFFFFFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def sha512_compress(hw, k, block):
    """Fold one 128-byte block into the state hw[0:16] (32-bit halves, high
    first); k[0:160] holds the round constants the same way. hw[16:48], the
    viper kernel's scratch, is not used."""
    w = [int.from_bytes(block[i:i + 8], "big") for i in range(0, 128, 8)]
    for t in range(16, 80):
        x = w[t - 15]
        y = w[t - 2]
        s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
        s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M64)
    h = [(hw[i] << 32) | hw[i + 1] for i in range(0, 16, 2)]
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        s1 = _rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)
        ch = (e & f) ^ (~e & g)
        t1 = hh + s1 + ch + ((k[2 * t] << 32) | k[2 * t + 1]) + w[t]
        s0 = _rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)
        maj = (a & b) ^ (a & c) ^ (b & c)
        hh = g
        g = f
        f = e
        e = (d + t1) & _M64
        d = c
        c = b
        b = a
        a = (t1 + s0 + maj) & _M64
    for i, x in enumerate((a, b, c, d, e, f, g, hh)):
        x = (h[i] + x) & _M64
        hw[2 * i] = x >> 32
        hw[2 * i + 1] = x & 0xFFFFFFFF
