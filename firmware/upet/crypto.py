"""The board's public-key crypto in one place, byte-compatible with libsodium and the
coordinator (pet/crypto.py): for apps and tests.

Ed25519 signs every message; X25519 sealed boxes (upet.box) carry messages to the
coordinator and mask seeds to the sum participants. The participant imports
upet.box, upet.x25519 and upet.ed25519 itself, so this module's code is not in its
heap; the curve modules are imported on first use here.
"""

from upet.box import SEALBYTES, Sealer, seal, seal_open, seal_open_into  # noqa: F401


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


