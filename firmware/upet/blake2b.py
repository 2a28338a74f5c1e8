"""BLAKE2b (RFC 7693), unkeyed: sealed boxes take their nonce as BLAKE2b-192(eph_pk || recipient_pk).

The compression function is a kernel (upet/native/blake2b.py, or its Python
fallback): on boards, 64-bit words in plain Python are big integers.
"""

from upet import kernels

_k = kernels.load("blake2b")
_IV = (b"\x08\xc9\xbc\xf3\x67\xe6\x09\x6a\x3b\xa7\xca\x84\x85\xae\x67\xbb"
       b"\x2b\xf8\x94\xfe\x72\xf3\x6e\x3c\xf1\x36\x1d\x5f\x3a\xf5\x4f\xa5"
       b"\xd1\x82\xe6\xad\x7f\x52\x0e\x51\x1f\x6c\x3e\x2b\x8c\x68\x05\x9b"
       b"\x6b\xbd\x41\xfb\xab\xd9\x83\x1f\x79\x21\x7e\x13\x19\xcd\xe0\x5b")  # 8 little-endian words


def blake2b(data, digest_size=64):
    """The unkeyed BLAKE2b digest of `data` (under 2^30 bytes), `digest_size` bytes (1..64)."""
    if not 1 <= digest_size <= 64:
        raise ValueError("BLAKE2b digest size must be 1..64")
    state = bytearray(192)  # chaining value h, then the work vector
    state[0:64] = _IV
    state[0] ^= digest_size  # parameter block: digest size, no key, fanout 1, depth 1
    state[2] ^= 1
    state[3] ^= 1
    block = bytearray(128)
    n = len(data)
    off = 0
    while True:
        take = min(128, n - off)
        last = off + take == n
        block[0:take] = data[off:off + take]
        if take < 128:
            block[take:128] = bytes(128 - take)
        state[64:128] = state[0:64]
        state[128:192] = _IV
        _k.compress(state, block, off + take, last)
        off += take
        if last:
            return bytes(state[0:digest_size])
