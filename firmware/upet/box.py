"""crypto_secretbox and sealed boxes (crypto_box_seal) as libsodium lays them out.

A secretbox is XSalsa20-Poly1305 with the 16-byte tag in front: the one-time
Poly1305 key is the first 32 bytes of the XSalsa20 keystream, the message is
XORed with the keystream from byte 32 on. A sealed box is eph_pk (32) || tag
(16) || ciphertext, keyed by crypto_box_beforenm(X25519(eph_sk, pk)) with nonce
BLAKE2b-192(eph_pk || pk). `Sealer` keeps one ephemeral key for many
recipients: its public key is computed once, each further recipient costs one
scalar multiplication. The `_into` functions work in place on a caller's
buffer, so a message costs no second copy of itself.
"""

import os

from upet.blake2b import blake2b
from upet.poly1305 import Poly1305, equal
from upet.salsa import XSalsa20, hsalsa20
from upet.x25519 import x25519, x25519_base

KEYBYTES = 32
NONCEBYTES = 24
MACBYTES = 16
SEALBYTES = 48  # ephemeral public key (32) + Poly1305 tag (16)
_ZERO16 = bytes(16)


def beforenm(shared):
    """crypto_box_beforenm: the secretbox key for an X25519 shared secret (HSalsa20, zero nonce)."""
    return hsalsa20(shared, _ZERO16)


def _start(key, nonce):
    """The keystream positioned at the message, and the MAC keyed with the keystream's first 32 bytes."""
    if len(key) != KEYBYTES or len(nonce) != NONCEBYTES:
        raise ValueError("secretbox needs a 32-byte key and a 24-byte nonce")
    stream = XSalsa20(key, nonce)
    otk = bytearray(32)
    stream.xor(otk)
    return stream, Poly1305(otk)


def seal_into(buf, off, n, nonce, key):
    """crypto_secretbox_easy in place: the n message bytes at buf[off+16:] become ciphertext.

    The tag goes to buf[off:off+16].
    """
    stream, mac = _start(key, nonce)
    stream.xor(buf, off + MACBYTES, n)
    mac.update(buf, off + MACBYTES, n)
    buf[off:off + MACBYTES] = mac.digest()


def open_into(buf, off, n, nonce, key):
    """crypto_secretbox_open_easy in place on the box buf[off:off+16+n]: the plaintext replaces the n ciphertext bytes.

    Raises ValueError, leaving the buffer as it was, when the tag does not match.
    """
    stream, mac = _start(key, nonce)
    mac.update(buf, off + MACBYTES, n)
    if not equal(mac.digest(), memoryview(buf)[off:off + MACBYTES]):
        raise ValueError("box does not authenticate: wrong key or altered bytes")
    stream.xor(buf, off + MACBYTES, n)


def secretbox(msg, nonce, key):
    """crypto_secretbox_easy: tag (16) || ciphertext."""
    out = bytearray(MACBYTES + len(msg))
    out[MACBYTES:] = msg
    seal_into(out, 0, len(msg), nonce, key)
    return bytes(out)


def secretbox_open(box, nonce, key, off=0):
    """crypto_secretbox_open_easy of box[off:]: the plaintext, or ValueError when it is short or does not authenticate.

    The tag is checked on `box` itself, so only the plaintext is allocated.
    """
    n = len(box) - off - MACBYTES
    if n < 0:
        raise ValueError("box must be at least 16 bytes, got %d" % (len(box) - off))
    stream, mac = _start(key, nonce)
    mac.update(box, off + MACBYTES, n)
    if not equal(mac.digest(), memoryview(box)[off:off + MACBYTES]):
        raise ValueError("box does not authenticate: wrong key or altered bytes")
    out = bytearray(memoryview(box)[off + MACBYTES:])
    stream.xor(out)
    return bytes(out)


# -- sealed boxes (crypto_box_seal) ----------------------------------------------------------


def _check(name, value, size):
    if len(value) != size:
        raise ValueError("%s must be %d bytes, got %d" % (name, size, len(value)))


def _box_key(sk, pk):
    """crypto_box_beforenm(pk, sk); an all-zero shared secret (a low-order pk) is refused, as libsodium does."""
    shared = x25519(sk, pk)
    if not any(shared):
        raise ValueError("public key of low order: no shared secret")
    return beforenm(shared)


class Sealer:
    """crypto_box_seal with one ephemeral key (fresh from os.urandom unless given) for any number of recipients.

    Each box's nonce includes the recipient's key, so boxes to different
    recipients never share a nonce. A second box to the same recipient would,
    and is refused.
    """

    def __init__(self, ephemeral_sk=None):
        sk = os.urandom(32) if ephemeral_sk is None else bytes(ephemeral_sk)
        _check("ephemeral secret key", sk, 32)
        self._sk = sk
        self.public_key = x25519_base(sk)
        self._sealed = set()

    def seal_into(self, buf, pk):
        """Seal in place: the message at buf[48:] becomes its ciphertext, buf[:48] receives eph_pk || tag."""
        pk = bytes(pk)
        _check("recipient public key", pk, 32)
        if len(buf) < SEALBYTES:
            raise ValueError("buffer must hold 48 bytes before the message")
        if pk in self._sealed:
            raise ValueError("already sealed to this recipient with this ephemeral key")
        key = _box_key(self._sk, pk)
        self._sealed.add(pk)
        buf[0:32] = self.public_key
        seal_into(buf, 32, len(buf) - SEALBYTES, blake2b(self.public_key + pk, 24), key)

    def seal(self, msg, pk):
        """The sealed box of `msg` to `pk`: eph_pk || tag || ciphertext (48 bytes longer than msg).

        Holds the message, the box and its copy as bytes at once; `seal_into`
        needs only the box.
        """
        out = bytearray(SEALBYTES + len(msg))
        out[SEALBYTES:] = msg
        self.seal_into(out, pk)
        return bytes(out)


def seal(msg, pk, ephemeral_sk=None):
    """libsodium's crypto_box_seal of `msg` to `pk`; reproducible when the ephemeral key is given."""
    return Sealer(ephemeral_sk).seal(msg, pk)


def _open_key(box, pk, sk):
    """The secretbox key and nonce of a sealed box to (pk, sk)."""
    _check("recipient public key", pk, 32)
    _check("recipient secret key", sk, 32)
    if len(box) < SEALBYTES:
        raise ValueError("sealed box must be at least %d bytes, got %d" % (SEALBYTES, len(box)))
    eph_pk = bytes(box[0:32])
    return _box_key(sk, eph_pk), blake2b(eph_pk + bytes(pk), 24)


def seal_open(box, pk, sk):
    """crypto_box_seal_open: the plaintext, or ValueError when the box is short, altered or not for this key pair."""
    key, nonce = _open_key(box, pk, sk)
    return secretbox_open(box, nonce, key, 32)


def seal_open_into(buf, pk, sk):
    """crypto_box_seal_open in place: buf[48:] becomes the plaintext.

    Raises ValueError, leaving the buffer unchanged, if the box does not open.
    """
    key, nonce = _open_key(buf, pk, sk)
    open_into(buf, 32, len(buf) - SEALBYTES, nonce, key)
