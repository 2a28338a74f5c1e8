"""The global model of a round, streamed from its message into the app's array (loaded
through upet.transient when one arrives): round id (u64), count (u32), then count float32.
"""

import struct
import uctypes
from array import array


def _model_array(p, n):
    """Makes p.model an array of n weights; a length that is neither the app's model's nor the
    round's raises ValueError."""
    known = [len(p.model)] if p.model is not None else []
    if p.params is not None:
        known.append(p.params.model_length)
    if known and n not in known:  # neither the app's model nor the round's: not one for this device
        raise ValueError("a model of %d weights, not this device's" % n)
    if p.model is None or len(p.model) != n:
        p.model = None
        p.model = array("f", range(n))  # one allocation of 4n bytes


def read(p, reader):
    """Reads it into p.model (a new array when the round's length changed) and hands it to
    p.on_model; a length that is neither the app's model's nor the round's raises ValueError."""
    round_id, n = struct.unpack("<QI", reader.read(12))
    if reader.length != 12 + 4 * n or round_id == p.model_round or p._borrowed:
        return
    _model_array(p, n)
    mv = memoryview(uctypes.bytearray_at(uctypes.addressof(p.model), 4 * n))
    for i in range(0, 4 * n, 256):
        reader.readinto(mv[i:i + 256], min(256, 4 * n - i))
    p.model_round = round_id
    if p.on_model:
        p.on_model(round_id, p.model)
