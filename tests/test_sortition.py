import hashlib
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pet.crypto import CryptoError, SigningKeyPair, verify
from pet.sortition import (
    Task,
    TaskSelection,
    is_eligible,
    select_task,
    sum_signature,
    update_signature,
    validate_task,
)

HASH_MAX = 2**256 - 1
SEED = bytes(range(32))

# is_eligible test signatures of the Rust crate (xaynet-core crypto/sign.rs)
RUST_ELIGIBLE_AT_HALF = bytes.fromhex(
    "ac1d55db762c6b20dbfd19f2352d6f3e66821808dec72278a6a3dfe56432fcf4"
    "fa58c497883027c6a6561d970d5145c62894867e07ca0138ae2b591cf2c20400"
)
RUST_INELIGIBLE_AT_HALF = bytes.fromhex(
    "7702c5ae34a5e516dad2f0bcdce89581d30d3dd9ba4f660f6ded53c10c75d242"
    "63e61e833f6c1cde305c99479fdc73b5b79b92b6cd598cea6428c7f81793ac00"
)


def keys(n: int) -> SigningKeyPair:
    return SigningKeyPair.from_seed(n.to_bytes(32, "little"))


def hash_ratio(signature: bytes) -> Fraction:
    """The sortition value, computed independently of pet.sortition."""
    return Fraction(int.from_bytes(hashlib.sha256(signature).digest(), "little"), HASH_MAX)


def test_rust_vectors():
    assert is_eligible(RUST_ELIGIBLE_AT_HALF, 0.5)
    assert not is_eligible(RUST_INELIGIBLE_AT_HALF, 0.5)


@pytest.mark.parametrize("sig", [RUST_ELIGIBLE_AT_HALF, RUST_INELIGIBLE_AT_HALF])
def test_probability_edges(sig):
    assert is_eligible(sig, 1.0)
    assert is_eligible(sig, 1)
    assert is_eligible(sig, 1.5)
    assert is_eligible(sig, math.inf)
    assert not is_eligible(sig, 0.0)
    assert not is_eligible(sig, -0.0)
    assert not is_eligible(sig, -1e-300)
    assert not is_eligible(sig, -math.inf)
    assert not is_eligible(sig, math.nan)


def test_probability_zero_admits_only_hash_zero():
    # no signature hashes to 0 in practice; p = 0 means h <= 0
    assert not any(is_eligible(keys(n).sign(SEED), 0.0) for n in range(50))


def test_signature_length_is_checked():
    with pytest.raises(CryptoError, match="64 bytes"):
        is_eligible(bytes(63), 0.5)


@pytest.mark.parametrize("n", range(8))
def test_threshold_is_exact(n):
    sig = sum_signature(keys(n), SEED)
    ratio = hash_ratio(sig)
    p = float(ratio)  # nearest double to the hash ratio
    candidates = [p, math.nextafter(p, 0), math.nextafter(p, 1)]
    candidates += [math.nextafter(candidates[1], 0), math.nextafter(candidates[2], 1)]
    for q in candidates:
        assert is_eligible(sig, q) == (ratio <= Fraction(q)), q
    # the ratio is never a double, so the neighbours of the nearest double straddle it
    assert not is_eligible(sig, math.nextafter(p, 0))
    assert is_eligible(sig, math.nextafter(p, 1))
    assert is_eligible(sig, p) == (Fraction(p) > ratio)


def test_threshold_rounding_goes_both_ways():
    # over a few keys the nearest double lies both above and below the exact ratio
    outcomes = set()
    for n in range(8):
        sig = sum_signature(keys(n), SEED)
        outcomes.add(is_eligible(sig, float(hash_ratio(sig))))
    assert outcomes == {True, False}


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.floats(min_value=0.0, max_value=1.0))
def test_matches_exact_rational_compare(sig, p):
    assert is_eligible(sig, p) == (hash_ratio(sig) <= Fraction(p))


def test_eligible_fraction_is_near_probability():
    rng = random.Random(20240601)
    seed = rng.randbytes(32)
    p, n = 0.3, 2000
    hits = sum(is_eligible(sum_signature(SigningKeyPair.from_seed(rng.randbytes(32)), seed), p) for _ in range(n))
    # binomial sd = sqrt(n p (1-p)) ~ 20.5; allow about 5 sd
    assert abs(hits - p * n) < 100


def test_select_task_sum_only_when_eligible():
    kp = keys(1)
    sel = select_task(kp, SEED, 1.0, 1.0)
    assert isinstance(sel, TaskSelection)
    task, sum_sig, update_sig = sel
    assert task is Task.SUM and update_sig is None
    assert sum_sig == kp.sign(SEED + b"sum")
    assert verify(kp.public_key, SEED + b"sum", sum_sig)


def test_select_task_update_and_none():
    kp = keys(1)
    sel = select_task(kp, SEED, 0.0, 1.0)
    assert sel.task is Task.UPDATE
    assert sel.sum_signature == sum_signature(kp, SEED)
    assert sel.update_signature == kp.sign(SEED + b"update") == update_signature(kp, SEED)
    assert select_task(kp, SEED, 0.0, 0.0) == (Task.NONE, sum_signature(kp, SEED), None)


def test_select_and_validate_agree():
    seed, sum_p, update_p = b"\x07" * 32, 0.2, 0.5
    seen = set()
    for n in range(200):
        kp = keys(n)
        task, sum_sig, update_sig = select_task(kp, seed, sum_p, update_p)
        seen.add(task)
        expected_sum = hash_ratio(sum_sig) <= Fraction(sum_p)
        expected_update = not expected_sum and hash_ratio(update_signature(kp, seed)) <= Fraction(update_p)
        assert task is (Task.SUM if expected_sum else Task.UPDATE if expected_update else Task.NONE)
        assert validate_task(kp.public_key, seed, sum_p, update_p, sum_sig, update_sig) is task
        # the update claim a summer could make is ignored
        if task is Task.SUM:
            assert validate_task(kp.public_key, seed, sum_p, 1.0, sum_sig, update_signature(kp, seed)) is Task.SUM
    assert seen == {Task.SUM, Task.UPDATE, Task.NONE}


def test_validate_task_rejects_another_key():
    kp, other = keys(1), keys(2)
    sum_sig = sum_signature(kp, SEED)
    update_sig = update_signature(kp, SEED)
    assert validate_task(kp.public_key, SEED, 1.0, 1.0, sum_sig) is Task.SUM
    assert validate_task(other.public_key, SEED, 1.0, 1.0, sum_sig) is Task.NONE
    assert validate_task(kp.public_key, SEED, 0.0, 1.0, sum_sig, update_sig) is Task.UPDATE
    assert validate_task(other.public_key, SEED, 0.0, 1.0, sum_sig, update_sig) is Task.NONE


def test_validate_task_rejects_another_seed():
    kp, other_seed = keys(1), b"\xff" * 32
    sum_sig = sum_signature(kp, SEED)
    update_sig = update_signature(kp, SEED)
    assert validate_task(kp.public_key, other_seed, 1.0, 1.0, sum_sig) is Task.NONE
    assert validate_task(kp.public_key, other_seed, 0.0, 1.0, sum_sig, update_sig) is Task.NONE


def test_validate_task_rejects_swapped_claims():
    kp = keys(1)
    sum_sig, update_sig = sum_signature(kp, SEED), update_signature(kp, SEED)
    # an update signature presented as a sum claim and vice versa
    assert validate_task(kp.public_key, SEED, 1.0, 1.0, update_sig) is Task.NONE
    assert validate_task(kp.public_key, SEED, 0.0, 1.0, sum_sig, sum_sig) is Task.NONE


def test_update_needs_no_valid_sum_signature():
    kp = keys(1)
    update_sig = update_signature(kp, SEED)
    assert validate_task(kp.public_key, SEED, 1.0, 1.0, bytes(64), update_sig) is Task.UPDATE
    assert validate_task(kp.public_key, SEED, 1.0, 1.0, bytes(64)) is Task.NONE


def test_ineligible_claims_are_rejected():
    kp = keys(1)
    sum_sig, update_sig = sum_signature(kp, SEED), update_signature(kp, SEED)
    assert validate_task(kp.public_key, SEED, 0.0, 0.0, sum_sig, update_sig) is Task.NONE
