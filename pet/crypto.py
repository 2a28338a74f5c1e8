"""The PET primitives, byte-compatible with libsodium (the Rust coordinator uses it too).

- Ed25519 signs every message and the sortition claims (participant identity).
- X25519 sealed boxes carry messages to the coordinator's round key and mask
  seeds to the sum participants' ephemeral keys.
- SHA-256 hashes signatures for sortition and derives the next round seed.

Every failure raises `CryptoError`, except signature checks, which answer
False (see `verify`).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

SEED_BYTES = 32
SIGNING_PK_BYTES = 32
SIGNING_SK_BYTES = 64
SIGNATURE_BYTES = 64
ENCRYPT_PK_BYTES = 32
ENCRYPT_SK_BYTES = 32
SEALBYTES = 48  # ephemeral public key (32) + Poly1305 tag (16)
HEADER_BYTES = 136  # signature 64 | participant_pk 32 | coordinator_pk 32 | length 4 | tag | flags | 2

_PARTICIPANT_PK = slice(64, 96)
_LENGTH = slice(128, 132)


class CryptoError(Exception):
    """A key, box, signature or signed message that cannot be used."""


def _check_len(name: str, value: bytes, expected: int) -> bytes:
    value = bytes(value)
    if len(value) != expected:
        raise CryptoError(f"{name} must be {expected} bytes, got {len(value)}")
    return value


@dataclass(frozen=True, repr=False)
class SigningKeyPair:
    """Ed25519 key pair; `secret_key` uses libsodium's layout seed || public_key."""

    public_key: bytes
    secret_key: bytes

    def __post_init__(self):
        pk = _check_len("Ed25519 public key", self.public_key, SIGNING_PK_BYTES)
        sk = _check_len("Ed25519 secret key", self.secret_key, SIGNING_SK_BYTES)
        derived_pk, _ = sodium.crypto_sign_seed_keypair(sk[:32])
        if sk[32:] != derived_pk or pk != derived_pk:
            raise CryptoError("Ed25519 public key does not match the secret key")
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "secret_key", sk)

    @classmethod
    def generate(cls) -> SigningKeyPair:
        return cls.from_seed(nacl.utils.random(SEED_BYTES))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKeyPair:
        """The key pair libsodium's crypto_sign_seed_keypair derives from 32 bytes."""
        pk, sk = sodium.crypto_sign_seed_keypair(_check_len("Ed25519 seed", seed, SEED_BYTES))
        return cls(pk, sk)

    @classmethod
    def from_secret_key(cls, secret_key: bytes) -> SigningKeyPair:
        """Restore from a stored 64-byte libsodium secret key (seed || public key)."""
        sk = _check_len("Ed25519 secret key", secret_key, SIGNING_SK_BYTES)
        return cls(sk[32:], sk)

    @property
    def seed(self) -> bytes:
        return self.secret_key[:32]

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte signature; deterministic, so sortition outcomes are fixed per key and seed."""
        return sodium.crypto_sign(bytes(message), self.secret_key)[:SIGNATURE_BYTES]

    def __repr__(self) -> str:
        return f"SigningKeyPair(public_key={self.public_key.hex()})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `message` by `public_key`.

    A forged or garbled signature, or a public key that is no curve point, is
    just False. Arguments of the wrong length are caller bugs, not forgeries:
    they raise CryptoError.
    """
    pk = _check_len("Ed25519 public key", public_key, SIGNING_PK_BYTES)
    sig = _check_len("Ed25519 signature", signature, SIGNATURE_BYTES)
    try:
        sodium.crypto_sign_open(sig + bytes(message), pk)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


@dataclass(frozen=True, repr=False)
class EncryptKeyPair:
    """X25519 key pair for crypto_box: the coordinator's round key, a sum participant's ephemeral key."""

    public_key: bytes
    secret_key: bytes

    def __post_init__(self):
        pk = _check_len("X25519 public key", self.public_key, ENCRYPT_PK_BYTES)
        sk = _check_len("X25519 secret key", self.secret_key, ENCRYPT_SK_BYTES)
        if sodium.crypto_scalarmult_base(sk) != pk:
            raise CryptoError("X25519 public key does not match the secret key")
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "secret_key", sk)

    @classmethod
    def generate(cls) -> EncryptKeyPair:
        return cls(*sodium.crypto_box_keypair())

    @classmethod
    def from_seed(cls, seed: bytes) -> EncryptKeyPair:
        """libsodium's crypto_box_seed_keypair: secret key = SHA-512(seed)[:32]."""
        return cls(*sodium.crypto_box_seed_keypair(_check_len("X25519 seed", seed, SEED_BYTES)))

    @classmethod
    def from_secret_key(cls, secret_key: bytes) -> EncryptKeyPair:
        """Restore from a stored 32-byte secret key."""
        sk = _check_len("X25519 secret key", secret_key, ENCRYPT_SK_BYTES)
        return cls(sodium.crypto_scalarmult_base(sk), sk)

    def __repr__(self) -> str:
        return f"EncryptKeyPair(public_key={self.public_key.hex()})"


def seal(message: bytes, recipient_pk: bytes) -> bytes:
    """crypto_box_seal: anonymous encryption to `recipient_pk` with a fresh ephemeral key."""
    pk = _check_len("recipient public key", recipient_pk, ENCRYPT_PK_BYTES)
    return sodium.crypto_box_seal(bytes(message), pk)


def seal_with_ephemeral(message: bytes, recipient_pk: bytes, ephemeral: EncryptKeyPair) -> bytes:
    """crypto_box_seal with a caller-chosen ephemeral key: same bytes, reproducible.

    Output = eph_pk || crypto_box(message, nonce = BLAKE2b-192(eph_pk || recipient_pk)).
    Reusing one ephemeral key for many recipients is safe (the nonce depends on
    the recipient); reusing it for two messages to the same recipient is not.
    """
    pk = _check_len("recipient public key", recipient_pk, ENCRYPT_PK_BYTES)
    nonce = blake2b(ephemeral.public_key + pk, digest_size=24, encoder=RawEncoder)
    return ephemeral.public_key + sodium.crypto_box_easy(bytes(message), nonce, pk, ephemeral.secret_key)


def seal_open(box: bytes, recipient_pk: bytes, recipient_sk: bytes) -> bytes:
    """crypto_box_seal_open: the plaintext, or CryptoError if the box is short, altered or not for us."""
    pk = _check_len("recipient public key", recipient_pk, ENCRYPT_PK_BYTES)
    sk = _check_len("recipient secret key", recipient_sk, ENCRYPT_SK_BYTES)
    box = bytes(box)
    if len(box) < SEALBYTES:
        raise CryptoError(f"sealed box must be at least {SEALBYTES} bytes, got {len(box)}")
    try:
        return sodium.crypto_box_seal_open(box, pk, sk)
    except nacl.exceptions.CryptoError:
        raise CryptoError("sealed box does not open with this key pair") from None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(bytes(data)).digest()


def sign_message(unsigned: bytes, keys: SigningKeyPair) -> bytes:
    """Write the signature of bytes [64, length) into bytes [0, 64) of a serialized message.

    The header must already carry `keys.public_key` as participant pk and the
    full message length, since both are covered by the signature.
    """
    message = bytearray(unsigned)
    if len(message) < HEADER_BYTES:
        raise CryptoError(f"message must be at least {HEADER_BYTES} bytes, got {len(message)}")
    if message[_PARTICIPANT_PK] != keys.public_key:
        raise CryptoError("participant pk in the header is not the signing key's public key")
    length = int.from_bytes(message[_LENGTH], "big")
    if length != len(message):
        raise CryptoError(f"length field says {length}, but the message is {len(message)} bytes")
    message[:SIGNATURE_BYTES] = keys.sign(message[SIGNATURE_BYTES:])
    return bytes(message)


def verify_message(signed: bytes) -> bool:
    """Check a message's signature against the participant pk in its own header.

    As the coordinator does, the signed range is [64, length field); bytes past
    it are not covered. False for anything shorter than a header or whose
    length field is below 136 or beyond the buffer.
    """
    signed = bytes(signed)
    if len(signed) < HEADER_BYTES:
        return False
    length = int.from_bytes(signed[_LENGTH], "big")
    if not HEADER_BYTES <= length <= len(signed):
        return False
    return verify(signed[_PARTICIPANT_PK], signed[SIGNATURE_BYTES:length], signed[:SIGNATURE_BYTES])


def next_round_seed(old_seed: bytes, round_secret_key: bytes, sum_prob: float, update_prob: float) -> bytes:
    """The coordinator's next round seed (Idle phase).

    The fresh round's X25519 secret key doubles as an Ed25519 seed; it signs
    old_seed || f64_le(sum) || f64_le(update) and the seed is SHA-256 of that
    signature. Participants cannot verify it: it is coordinator-chosen randomness.
    """
    old_seed = _check_len("round seed", old_seed, SEED_BYTES)
    ed_keys = SigningKeyPair.from_seed(_check_len("round secret key", round_secret_key, ENCRYPT_SK_BYTES))
    return sha256(ed_keys.sign(old_seed + struct.pack("<dd", sum_prob, update_prob)))
