import hashlib
import struct

import nacl.bindings
import nacl.public
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pet.crypto import (
    SEALBYTES,
    CryptoError,
    EncryptKeyPair,
    SigningKeyPair,
    next_round_seed,
    seal,
    seal_open,
    seal_with_ephemeral,
    sha256,
    sign_message,
    verify,
    verify_message,
)

# RFC 8032 section 7.1, TEST 1
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PK = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def keys(n: int) -> SigningKeyPair:
    return SigningKeyPair.from_seed(bytes([n]) * 32)


def enc_keys(n: int) -> EncryptKeyPair:
    return EncryptKeyPair.from_seed(bytes([n]) * 32)


# --- Ed25519 ---------------------------------------------------------------


def test_rfc8032_vector_1():
    kp = SigningKeyPair.from_seed(RFC8032_SEED)
    assert kp.seed == RFC8032_SEED
    assert kp.public_key == RFC8032_PK
    assert kp.secret_key == RFC8032_SEED + RFC8032_PK
    assert kp.sign(b"") == RFC8032_SIG
    assert verify(RFC8032_PK, b"", RFC8032_SIG)


def test_signing_is_deterministic_and_verifies():
    kp = SigningKeyPair.generate()
    sig = kp.sign(b"round seed")
    assert len(sig) == 64
    assert kp.sign(b"round seed") == sig
    assert verify(kp.public_key, b"round seed", sig)
    assert not verify(kp.public_key, b"round seeD", sig)
    assert not verify(keys(1).public_key, b"round seed", sig)


def test_secret_key_round_trip():
    kp = keys(7)
    assert SigningKeyPair.from_secret_key(kp.secret_key) == kp
    with pytest.raises(CryptoError, match="does not match"):
        SigningKeyPair.from_secret_key(kp.seed + keys(8).public_key)


def test_verify_false_for_any_bad_signature_or_key():
    kp = keys(1)
    sig = bytearray(kp.sign(b"m"))
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not verify(kp.public_key, b"m", bytes(bad))
    assert not verify(kp.public_key, b"m", bytes(64))
    assert not verify(bytes(32), b"m", bytes(sig))  # small-order key
    assert not verify(b"\xff" * 32, b"m", bytes(sig))  # not a curve point


@pytest.mark.parametrize("pk_len, sig_len", [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)])
def test_verify_rejects_wrong_lengths(pk_len, sig_len):
    with pytest.raises(CryptoError, match="must be"):
        verify(bytes(pk_len), b"m", bytes(sig_len))


@pytest.mark.parametrize("n", [0, 31, 33, 63])
def test_key_constructors_reject_wrong_lengths(n):
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        SigningKeyPair.from_seed(bytes(n))
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        EncryptKeyPair.from_seed(bytes(n))
    with pytest.raises(CryptoError, match="must be 32 bytes"):
        EncryptKeyPair.from_secret_key(bytes(n))
    with pytest.raises(CryptoError, match="must be 64 bytes"):
        SigningKeyPair.from_secret_key(bytes(n))


def test_repr_hides_secrets():
    kp, ek = keys(3), enc_keys(3)
    for pair in (kp, ek):
        text = repr(pair) + str(pair)
        assert pair.public_key.hex() in text
        assert pair.secret_key.hex() not in text
        assert pair.secret_key[:16].hex() not in text


# --- X25519 and sealed boxes -----------------------------------------------


def test_rfc7748_x25519_vector():
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert nacl.bindings.crypto_scalarmult(scalar, u) == out


def test_encrypt_key_pair_from_seed_matches_libsodium():
    seed = bytes(range(32))
    pk, sk = nacl.bindings.crypto_box_seed_keypair(seed)
    ek = EncryptKeyPair.from_seed(seed)
    assert (ek.public_key, ek.secret_key) == (pk, sk)
    assert sk == hashlib.sha512(seed).digest()[:32]
    assert bytes(nacl.public.PrivateKey.from_seed(seed)) == sk
    assert EncryptKeyPair.from_secret_key(sk) == ek
    with pytest.raises(CryptoError, match="does not match"):
        EncryptKeyPair(enc_keys(1).public_key, sk)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=300))
def test_seal_round_trip(msg):
    r = enc_keys(1)
    box = seal(msg, r.public_key)
    assert len(box) == len(msg) + SEALBYTES
    assert seal_open(box, r.public_key, r.secret_key) == msg


def test_seal_uses_a_fresh_ephemeral_key():
    r = enc_keys(1)
    assert seal(b"seed", r.public_key) != seal(b"seed", r.public_key)


def test_seal_with_ephemeral_is_crypto_box_seal():
    r, eph = enc_keys(1), enc_keys(2)
    msg = bytes(range(32))  # a mask seed
    box = seal_with_ephemeral(msg, r.public_key, eph)
    assert len(box) == 80
    assert box == seal_with_ephemeral(msg, r.public_key, eph)
    assert box[:32] == eph.public_key
    # independent construction: nonce from hashlib, box from PyNaCl's Box
    nonce = hashlib.blake2b(eph.public_key + r.public_key, digest_size=24).digest()
    boxed = nacl.public.Box(nacl.public.PrivateKey(eph.secret_key), nacl.public.PublicKey(r.public_key))
    assert box[32:] == boxed.encrypt(msg, nonce).ciphertext
    # libsodium's own crypto_box_seal_open accepts it
    assert nacl.bindings.crypto_box_seal_open(box, r.public_key, r.secret_key) == msg
    assert seal_open(box, r.public_key, r.secret_key) == msg


def test_one_ephemeral_key_many_recipients():
    eph = enc_keys(9)
    recipients = [enc_keys(n) for n in range(10, 14)]
    boxes = [seal_with_ephemeral(b"mask seed", r.public_key, eph) for r in recipients]
    assert len({b[32:] for b in boxes}) == len(boxes)
    for r, box in zip(recipients, boxes):
        assert seal_open(box, r.public_key, r.secret_key) == b"mask seed"


def test_seal_open_rejects_tampered_boxes():
    r = enc_keys(1)
    box = seal_with_ephemeral(b"model update", r.public_key, enc_keys(2))
    for i in (0, 31, 32, 47, 48, len(box) - 1):
        bad = bytearray(box)
        bad[i] ^= 0x80
        with pytest.raises(CryptoError, match="does not open"):
            seal_open(bytes(bad), r.public_key, r.secret_key)
    with pytest.raises(CryptoError, match="does not open"):
        seal_open(box[:-1], r.public_key, r.secret_key)
    with pytest.raises(CryptoError, match="does not open"):
        seal_open(box + b"\x00", r.public_key, r.secret_key)


def test_seal_open_rejects_wrong_keys():
    r, other = enc_keys(1), enc_keys(3)
    box = seal(b"for r only", r.public_key)
    with pytest.raises(CryptoError, match="does not open"):
        seal_open(box, other.public_key, other.secret_key)
    with pytest.raises(CryptoError, match="does not open"):
        seal_open(box, r.public_key, other.secret_key)
    with pytest.raises(CryptoError, match="does not open"):
        seal_open(box, other.public_key, r.secret_key)


@pytest.mark.parametrize("n", [0, 1, 47])
def test_seal_open_rejects_short_input(n):
    r = enc_keys(1)
    with pytest.raises(CryptoError, match="at least 48 bytes"):
        seal_open(bytes(n), r.public_key, r.secret_key)


def test_seal_open_of_empty_message():
    r = enc_keys(1)
    box = seal(b"", r.public_key)
    assert len(box) == SEALBYTES
    assert seal_open(box, r.public_key, r.secret_key) == b""


def test_seal_rejects_wrong_key_lengths():
    r = enc_keys(1)
    with pytest.raises(CryptoError, match="recipient public key must be 32"):
        seal(b"m", bytes(31))
    with pytest.raises(CryptoError, match="recipient public key must be 32"):
        seal_with_ephemeral(b"m", bytes(33), enc_keys(2))
    with pytest.raises(CryptoError, match="recipient secret key must be 32"):
        seal_open(seal(b"m", r.public_key), r.public_key, r.secret_key + b"\x00")


# --- SHA-256 ------------------------------------------------------------------


def test_sha256():
    assert sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- signed messages ----------------------------------------------------------


def unsigned_message(kp: SigningKeyPair, payload: bytes, tag: int = 1) -> bytes:
    length = 136 + len(payload)
    header = bytes(64) + kp.public_key + enc_keys(5).public_key + struct.pack(">IBBH", length, tag, 0, 0)
    return header + payload


def test_sign_message_layout():
    kp = keys(1)
    unsigned = unsigned_message(kp, b"\xaa" * 96)
    signed = sign_message(unsigned, kp)
    assert len(signed) == 232
    assert signed[64:] == unsigned[64:]
    assert signed[:64] == kp.sign(unsigned[64:])
    assert verify_message(signed)
    assert sign_message(bytearray(signed), kp) == signed  # re-signing ignores the old signature


def test_verify_message_rejects_any_flipped_byte():
    kp = keys(1)
    signed = sign_message(unsigned_message(kp, bytes(range(40))), kp)
    for i in range(len(signed)):
        bad = bytearray(signed)
        bad[i] ^= 0x04
        assert not verify_message(bytes(bad)), i


def test_verify_message_header_only_and_short():
    kp = keys(1)
    signed = sign_message(unsigned_message(kp, b""), kp)
    assert len(signed) == 136 and verify_message(signed)
    for n in (0, 64, 135):
        assert not verify_message(signed[:n])


def test_verify_message_length_field():
    kp = keys(1)
    signed = sign_message(unsigned_message(kp, b"payload"), kp)
    # bytes past the length field are not covered, as on the coordinator
    assert verify_message(signed + b"trailing")
    assert not verify_message(signed[:-1])  # length field beyond the buffer
    too_small = bytearray(signed)
    too_small[128:132] = (135).to_bytes(4, "big")
    assert not verify_message(bytes(too_small))


def test_verify_message_by_another_key():
    kp, other = keys(1), keys(2)
    signed = bytearray(sign_message(unsigned_message(kp, b"x"), kp))
    signed[64:96] = other.public_key
    assert not verify_message(bytes(signed))


def test_sign_message_checks_the_header():
    kp = keys(1)
    with pytest.raises(CryptoError, match="at least 136"):
        sign_message(bytes(135), kp)
    with pytest.raises(CryptoError, match="participant pk"):
        sign_message(unsigned_message(keys(2), b"x"), kp)
    with pytest.raises(CryptoError, match="length field"):
        sign_message(unsigned_message(kp, b"x") + b"y", kp)


# --- round seed ---------------------------------------------------------------


def test_next_round_seed_matches_independent_ed25519():
    old, sk = bytes(32), bytes(range(32))
    signer = Ed25519PrivateKey.from_private_bytes(sk)
    expected = hashlib.sha256(signer.sign(old + struct.pack("<dd", 0.01, 0.1))).digest()
    assert next_round_seed(old, sk, 0.01, 0.1) == expected


def test_next_round_seed_is_deterministic_and_depends_on_every_input():
    old, sk = b"\x11" * 32, EncryptKeyPair.from_seed(b"\x22" * 32).secret_key
    seed = next_round_seed(old, sk, 0.01, 0.1)
    assert len(seed) == 32
    assert next_round_seed(old, sk, 0.01, 0.1) == seed
    variants = [
        next_round_seed(b"\x12" + old[1:], sk, 0.01, 0.1),
        next_round_seed(old, sk[:-1] + b"\x00", 0.01, 0.1),
        next_round_seed(old, sk, 0.02, 0.1),
        next_round_seed(old, sk, 0.01, 0.2),
        next_round_seed(old, sk, 0.1, 0.01),
    ]
    assert len({seed, *variants}) == 6


def test_next_round_seed_rejects_wrong_lengths():
    with pytest.raises(CryptoError, match="round seed must be 32"):
        next_round_seed(bytes(31), bytes(32), 0.5, 0.5)
    with pytest.raises(CryptoError, match="round secret key must be 32"):
        next_round_seed(bytes(32), bytes(64), 0.5, 0.5)
