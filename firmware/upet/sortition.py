"""The start of a round (loaded through upet.transient for that moment only): the task by
sortition (spec section 3.1) and the round's secrets.

A participant signs seed || "sum" and seed || "update"; it sums when SHA-256 of the
first signature, read as a little-endian number, is at most sum_prob * (2^256 - 1),
else it updates when the second one is at most update_prob * (2^256 - 1).
"""

import hashlib
import os
import struct

from upet import ed25519
from upet.participant import RoundParams


def eligible(signature, prob):
    """int_le(SHA-256(signature)) / (2^256 - 1) <= p, compared exactly with p = mant / 2^shift
    from its f64 bytes; NaN and negative p are never eligible, p > 1 always."""
    bits = int.from_bytes(prob, "little")
    exp = (bits >> 52) & 0x7FF
    mant = bits & ((1 << 52) - 1)
    if exp == 0x7FF:  # infinity or NaN
        return not mant and not bits >> 63
    if bits >> 63 and (exp or mant):
        return False
    if exp:
        mant |= 1 << 52
    shift = 1075 - max(exp, 1)
    h = int.from_bytes(hashlib.sha256(signature).digest(), "little")
    return shift <= 0 or h << shift <= mant * ((1 << 256) - 1)


def new_round(p, raw):
    """Sets p.params and p.state for the round of these parameters; returns the phase it enters.
    Parameters that do not parse raise ValueError and change nothing."""
    r = RoundParams(raw)
    if p.params is not None:
        p._left = p._left[-3:] + [p.params.seed]  # the seeds of the last 4 rounds left
    p.params = r
    p.state = {"params": r.raw, "msg_id": struct.unpack("<H", os.urandom(2))[0]}
    phase = _task(p, r, p.state)
    p.log("round", r.seed[:4].hex(), "no task" if phase == "awaiting" else "task " + phase)
    return phase


def _task(p, r, s):
    """The phase the signatures give, with the secrets of its role in s."""
    s["sum_sig"] = sig = ed25519.sign(p.seed, r.seed + b"sum")
    if eligible(sig, r.raw[40:48]):  # sum_prob
        s["ephm_sk"] = os.urandom(32)
        return "sum"
    sig = ed25519.sign(p.seed, r.seed + b"update")
    if eligible(sig, r.raw[48:56]):  # update_prob
        s["update_sig"], s["mask_seed"], s["seal_sk"] = sig, os.urandom(32), os.urandom(32)
        return "update"
    return "awaiting"
