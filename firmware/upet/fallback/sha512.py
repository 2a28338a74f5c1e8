"""SHA-512 compression on Python integers (the reference for the viper kernel)."""

_M = 0xFFFFFFFFFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _M


def compress(hw, k, block):
    """Fold one 128-byte block into the state hw[0:16] (32-bit halves, high first);
    k[0:160] holds the round constants the same way."""
    w = [int.from_bytes(block[i:i + 8], "big") for i in range(0, 128, 8)]
    for t in range(16, 80):
        x = w[t - 15]
        y = w[t - 2]
        s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
        s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M)
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
        e = (d + t1) & _M
        d = c
        c = b
        b = a
        a = (t1 + s0 + maj) & _M
    for i, x in enumerate((a, b, c, d, e, f, g, hh)):
        x = (h[i] + x) & _M
        hw[2 * i] = x >> 32
        hw[2 * i + 1] = x & 0xFFFFFFFF
