"""Checks every message passes before a phase handler sees it (spec 7.1, with verdicts).

Pure functions of the message and a snapshot of the round, so they can run in
worker threads: unseal with the round key, decode, phase filter, Ed25519
signature, coordinator key; and, for complete messages, task validation by
sortition and the checks of an Update's seed dict and masked model, or of a
Sum2 mask, against the sum dict and the mask config. Each failure raises
`Rejected` carrying the verdict's reason code.
"""

from __future__ import annotations

from dataclasses import dataclass

from pet import crypto
from pet.crypto import CryptoError
from pet.errors import DecodeError
from pet.mask import MaskConfig
from pet.sortition import Task, validate_task
from pet.verdict import REASONS
from pet.wire import Message, RoundParameters, Sum, Sum2, Tag, Update


class Rejected(Exception):
    """A message refused with a reason code from pet.verdict.REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RoundView:
    """What the checks need to know about the current round."""

    round_id: int
    phase: Tag | None          # the message tag the phase takes, None outside Sum/Update/Sum2
    round_pk: bytes
    round_sk: bytes
    params: RoundParameters


def open_message(sealed: bytes, view: RoundView) -> Message:
    """Unseal, decode and authenticate one message (a chunk or a whole message)."""
    try:
        plain = crypto.seal_open(sealed, view.round_pk, view.round_sk)
    except CryptoError:
        raise Rejected("undecryptable", "the body is not sealed to this round's key") from None
    try:
        msg = Message.decode(plain)
    except DecodeError as e:
        raise Rejected("malformed", str(e)) from None
    check_phase(msg.tag, view)
    if not crypto.verify_message(plain):
        raise Rejected("bad_signature", "the message signature does not verify with its participant pk")
    if msg.coordinator_pk != view.round_pk:
        raise Rejected("wrong_coordinator_pk", "the header names another coordinator key")
    return msg


def open_and_check(sealed: bytes, view: RoundView) -> Message:
    """Open a message and, unless it is a chunk, check the sender's task: one thread hop."""
    msg = open_message(sealed, view)
    if not msg.is_multipart:
        check_task(msg, view)
    return msg


def check_phase(tag: Tag, view: RoundView) -> None:
    if tag is not view.phase:
        current = view.phase.name if view.phase else "no message phase"
        raise Rejected("wrong_phase", f"a {tag.name} message during {current}")


_TASK_OF = {Sum: Task.SUM, Sum2: Task.SUM, Update: Task.UPDATE}


def check_task(msg: Message, view: RoundView) -> None:
    """The sender's sortition signatures must give it the task its payload claims."""
    p = msg.payload
    want = _TASK_OF[type(p)]
    task = validate_task(msg.participant_pk, view.params.seed, view.params.sum, view.params.update,
                         p.sum_signature, getattr(p, "update_signature", None))
    if task is not want:
        raise Rejected("not_eligible", f"the signatures make the sender {task.value}, "
                                       f"not {want.value}, in this round")


def check_update(msg: Message, sum_dict: dict[bytes, bytes], config: MaskConfig, length: int) -> None:
    """The seed dict must name exactly the sum dict's keys, the masked model be a model of the round."""
    p: Update = msg.payload
    seeds = p.local_seed_dict
    unknown = [k for k in seeds if k not in sum_dict]
    if unknown:
        raise Rejected("unknown_sum_participant", f"the seed dict names {len(unknown)} keys not in the "
                                                  f"sum dict, e.g. {unknown[0].hex()[:16]}")
    if len(seeds) != len(sum_dict):
        raise Rejected("seed_dict_mismatch", f"the seed dict has {len(seeds)} entries, the sum dict "
                                             f"{len(sum_dict)}")
    masked = p.masked_model
    if masked.vect.config != config or masked.unit.config != config or len(masked.vect) != length:
        raise Rejected("bad_mask", f"the masked model is not a {config.name} model of {length} weights")


def check_sum2(msg: Message, sum_dict: dict[bytes, bytes], config: MaskConfig, length: int) -> None:
    """The sender must be a sum participant, the mask a mask of the round's config and length."""
    if msg.participant_pk not in sum_dict:
        raise Rejected("unknown_sum_participant", "the sender is not in this round's sum dict")
    mask = msg.payload.model_mask
    if mask.vect.config != config or mask.unit.config != config or len(mask.vect) != length:
        raise Rejected("bad_mask", f"the mask is not a {config.name} mask of {length} weights")
