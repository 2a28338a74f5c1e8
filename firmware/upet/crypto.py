"""The board's public-key crypto in one place, byte-compatible with libsodium and the
coordinator (pet/crypto.py): for apps and tests.

Ed25519 signs every message; X25519 sealed boxes (upet.box) carry messages to the
coordinator and mask seeds to the sum participants. The participant imports
upet.box, upet.x25519 and upet.ed25519 itself, and only what works in place, so the
forms here that return new bytes are not in its heap; the curve modules are imported
on first use here.
"""

from upet import box as _box

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


def ed25519_sign_with_pk(seed, pk, msg):
    """ed25519_sign, given the public key of seed (as libsodium's 64-byte secret keys
    carry it), so that it is not derived again: upet.ed25519 remembers it as the key
    pair of seed."""
    from upet import ed25519
    if len(seed) != 32 or len(pk) != 32:
        raise ValueError("Ed25519 seeds and public keys are 32 bytes")
    ed25519._last = (ed25519.sha512(seed), bytes(pk))
    return ed25519.sign(seed, msg)


def ed25519_verify(pk, msg, sig):
    """True iff `sig` is a valid signature of `msg` by `pk`."""
    from upet.ed25519_verify import verify
    return verify(pk, msg, sig)


def secretbox(msg, nonce, key):
    """crypto_secretbox_easy: tag (16) || ciphertext."""
    _check_secretbox(nonce, key)
    out = bytearray(16 + len(msg))
    out[16:] = msg
    _box.secretbox_into(out, nonce, key, False)
    return bytes(out)


def secretbox_open(box, nonce, key):
    """crypto_secretbox_open_easy: the plaintext, or ValueError when the box is short or does not authenticate."""
    _check_secretbox(nonce, key)
    if len(box) < 16:
        raise ValueError("box must be at least 16 bytes, got %d" % len(box))
    out = bytearray(box)
    _box.secretbox_into(out, nonce, key, True)
    return bytes(out[16:])


def _check_secretbox(nonce, key):
    if len(key) != 32 or len(nonce) != 24:
        raise ValueError("secretbox needs a 32-byte key and a 24-byte nonce")


class Sealer(_box.Sealer):
    """upet.box.Sealer (one ephemeral key, any number of recipients, `seal_into`,
    `seal_pieces`) with `seal`, which returns a new box."""

    def seal(self, msg, pk):
        """The sealed box of `msg` to `pk`: eph_pk || tag || ciphertext (48 bytes longer than msg)."""
        out = bytearray(SEALBYTES + len(msg))
        out[SEALBYTES:] = msg
        self.seal_into(out, pk)
        return bytes(out)


def seal(msg, pk, ephemeral_sk=None):
    """libsodium's crypto_box_seal of `msg` to `pk`; reproducible when the ephemeral key is given."""
    return Sealer(ephemeral_sk).seal(msg, pk)


def seal_open_into(buf, pk, sk):
    """crypto_box_seal_open in place: buf[48:] becomes the plaintext (upet.seeds', where a
    sum participant opens its seeds); ValueError, leaving buf unchanged, when it does not open."""
    from upet.seeds import seal_open_into as f
    f(buf, pk, sk)


def seal_open(box, pk, sk):
    """crypto_box_seal_open: the plaintext, or ValueError when the box is short, altered or not for this key pair."""
    buf = bytearray(box)
    seal_open_into(buf, pk, sk)
    return bytes(buf[SEALBYTES:])
