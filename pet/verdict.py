"""Verdicts: the coordinator's answer to every message (ours; XayNet always answers 200).

Accepted messages get HTTP 200 with an empty body, as in XayNet, so XayNet
participants keep working. Refused ones get a 4xx status and the JSON body
`{"accepted": false, "reason": "<code>", "detail": "<text>"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# reason code -> (HTTP status, what it means)
REASONS = {
    "undecryptable": (400, "the sealed box does not open with this round's key"),
    "malformed": (400, "the message does not decode"),
    "wrong_phase": (409, "the message type does not match the current phase"),
    "bad_signature": (400, "the message signature does not verify"),
    "wrong_coordinator_pk": (400, "the header's coordinator key is not this round's"),
    "not_eligible": (403, "the sortition signatures do not give the sender this task"),
    "duplicate": (409, "the participant already took part in this phase"),
    "unknown_sum_participant": (403, "the sender or a seed dict key is not in the sum dict"),
    "seed_dict_mismatch": (400, "the local seed dict does not cover exactly the sum dict"),
    "bad_mask": (400, "wrong mask config or length, or too many models"),
    "multipart": (400, "a chunk conflicts with earlier ones or breaks a reassembly limit"),
    "too_large": (413, "the body is larger than the coordinator accepts"),
    "phase_full": (429, "the phase already accepted its maximum count; the message was discarded"),
    "unauthorized": (401, "a bearer token is required and was missing or wrong"),
    "queue_full": (503, "(gateway) the store-and-forward queue is full; send the message again later"),
}

RETRY_LATER = {"queue_full"}


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""
    detail: str = ""

    @property
    def already_done(self) -> bool:
        """A resend of something the coordinator already has: as good as accepted."""
        return self.reason == "duplicate"

    @property
    def retry_later(self) -> bool:
        """Not a judgement of the message: the same bytes should be sent again later."""
        return self.reason in RETRY_LATER

    @property
    def http_status(self) -> int:
        return 200 if self.accepted else REASONS.get(self.reason, (400, ""))[0]

    def to_json(self) -> bytes:
        return json.dumps({"accepted": self.accepted, "reason": self.reason,
                           "detail": self.detail}).encode()

    @classmethod
    def from_json(cls, body: bytes) -> "Verdict":
        """Parse a verdict body; anything unreadable becomes a rejection saying so."""
        try:
            d = json.loads(body)
            return cls(bool(d["accepted"]), str(d.get("reason", "")), str(d.get("detail", "")))
        except (ValueError, TypeError, KeyError):
            return cls(False, "unreadable_verdict", bytes(body[:200]).decode(errors="replace"))


ACCEPTED = Verdict(True)


def rejected(reason: str, detail: str = "") -> Verdict:
    assert reason in REASONS, reason
    return Verdict(False, reason, detail)
