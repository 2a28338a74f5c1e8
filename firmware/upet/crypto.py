"""The board's public-key crypto, byte-compatible with libsodium and the coordinator (pet/crypto.py).

- Ed25519 signs every message; X25519 sealed boxes (crypto_box_seal) carry
  messages to the coordinator and mask seeds to the sum participants.
- A sealed box is eph_pk (32) || tag (16) || ciphertext, keyed by
  crypto_box_beforenm(X25519(eph_sk, pk)) with nonce BLAKE2b-192(eph_pk || pk).
- `Sealer` keeps one ephemeral key for many recipients: the ephemeral public
  key is computed once, each further recipient costs one scalar multiplication.

The curve modules are imported on first use, so a board that only seals does
not hold the Ed25519 code in its heap.
"""

import os

from upet import box as _box
from upet.blake2b import blake2b

SEALBYTES = 48  # ephemeral public key (32) + Poly1305 tag (16)


def x25519(scalar, u):
    """X25519(scalar, u) as libsodium's crypto_scalarmult computes it."""
    from upet.x25519 import x25519 as f
    return f(scalar, u)


def x25519_base(scalar):
    """The X25519 public key of `scalar` (crypto_scalarmult_base)."""
    from upet.x25519 import x25519_base as f
    return f(scalar)


def ed25519_public_key(seed):
    from upet.ed25519 import public_key
    return public_key(seed)


def ed25519_sign(seed, msg):
    """The detached 64-byte signature libsodium's crypto_sign makes with the key pair of `seed`."""
    from upet.ed25519 import sign
    return sign(seed, msg)


def ed25519_verify(pk, msg, sig):
    """True iff `sig` is a valid signature of `msg` by `pk`."""
    from upet.ed25519 import verify
    return verify(pk, msg, sig)


def _check(name, value, size):
    if len(value) != size:
        raise ValueError("%s must be %d bytes, got %d" % (name, size, len(value)))


def _box_key(sk, pk):
    """crypto_box_beforenm(pk, sk); an all-zero shared secret (a low-order pk) is refused, as libsodium does."""
    shared = x25519(sk, pk)
    if not any(shared):
        raise ValueError("public key of low order: no shared secret")
    return _box.beforenm(shared)


class Sealer:
    """crypto_box_seal with one ephemeral key (fresh from os.urandom unless given) for any number of recipients.

    Each box's nonce includes the recipient's key, so boxes to different
    recipients never share a nonce. A second box to the same recipient would,
    and is refused.
    """

    def __init__(self, ephemeral_sk=None):
        from upet.x25519 import x25519_base
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
        _box.seal_into(buf, 32, len(buf) - SEALBYTES, blake2b(self.public_key + pk, 24), key)

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
    return _box.secretbox_open(box, nonce, key, 32)


def seal_open_into(buf, pk, sk):
    """crypto_box_seal_open in place: buf[48:] becomes the plaintext.

    Raises ValueError, leaving the buffer unchanged, if the box does not open.
    """
    key, nonce = _open_key(buf, pk, sk)
    _box.open_into(buf, 32, len(buf) - SEALBYTES, nonce, key)
