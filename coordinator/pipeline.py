"""Checks every message passes before a phase handler sees it (spec 7.1, with verdicts).

Pure functions of the message and a snapshot of the round, so they can run in
worker threads: unseal with the round key, decode, phase filter, Ed25519
signature, coordinator key; and, for complete messages, task validation by
sortition. Each failure raises `Rejected` carrying the verdict's reason code.
"""

from __future__ import annotations

from dataclasses import dataclass

from pet import crypto
from pet.crypto import CryptoError
from pet.errors import DecodeError
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
