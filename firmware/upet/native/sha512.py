"""SHA-512 compression in viper.

64-bit words are pairs of 32-bit halves (high, low). Every half is a uint
masked to 32 bits after any shift left or addition, so the result is the
same with the Unix port's 64-bit machine words and the boards' 32-bit ones.
"""

import micropython


@micropython.viper
def compress(hw: ptr32, k: ptr32, block: ptr8):
    """Fold one 128-byte block into the state hw[0:16]; k[0:160] holds the round
    constants and k[160:320] is scratch for the message schedule."""
    M = uint(0xFFFF) << 16 | uint(0xFFFF)
    w = ptr32(int(k) + 640)
    t = 0
    while t < 16:
        p = t << 3
        w[2 * t] = (uint(block[p]) << 24) | (uint(block[p + 1]) << 16) | (uint(block[p + 2]) << 8) | uint(block[p + 3])
        w[2 * t + 1] = (uint(block[p + 4]) << 24) | (uint(block[p + 5]) << 16) | (uint(block[p + 6]) << 8) | uint(block[p + 7])
        t += 1
    while t < 80:
        # s0 = rotr1 ^ rotr8 ^ shr7 of w[t-15]
        xh = uint(w[2 * t - 30])
        xl = uint(w[2 * t - 29])
        s0h = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
        s0l = ((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
        # s1 = rotr19 ^ rotr61 ^ shr6 of w[t-2]
        xh = uint(w[2 * t - 4])
        xl = uint(w[2 * t - 3])
        s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
        s1l = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
        x = s1l & M
        lo = (s0l & M) + x
        hi = (s0h & M) + (s1h & M)
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(w[2 * t - 13])
        lo += x
        hi += uint(w[2 * t - 14])
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(w[2 * t - 31])
        lo += x
        hi += uint(w[2 * t - 32])
        if (lo & M) < x:
            hi += 1
        w[2 * t] = hi & M
        w[2 * t + 1] = lo & M
        t += 1

    ah = uint(hw[0])
    al = uint(hw[1])
    bh = uint(hw[2])
    bl = uint(hw[3])
    ch = uint(hw[4])
    cl = uint(hw[5])
    dh = uint(hw[6])
    dl = uint(hw[7])
    eh = uint(hw[8])
    el = uint(hw[9])
    fh = uint(hw[10])
    fl = uint(hw[11])
    gh = uint(hw[12])
    gl = uint(hw[13])
    hh = uint(hw[14])
    hl = uint(hw[15])
    t = 0
    while t < 160:
        # t1 = h + S1(e) + ch(e, f, g) + k[t] + w[t]
        s1h = (((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))) & M
        s1l = (((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))) & M
        lo = hl + s1l
        hi = hh + s1h
        if (lo & M) < s1l:
            hi += 1
        lo &= M
        x = (el & fl) ^ ((el ^ M) & gl)
        lo += x
        hi += (eh & fh) ^ ((eh ^ M) & gh)
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(k[t + 1])
        lo += x
        hi += uint(k[t])
        if (lo & M) < x:
            hi += 1
        lo &= M
        x = uint(w[t + 1])
        lo += x
        hi += uint(w[t])
        if (lo & M) < x:
            hi += 1
        t1l = lo & M
        t1h = hi & M
        # t2 = S0(a) + maj(a, b, c)
        s0h = (((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))) & M
        s0l = (((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))) & M
        x = (al & bl) ^ (al & cl) ^ (bl & cl)
        lo = s0l + x
        hi = s0h + ((ah & bh) ^ (ah & ch) ^ (bh & ch))
        if (lo & M) < x:
            hi += 1
        t2l = lo & M
        t2h = hi & M
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        lo = dl + t1l
        hi = dh + t1h
        if (lo & M) < t1l:
            hi += 1
        eh = hi & M
        el = lo & M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        lo = t1l + t2l
        hi = t1h + t2h
        if (lo & M) < t2l:
            hi += 1
        ah = hi & M
        al = lo & M
        t += 2

    t = 0
    while t < 16:
        if t == 0:
            xh = ah
            xl = al
        elif t == 2:
            xh = bh
            xl = bl
        elif t == 4:
            xh = ch
            xl = cl
        elif t == 6:
            xh = dh
            xl = dl
        elif t == 8:
            xh = eh
            xl = el
        elif t == 10:
            xh = fh
            xl = fl
        elif t == 12:
            xh = gh
            xl = gl
        else:
            xh = hh
            xl = hl
        lo = uint(hw[t + 1]) + xl
        hi = uint(hw[t]) + xh
        if (lo & M) < xl:
            hi += 1
        hw[t] = hi & M
        hw[t + 1] = lo & M
        t += 2
