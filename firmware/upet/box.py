"""Sealed boxes (libsodium's crypto_box_seal) in place, with the primitives they need.

A sealed box to pk is eph_pk (32) || tag (16) || ciphertext: the secretbox of
the message under crypto_box_beforenm(X25519(eph_sk, pk)) = HSalsa20 of the
shared secret (zero nonce), with the nonce BLAKE2b-192(eph_pk || pk). A
secretbox (XSalsa20-Poly1305) is the 16-byte tag, then the message XORed with
the XSalsa20 keystream from byte 32 on; the tag is the Poly1305 tag of the
ciphertext under the keystream's first 32 bytes.

`Sealer` keeps one ephemeral key for many recipients: its public key is
computed once, each further recipient costs one scalar multiplication. Sealing
works in place on the caller's buffer, so a message costs no second copy of
itself; `Sealer.seal_pieces` seals a message larger than the heap, a piece at a
time. Opening in place (`seal_open_into`) is upet.seeds', as only a sum
participant opens boxes; upet.crypto adds the forms that return new bytes.

Kernels (`upet.kernels.load("box")`: upet/native/box.py, or the Python
fallback): `salsa20_xor` XORs the keystream on a 128-byte state, the 16-word
Salsa20 input (constants, key, nonce, 64-bit block counter, little-endian
words) then one block of keystream, through ptr32 in the byte order of the
board (all the supported ones are little-endian); `poly1305_blocks` absorbs
blocks into a state of 10-limb h, r and 5 r; `blake2b_compress` is BLAKE2b's
compression function (on boards, 64-bit words in plain Python are big integers).
"""

import os
import struct

from upet import transient
from upet.x25519 import x25519, x25519_base

_k = transient("kernels", "load", "box")
_SIGMA = b"expand 32-byte k"  # Salsa20's constants, words 0, 5, 10, 15
_IV = (b"\x08\xc9\xbc\xf3\x67\xe6\x09\x6a\x3b\xa7\xca\x84\x85\xae\x67\xbb"  # BLAKE2b's, 8 little-endian words
       b"\x2b\xf8\x94\xfe\x72\xf3\x6e\x3c\xf1\x36\x1d\x5f\x3a\xf5\x4f\xa5"
       b"\xd1\x82\xe6\xad\x7f\x52\x0e\x51\x1f\x6c\x3e\x2b\x8c\x68\x05\x9b"
       b"\x6b\xbd\x41\xfb\xab\xd9\x83\x1f\x79\x21\x7e\x13\x19\xcd\xe0\x5b")


def salsa_state(key, nonce16):
    """The Salsa20 input for a 32-byte key with words 6..9 (nonce and counter) set to nonce16."""
    s = bytearray(128)
    for i in range(4):
        s[20 * i:20 * i + 4] = _SIGMA[4 * i:4 * i + 4]
    s[4:20] = key[0:16]
    s[24:40] = nonce16
    s[44:60] = key[16:32]
    return s


def hsalsa20(key, nonce16):
    """HSalsa20: words 0, 5, 10, 15, 6, 7, 8, 9 of the Salsa20 rounds, without the final addition.

    The kernel adds the input back (as a stream block does), so it is
    subtracted again here; the input words there are the constants and the nonce.
    """
    z = bytearray(64)
    _k.salsa20_xor(salsa_state(key, nonce16), z, 0, 64, 0)  # XOR onto zeros: the block itself
    x = struct.unpack("<8I", _SIGMA + bytes(nonce16))
    for j in range(8):
        i = 4 * b"\x00\x05\x0a\x0f\x06\x07\x08\x09"[j]
        struct.pack_into("<I", z, 4 * j, (struct.unpack_from("<I", z, i)[0] - x[j]) & 0xFFFFFFFF)
    return bytes(z[0:32])


def _poly_state(key):
    """Poly1305's state for a one-time 32-byte key: h, r and 5 r as 10 limbs of 13 bits each."""
    r = int.from_bytes(key[0:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    st = bytearray(120)
    for i in range(10):
        limb = (r >> (13 * i)) & 0x1FFF
        struct.pack_into("<I", st, 40 + 4 * i, limb)
        struct.pack_into("<I", st, 80 + 4 * i, 5 * limb)
    return st


def _poly_absorb(st, data):
    """Takes in data; a short last block (only the last piece of a message may have one)
    is padded with 1 then zeros."""
    n = len(data)
    full = n & ~15
    _k.poly1305_blocks(st, data, 0, full, 1)
    if full < n:
        last = bytearray(16)
        last[0:n - full] = memoryview(data)[full:]
        last[n - full] = 1
        _k.poly1305_blocks(st, last, 0, 16, 0)


def _poly_tag(st, key):
    """h mod 2^130 - 5, plus the key's second half, mod 2^128."""
    h = 0
    for i in range(9, -1, -1):
        h = (h << 13) + struct.unpack_from("<I", st, 4 * i)[0]
    return ((h % ((1 << 130) - 5) + int.from_bytes(key[16:32], "little")) & ((1 << 128) - 1)).to_bytes(16, "little")


def poly1305(key, data):
    """The Poly1305 tag of data under a one-time 32-byte key."""
    st = _poly_state(key)
    _poly_absorb(st, data)
    return _poly_tag(st, key)


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
        _k.blake2b_compress(state, block, off + take, last)
        off += take
        if last:
            return bytes(state[0:digest_size])


def _xsalsa20(nonce, key):
    """(the XSalsa20 state, the one-time Poly1305 key: the keystream's first 32 bytes)."""
    s = salsa_state(hsalsa20(key, nonce[0:16]), bytes(nonce[16:24]) + bytes(8))
    otk = bytearray(32)
    _k.salsa20_xor(s, otk, 0, 32, 0)
    return s, otk


def secretbox_into(box, nonce, key, opening):
    """crypto_secretbox_easy in place on box = tag (16) || message, with a
    24-byte nonce and 32-byte key: seals the message into ciphertext and tag,
    or, opening, the ciphertext into the message.

    Opening raises ValueError, leaving the box as it was, when the tag does not match.
    """
    s, otk = _xsalsa20(nonce, key)
    n = len(box) - 16
    if not opening:
        _k.salsa20_xor(s, box, 16, n, 32)
    tag = poly1305(otk, memoryview(box)[16:])
    if opening:
        d = 0
        for i in range(16):  # no early exit: timing does not tell where the tags differ
            d |= tag[i] ^ box[i]
        if d:
            raise ValueError("box does not authenticate")
        _k.salsa20_xor(s, box, 16, n, 32)
    else:
        box[0:16] = tag


def _beforenm(sk, pk):
    """crypto_box_beforenm(pk, sk); an all-zero shared secret (a low-order pk) is refused,
    as libsodium does."""
    shared = x25519(sk, pk)
    if not any(shared):
        raise ValueError("public key of low order")
    return hsalsa20(shared, bytes(16))


def box_into(buf, sk, pk, nonce, opening):
    """secretbox_into on buf[32:] under crypto_box_beforenm(pk, sk)."""
    secretbox_into(memoryview(buf)[32:], nonce, _beforenm(sk, pk), opening)


class Sealer:
    """crypto_box_seal with one ephemeral key (fresh from os.urandom unless given) for any number of recipients.

    Each box's nonce includes the recipient's key, so boxes to different
    recipients never share a nonce. A second box to the same recipient would,
    and is refused.
    """

    def __init__(self, ephemeral_sk=None):
        sk = os.urandom(32) if ephemeral_sk is None else bytes(ephemeral_sk)
        if len(sk) != 32:
            raise ValueError("keys are 32 bytes")
        self._sk = sk
        self.public_key = x25519_base(sk)
        self._sealed = set()

    def _recipient(self, pk):
        pk = bytes(pk)
        if len(pk) != 32:
            raise ValueError("keys are 32 bytes")
        if pk in self._sealed:
            raise ValueError("already sealed to this recipient")
        self._sealed.add(pk)
        return pk

    def seal_into(self, buf, pk):
        """Seal in place: the message at buf[48:] becomes its ciphertext, buf[:48] receives eph_pk || tag."""
        if len(buf) < 48:
            raise ValueError("a sealed box is at least 48 bytes")
        pk = self._recipient(pk)
        box_into(buf, self._sk, pk, blake2b(self.public_key + pk, 24), False)
        buf[0:32] = self.public_key

    def seal_pieces(self, pk, pieces):
        """Seal a message that arrives in pieces: each buffer `pieces` yields becomes its
        ciphertext in place before the next is asked for (so the caller can write it
        back where it came from); every piece but the last must be a multiple of 16
        bytes long. Returns what goes before the ciphertext: eph_pk || tag."""
        pk = self._recipient(pk)
        s, otk = _xsalsa20(blake2b(self.public_key + pk, 24), _beforenm(self._sk, pk))
        st, done, short = _poly_state(otk), 32, False
        for piece in pieces:
            if short:
                raise ValueError("only the last piece may be shorter than a multiple of 16 bytes")
            n = len(piece)
            _k.salsa20_xor(s, piece, 0, n, done & 63)  # the keystream goes on in the same block
            _poly_absorb(st, piece)
            done += n
            short = n & 15
        return self.public_key + _poly_tag(st, otk)

