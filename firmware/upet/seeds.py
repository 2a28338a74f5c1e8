"""A sum participant's seed column (loaded through upet.transient while it arrives): each
mask seed opened with the round's ephemeral key and its mask added to the global mask.
"""

import struct
import uctypes

from upet import ed25519
from upet.box import seal_open_into
from upet.mask import MaskAggregator


def _aggregator(p, r):
    """A MaskAggregator; with one 32-bit word per weight it adds up in the model array,
    saving a second model-sized buffer: the global model refills the array later."""
    n, m = r.model_length, p.model
    if r.vect.word_bytes != 4 or m is None or len(m) != n:
        return MaskAggregator(r.vect, n, r.unit)
    agg = MaskAggregator(r.vect, 0, r.unit)
    agg.length, agg.words = n, uctypes.bytearray_at(uctypes.addressof(m), 4 * n)
    for i in range(n):
        m[i] = 0.0  # all-zero bits
    p._borrowed = True
    return agg


def read(p, reader):
    """Opens the column entry by entry from the reader and sets p._agg (False if one does not open)."""
    count = struct.unpack("<Q", reader.read(8))[0]
    if p._agg or reader.length != 8 + 128 * count:
        return
    sk = p.state["ephm_sk"]
    pk = ed25519.x25519_base(sk)
    agg = _aggregator(p, p.params)
    box = bytearray(128)
    try:
        for _ in range(count):
            reader.readinto(box, 128)
            seal_open_into(memoryview(box)[48:], pk, sk)
            agg.add_seed(box[96:])
        p._agg = agg
    except ValueError as e:
        p.log("seed column refused:", e)
        p._agg = False
