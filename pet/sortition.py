"""Sortition: which participants sum and which update in a round.

A participant signs the round seed; the SHA-256 of that signature, read as a
little-endian integer and scaled to [0, 1], must not exceed the task's
probability. Signatures are deterministic and verifiable, so the coordinator
can check a claimed task without trusting the participant.
"""

from __future__ import annotations

import enum
import functools
from fractions import Fraction
from typing import NamedTuple

from .crypto import SIGNATURE_BYTES, CryptoError, SigningKeyPair, sha256, verify

_HASH_MAX = 2**256 - 1


class Task(enum.Enum):
    SUM = "sum"
    UPDATE = "update"
    NONE = "none"


def sum_signature(keys: SigningKeyPair, round_seed: bytes) -> bytes:
    """The claim to the sum task: Ed25519 signature of round_seed || b"sum"."""
    return keys.sign(bytes(round_seed) + b"sum")


def update_signature(keys: SigningKeyPair, round_seed: bytes) -> bytes:
    """The claim to the update task: Ed25519 signature of round_seed || b"update"."""
    return keys.sign(bytes(round_seed) + b"update")


@functools.lru_cache(maxsize=64)
def eligibility_bound(probability: float) -> int:
    """The largest int_le(SHA-256(signature)) that is eligible at this probability, exactly:
    h / (2^256 - 1) <= p means h <= floor(p (2^256 - 1)) for an integer h, with p's exact
    binary value, as in the Rust coordinator. Below 0 or NaN (on which the Rust code panics)
    nobody is eligible (-1), above 1 everybody. Rounds use few probabilities: cached."""
    if not probability >= 0:  # negative or NaN
        return -1
    if probability > 1:
        return _HASH_MAX
    p = Fraction(probability)
    return p.numerator * _HASH_MAX // p.denominator


def is_eligible(signature: bytes, probability: float) -> bool:
    """int_le(SHA-256(signature)) / (2^256 - 1) <= probability, compared exactly
    (eligibility_bound)."""
    if len(signature) != SIGNATURE_BYTES:
        raise CryptoError(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    return int.from_bytes(sha256(signature), "little") <= eligibility_bound(probability)


class TaskSelection(NamedTuple):
    """A participant's task and the signatures its messages must carry."""

    task: Task
    sum_signature: bytes
    update_signature: bytes | None  # only for Task.UPDATE


def select_task(keys: SigningKeyPair, round_seed: bytes, sum_prob: float, update_prob: float) -> TaskSelection:
    """Participant side: sum if eligible, else update if eligible, else no task this round."""
    sum_sig = sum_signature(keys, round_seed)
    if is_eligible(sum_sig, sum_prob):
        return TaskSelection(Task.SUM, sum_sig, None)
    update_sig = update_signature(keys, round_seed)
    if is_eligible(update_sig, update_prob):
        return TaskSelection(Task.UPDATE, sum_sig, update_sig)
    return TaskSelection(Task.NONE, sum_sig, None)


def validate_task(
    participant_pk: bytes,
    round_seed: bytes,
    sum_prob: float,
    update_prob: float,
    sum_signature: bytes,
    update_signature: bytes | None = None,
) -> Task:
    """Coordinator side: the task the signatures actually entitle `participant_pk` to.

    A participant that may sum is never an updater, whatever its update
    signature. An invalid sum signature only means "not a summer": Update
    messages are not required to carry a valid one.
    """
    seed = bytes(round_seed)
    # the hash test is cheap and fails often: do it before the signature check
    if is_eligible(sum_signature, sum_prob) and verify(participant_pk, seed + b"sum", sum_signature):
        return Task.SUM
    if (
        update_signature is not None
        and is_eligible(update_signature, update_prob)
        and verify(participant_pk, seed + b"update", update_signature)
    ):
        return Task.UPDATE
    return Task.NONE
